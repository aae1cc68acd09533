"""``hvsupervisor check`` rows for agents that run as their own users.

Per user-run agent: who it runs as (the user and groups resolved, or the
config row already failed naming the missing one), what the supervisor will
take over at start (root-owned entries in its directories), and whether the
sockets it needs are reachable for it: its broker socket's and log's parent
directories, ovsdb's ``db.sock`` (group openvswitch) and libvirtd's socket
(group libvirt). Nothing is changed here; ``run`` does that (ownership.py).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from hvsupervisor.host.preflight import CheckRow
from hvsupervisor.privsep import ownership

LIBVIRT_SOCK = "/var/run/libvirt/libvirt-sock"


def _root_owned(top: str) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        for name in dirnames + filenames:
            try:
                if os.lstat(os.path.join(dirpath, name)).st_uid == 0:
                    n += 1
            except FileNotFoundError:
                continue
    return n


def _group_socket(label: str, path: str, gid: int, group: str) -> CheckRow:
    try:
        st = os.stat(path)
    except OSError as exc:
        return CheckRow(label, "warn", f"{path}: {exc.strerror}")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_gid == gid and mode & 0o060 == 0o060:
        return CheckRow(label, "ok", f"{path} group {group}, mode {mode:04o}")
    return CheckRow(label, "warn", f"{path} is gid {st.st_gid} mode {mode:04o}, not "
                    f"{group} rw")


def _not_traversable(paths: Iterable[Path]) -> list[str]:
    bad = []
    for p in paths:
        for d in (p, *p.parents):
            try:
                if d.exists() and not d.stat().st_mode & 0o001:
                    bad.append(str(d))
            except OSError:
                continue
    return sorted(set(bad))


def user_rows(plans: dict, run_dir: Path, log_dir: Path,
              ovsdb_remote: str | None) -> list[CheckRow]:
    rows: list[CheckRow] = []
    users = {n: p for n, p in plans.items() if p.identity is not None}
    if not users:
        return [CheckRow("users", "ok", "every agent runs as root (no [agent:NAME] user set)")]
    bad = _not_traversable([run_dir.parent, log_dir.parent])
    rows.append(CheckRow("socket access dirs", "fail" if bad else "ok",
                         f"not searchable by others: {', '.join(bad)}" if bad else
                         f"{run_dir} and {log_dir} reachable (made 0711 at start)"))
    ovs_gid = ownership.ovs_gid()
    for name, plan in users.items():
        ident = plan.identity
        rows.append(CheckRow(f"user {name}", "ok", ident.describe()))
        owned = []
        for d in plan.directories:
            if not os.path.isdir(d):
                owned.append(f"{d} (made at start)")
            else:
                st = os.lstat(d)
                n = _root_owned(d) + (st.st_uid == 0)
                owned.append(f"{d}: {n} root-owned entries taken over at start" if n else
                             f"{d}: owned" if st.st_uid == ident.uid else
                             f"{d}: owner uid {st.st_uid}")
        rows.append(CheckRow(f"ownership {name}", "ok", "; ".join(owned) or "no directories"))
        groups = (ident.gid, *ident.groups)
        if ovs_gid is not None and ovs_gid in groups and ovsdb_remote and \
                ovsdb_remote.startswith("unix:"):
            row = _group_socket(f"socket access {name}", ovsdb_remote[5:], ovs_gid,
                                ownership.OVS_GROUP)
            if row.status != "ok":
                row = CheckRow(row.name, "warn", row.detail + " (made root:openvswitch 0770 "
                               "whenever the supervisor sees ovsdb start)")
            rows.append(row)
        if "libvirt" in plan.host_gates:
            gid = next((g for g in groups if _gname(g) == "libvirt"), None)
            if gid is None:
                rows.append(CheckRow(f"socket access {name}", "fail",
                                     f"{ident.user} is not in group libvirt: "
                                     "libvirtd's socket is root:libvirt"))
            else:
                rows.append(_group_socket(f"socket access {name}", LIBVIRT_SOCK, gid,
                                          "libvirt"))
    return rows


def _gname(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return ""
