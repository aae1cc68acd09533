"""Ownership for agents that run as their own users (the I/O side).

The supervisor, as root, makes sure a user-run agent can use what it needs,
and no more:

* ``take_over``: the agent's ``directories`` become the agent's user's, and
  so does what a root-era install left below them (files owned by uid 0).
  Files owned by anybody else stay as they are: instance disks belong to
  libvirt-qemu while a guest runs, dnsmasq's leases to nobody.
* ``prepare_log_file``: ``<log_dir>/<agent>.log`` exists and is the agent's
  (``--log-file``); logrotate's ``create`` keeps owner and mode.
* ``share_config_file``: an override-dir file the agent reads becomes
  ``root:<group> 0640``: readable by the agent, not writable, not by others.
* ``share_ovsdb_socket``: ovsdb-server makes ``db.sock`` ``root:root 0750``
  on every start; the OVS agents need it, so after every (re)start it
  becomes ``root:openvswitch 0770`` (``openvswitch`` from sysusers.d).
  Chosen over a loopback TCP manager (``ptcp:6640:127.0.0.1``) because TCP
  has no peer credentials: every local user could then drive ovsdb.
"""

from __future__ import annotations

import grp
import logging
import os
import stat
from pathlib import Path

LOG = logging.getLogger(__name__)

OVS_GROUP = "openvswitch"
CONFIG_MODE = 0o640


def take_over(top: str | Path, uid: int, gid: int) -> int:
    """chown ``top`` and every root-owned entry below it to uid:gid; return the count.

    Symlinks are changed themselves (lchown), never followed; other owners
    are left alone.
    """
    changed = 0
    top = str(top)
    st = os.lstat(top)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.lchown(top, uid, gid)
        changed += 1
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                est = os.lstat(path)
            except FileNotFoundError:
                continue
            if est.st_uid == 0:
                os.lchown(path, uid, gid)
                changed += 1
    return changed


def prepare_log_file(path: str | Path, uid: int, gid: int) -> None:
    """Create the agent's log file if missing; make it uid:gid 0640."""
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, CONFIG_MODE)
    try:
        st = os.fstat(fd)
        if st.st_uid == 0 or (st.st_uid, st.st_gid) == (uid, gid):
            os.fchown(fd, uid, gid)
    finally:
        os.close(fd)


def share_config_file(path: str | Path, gid: int) -> str | None:
    """Make an override-dir config file root:<gid> 0640; a problem to log, or None.

    Only root-owned files are changed; a file whose group is another
    non-root group is left alone and reported (two agents with different
    groups read it: the operator must decide).
    """
    st = os.stat(path)
    if st.st_uid != 0:
        return None
    if st.st_gid not in (0, gid):
        if st.st_mode & stat.S_IROTH:
            return None
        return (f"{path} is group {st.st_gid} and not world-readable: the agent "
                f"(group {gid}) may not read it")
    if st.st_gid != gid:
        os.chown(path, 0, gid)
    if stat.S_IMODE(st.st_mode) != CONFIG_MODE:
        os.chmod(path, CONFIG_MODE)
    return None


def ovs_gid() -> int | None:
    try:
        return grp.getgrnam(OVS_GROUP).gr_gid
    except KeyError:
        return None


def share_ovsdb_socket(remote: str) -> str | None:
    """``unix:PATH`` -> PATH becomes root:openvswitch 0770; what was done, or None."""
    if not remote.startswith("unix:"):
        return None
    gid = ovs_gid()
    if gid is None:
        return None
    path = remote[len("unix:"):]
    st = os.stat(path)
    if st.st_gid != gid:
        os.chown(path, -1, gid)
    if stat.S_IMODE(st.st_mode) != 0o770:
        os.chmod(path, 0o770)
    return f"{path} root:{OVS_GROUP} 0770"
