"""What is a secret, and how it is masked in every output we produce.

Three sources, strongest first:

1. The agents' own option schemas. nova, neutron and the libraries they use
   declare ``secret=True`` on their options (``[profiler] hmac_keys``,
   ``[database] connection``, ``transport_url`` ...) and publish them through
   the ``oslo.config.opts`` entry points that oslo-config-generator reads.
   When those packages are importable we load them once (about 2.6 s for
   nova 34 + neutron 29, 40 options) and keep the answer in a small cache
   file keyed by the installed versions, so a second ``config explain`` costs
   a file read. Only explain/plan/check output loads them: the supervisor's
   run path never does.
2. A name heuristic (password, pass, secret, token, key, credential ...),
   always applied too: a stricter union, and the only rule without nova.
3. URL credentials (``scheme://user:PASSWORD@host``), in any value or argv
   word; the password runs to the *last* ``@`` of its host entry, so a
   password containing ``@`` is masked whole. oslo.messaging's extra hosts
   (``,user:pw@host2``) are masked one by one; when the authority does not
   split into clean ``creds@host[:port]`` entries (a ``,`` or ``/`` inside a
   password), everything from the first user's ``:`` to the last ``@`` is
   masked: the display loses the earlier hosts, never a password piece.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from hvsupervisor.config.parse import norm_group

MASK = "****"
ENTRY_POINT_GROUP = "oslo.config.opts"

_SECRET_NAME = re.compile(
    r"(password|passwd|passphrase|pass$|_pass_|secret|token|credential|private_key|"
    r"_key$|^key$|hmac)", re.I)
# scheme://AUTHORITY: the authority runs to the *last* '@' of the word (a
# password may hold '@', ',' or '/'), then to the next '/', '?' or '#'.
_URL = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*://)(?P<auth>(?:\S*@)?[^\s/?#@]*)")
# One clean host entry: optional "creds@", then a host (or [v6]) and an optional port.
_ENTRY_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[^\[\]@:,/\s]*)(?::\d*)?\Z")
_URL_SHAPED = re.compile(r"[A-Za-z][\w+.-]*://[^\s]*\Z")
# A query string may carry a secret too (``?password=...``): every value is masked.
_QUERY_VALUE = re.compile(r"([?&][^=&#\s]+=)[^&#\s]*")
_ENV_OPT = re.compile(r"OS_(?P<group>[A-Za-z0-9_]+?)__(?P<opt>[A-Za-z0-9_]+)\Z")


def _mask_creds(creds: str) -> str:
    """``user:pw`` -> ``user:****``; a bare user (no password) is kept."""
    user, colon, _ = creds.partition(":")
    return f"{user}:{MASK}" if colon else creds


def _mask_authority(auth: str) -> str:
    if "@" not in auth:
        return auth
    entries = auth.split(",")
    masked = []
    for entry in entries:
        creds, at, host = entry.rpartition("@")
        if not _ENTRY_HOST.match(host if at else entry):
            break
        masked.append(f"{_mask_creds(creds)}@{host}" if at else entry)
    else:
        return ",".join(masked)
    # Not clean entries: a ',' inside a password made a fake "host" such as
    # "u:p" (rabbit://u:p,w@h). Mask from the first ':' to the last '@'.
    creds, _, host = auth.rpartition("@")
    return f"{_mask_creds(creds)}@{host}"


def mask_text(text: str) -> str:
    """Mask the password part of every URL in ``text`` (transport_url, connection...)."""
    return _URL.sub(lambda m: m["scheme"] + _mask_authority(m["auth"]), text)


def secret_name(option: str) -> bool:
    """The name heuristic: does ``option`` look like it holds a secret?"""
    return bool(_SECRET_NAME.search(option.lstrip("-").replace("-", "_")))


def mask_value(option: str, value: str | None, section: str | None = None,
               declared: frozenset[tuple[str, str]] | None = None) -> str | None:
    """Mask a value for display: the whole value when the option is secret (declared
    by its schema, or by name), else the URL passwords in it."""
    if value is None:
        return None
    name = option.replace("-", "_")
    group = norm_group(section or "DEFAULT")
    if value and ((group, name) in (declared or ()) or secret_name(name)):
        if _URL_SHAPED.match(value):
            # transport_url and [database] connection are declared secret for the
            # credentials they carry; the host is what an operator needs to see.
            return _QUERY_VALUE.sub(lambda m: f"{m[1]}{MASK}", mask_text(value))
        return MASK
    return mask_text(value)


def mask_env(env: dict[str, str], declared: frozenset[tuple[str, str]] | None = None
             ) -> dict[str, str]:
    """An environment for display. ``OS_<GROUP>__<OPT>`` is judged as ``[group] opt``."""
    out = {}
    for key, value in env.items():
        m = _ENV_OPT.match(key)
        if m:
            out[key] = mask_value(m["opt"].lower(), value, m["group"].lower(), declared)
        else:
            out[key] = mask_value(key, value, None, declared)
    return out


def mask_argv(argv: Sequence[str]) -> list[str]:
    """argv for display: ``--password X``, ``--os-password=X`` and URL passwords masked."""
    out: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        if word.startswith("-") and len(word) > 1:
            flag, eq, _ = word.partition("=")
            if secret_name(flag):
                if eq:
                    out.append(f"{flag}={MASK}")
                else:
                    out.append(word)
                    hide_next = True
                continue
        out.append(mask_text(word))
    return out


# --------------------------------------------------------------- schemas

def _cache_path(key: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hvsupervisor" / f"secret-options-{key[:16]}.json"


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _fingerprint(eps: Iterable[metadata.EntryPoint]) -> str:
    """Which schemas are installed: entry point + distribution version."""
    parts = []
    for ep in eps:
        dist = getattr(ep, "dist", None)
        version = f"{dist.name}=={dist.version}" if dist is not None else "?"
        parts.append(f"{ep.name}={ep.value}@{version}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _load(eps: Iterable[metadata.EntryPoint]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for ep in eps:
        try:
            with warnings.catch_warnings():  # eventlet/oslo deprecation noise on import
                warnings.simplefilter("ignore")
                groups = ep.load()()
        except Exception:  # noqa: BLE001 - one broken plugin must not hide the rest
            continue
        for group, opts in groups:
            name = getattr(group, "name", group)
            for opt in opts:
                if getattr(opt, "secret", False):
                    found.add((norm_group(name or "DEFAULT"), opt.dest))
    return found


@functools.lru_cache(maxsize=1)
def declared_secrets() -> frozenset[tuple[str, str]]:
    """``(group, option)`` of every option an installed schema declares secret.

    Empty when nova/neutron are not installed (then the heuristic alone rules).
    Cached per process and on disk, keyed by the installed entry points.
    """
    eps = [ep for ep in _entry_points() if ep.name != "hvsupervisor"]
    if not eps:
        return frozenset()
    key = _fingerprint(eps)
    path = _cache_path(key)
    try:
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return frozenset((g, o) for g, o in data["secrets"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = frozenset(_load(eps))
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "secrets": sorted(found)}))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: no cache, same answer
    return found
