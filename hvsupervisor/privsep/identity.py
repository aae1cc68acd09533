"""Who an agent runs as (the passwd/group lookups), and the argv that drops to it.

The Identity value itself is pure data (config/host_facts.py); this module is
the shell that resolves catalog names to it (host/facts.py calls ``resolve``).

The drop is done by ``setpriv`` (util-linux, in every Debian base system),
exec'd in front of the agent's own argv, not by a ``preexec_fn``:

* the supervisor has threads (libvirt's event loop, gate probes), and Python
  code between fork and exec in a threaded parent can deadlock on a lock
  another thread held at fork time; ``setpriv`` is one exec of a small C
  program, and the agent keeps the same pid (``setpriv`` execs it);
* ``subprocess``'s ``user=`` changes the uid *before* a ``preexec_fn`` runs,
  after which the bounding set can no longer be cleared (CAP_SETPCAP is gone).

``setpriv`` sets supplementary groups, then gid, then uid, with the bounding,
inheritable and ambient sets emptied and no_new_privs set, so a set-uid root
binary cannot bring root back (doc/upstream-behaviour.md, "Agents as their
own users").
"""

from __future__ import annotations

import grp
import pwd
import shutil
from collections.abc import Sequence

from hvsupervisor.config.host_facts import ROOT_NAMES, Identity

SETPRIV = "setpriv"


class IdentityError(Exception):
    """A user or group the catalog names does not exist on this host."""


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def resolve(user: str, group: str = "", supplementary: Sequence[str] = ()) -> Identity | None:
    """Resolve names to an Identity; None when the agent runs as root (opt-out).

    ``group`` defaults to the user's primary group. Raises IdentityError
    naming the missing user or group.
    """
    if user in ROOT_NAMES:
        # The opt-out: group and supplementary_groups (shipped for the day a
        # site sets user) mean nothing for root.
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise IdentityError(
            f"user {user!r} does not exist on this host "
            "(systemd-sysusers hvsupervisor.conf creates the shipped ones)") from None
    if pw.pw_uid == 0:
        raise IdentityError(f"user {user!r} has uid 0: use user = root to run as root")
    gid = pw.pw_gid
    gname = _group_name(gid)
    if group:
        gid = _gid(group)
        gname = group
    groups = tuple(dict.fromkeys(g for g in (_gid(s) for s in supplementary if s) if g != gid))
    return Identity(user=user, uid=pw.pw_uid, group=gname, gid=gid, groups=groups,
                    home=pw.pw_dir or "/", group_names=tuple(_group_name(g) for g in groups))


def _gid(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise IdentityError(f"group {name!r} does not exist on this host") from None


def setpriv_path() -> str:
    """Absolute path of setpriv; IdentityError if util-linux lacks it."""
    path = shutil.which(SETPRIV, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise IdentityError("setpriv (util-linux) not found: cannot drop privileges")
    return path


def drop_argv(identity: Identity, argv: Sequence[str], setpriv: str | None = None) -> list[str]:
    """``argv`` prefixed with the setpriv call that becomes ``identity``.

    Numbers, not names: nothing is looked up between the check and the exec.
    """
    groups = (["--groups", ",".join(map(str, identity.groups))] if identity.groups
              else ["--clear-groups"])
    return [
        setpriv or setpriv_path(),
        *groups,
        "--regid", str(identity.gid),
        "--reuid", str(identity.uid),
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        *argv,
    ]


def user_env(identity: Identity) -> dict[str, str]:
    """HOME/USER/LOGNAME as systemd's User= would set them (not root's /root)."""
    return {"HOME": identity.home, "USER": identity.user, "LOGNAME": identity.user}
