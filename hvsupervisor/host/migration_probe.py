"""``hvsupervisor check``'s "can receive a live migration" row: what this host shows.

The decision is host/migration.py's (pure); this module only looks, in the
order a source would meet the obstacles, and stops looking at the first one:
resolve the migration target, find whether the address is this host's (a
bind to it succeeds only for a local address; no packet is sent), read the
kernel's listening sockets (/proc/net/tcp, tcp6: no root needed), open the
migration URI with libvirt-python as a source would (libvirt's own client
config and credentials of the checking user), and read qemu.conf for the
migration port range and TLS directory. Nothing is changed on the host.

What it cannot see: a firewall between the nodes, and the peers' own
configuration (README, "Live migration").
"""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

from hvsupervisor.host import migration as mig
from hvsupervisor.host.libvirt import LibvirtGate
from hvsupervisor.host.preflight import CheckRow

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
PROC_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
ROW = "can receive a live migration"


def nova_my_ip() -> str:
    """nova's ``my_ip`` default: the source address of a route to a public address
    (oslo.utils ``get_my_ipv4``; doc/upstream-behaviour.md section 17), else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.0", 80))  # TEST-NET-1: routing only, nothing is sent
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def nova_config(lookup: mig.Lookup) -> mig.MigrationConfig:
    """nova-compute's migration options, with nova's defaults for ``host`` (this
    host's name) and ``my_ip`` as nova computes them here."""
    return mig.config_from(lookup, socket.gethostname(), nova_my_ip())


def resolve(name: str) -> tuple[tuple[str, ...], str]:
    """The addresses ``name`` resolves to here (in resolver order), or why not."""
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        return (), str(exc)
    seen: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in seen:
            seen.append(addr)
    return tuple(seen), ""


def is_local(address: str) -> bool:
    """True if ``address`` is one of this host's (binding to it succeeds)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
    except OSError:
        return False
    return True


def listeners(tables: tuple[Path, ...] = PROC_TCP) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for table in tables:
        try:
            out += mig.parse_listeners(table.read_text())
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
    return out


def _answer(uri: str, timeout: float) -> tuple[str | None, str]:
    """(libvirt's error or None, what answered) for ``uri``, opened as a source would."""
    st = LibvirtGate(uri, probe_timeout=timeout).probe()
    if not st.open:
        reason = st.reason
        prefix = f"libvirt {uri}: "
        return (reason[len(prefix):] if reason.startswith(prefix) else reason), ""
    d = st.details
    return None, f"{d.get('hypervisor')} {d.get('hypervisor_version')}, libvirt " \
                 f"{d.get('libvirt_version')}"


def gather(cfg: mig.MigrationConfig, *, qemu_conf: Path = QEMU_CONF,
           tables: tuple[Path, ...] = PROC_TCP, timeout: float = 30.0) -> mig.MigrationFacts:
    """Look at this host in the order the verdict reads the facts; stop at the first gap."""
    try:
        conf = mig.parse_qemu_conf(qemu_conf.read_text())
        conf_error = ""
    except FileNotFoundError:
        conf, conf_error = {}, ""  # libvirt's defaults apply
    except OSError as exc:
        conf, conf_error = {}, f"{qemu_conf}: {exc.strerror}"
    rng, rng_error = mig.port_range(conf)
    facts = mig.MigrationFacts(port_range=rng, port_range_error=conf_error or rng_error)
    uri = mig.connect_uri(cfg)
    if uri is None or not cfg.target:
        return facts
    resolved, why = resolve(cfg.target)
    facts = dataclasses.replace(facts, resolved=resolved, resolve_error=why)
    if not resolved:
        return facts
    local = tuple(a for a in resolved if is_local(a))
    facts = dataclasses.replace(facts, local=local)
    if not local:
        return facts
    transport, _host, port = mig.uri_endpoint(uri)
    if port is None:
        return facts
    table = listeners(tables)
    listening = any(mig.listens_on(table, a, port) for a in local)
    facts = dataclasses.replace(
        facts, listening=listening,
        ports_taken=mig.taken_in_range(table, *rng))
    if not listening:
        return facts
    if transport in ("tcp", "tls"):
        err, answer = _answer(uri, timeout)
    else:  # ssh: the keys that matter are nova's on the peers, not ours
        err, answer = None, f"{transport}: listener only, not opened"
    facts = dataclasses.replace(facts, answer_error=err, answer=answer)
    if cfg.native_tls:
        tls_dir = mig.qemu_tls_dir(conf)
        missing = tuple(f for f in mig.QEMU_TLS_FILES
                        if not os.path.exists(os.path.join(tls_dir, f)))
        facts = dataclasses.replace(facts, tls_dir=tls_dir, tls_missing=missing)
    return facts


def check_live_migration(cfg: mig.MigrationConfig, **kwargs) -> CheckRow:
    """The row: gather this host's facts, let the pure verdict decide."""
    status, detail = mig.live_migration_verdict(cfg, gather(cfg, **kwargs))
    return CheckRow(ROW, status, detail)


def check_cold_migration(addr: str, user: str,
                         tables: tuple[Path, ...] = PROC_TCP) -> CheckRow:
    """"can receive a cold migration": ``addr`` is local, sshd listens there, and
    ``user`` (nova-compute's) can log in with a key."""
    import pwd

    resolved, why = resolve(addr)
    local = [a for a in resolved if is_local(a)]
    sshd = any(mig.listens_on(listeners(tables), a, 22) for a in local) if local else None
    try:
        pw = pwd.getpwnam(user)
        shell, home = pw.pw_shell, pw.pw_dir
    except KeyError:
        shell = home = ""
    keys = os.path.join(home, ".ssh", "authorized_keys") if home else ""
    try:
        has_keys = bool(keys) and os.path.getsize(keys) > 0
    except OSError:
        has_keys = False
    facts = mig.ColdMigrationFacts(addr=addr, local=bool(local), sshd=sshd, user=user,
                                   login_shell=shell, home=home, authorized_keys=has_keys,
                                   resolve_error=why)
    status, detail = mig.cold_migration_verdict(facts)
    return CheckRow("can receive a cold migration", status, detail)
