"""At start under systemd: stop what a dead predecessor left in the unit, but the data plane.

With ``KillMode=process`` (units/hvsupervisor.service) systemd kills only
the main process when the unit stops, restarts or trips its watchdog. A
supervisor that stops normally stops its agents itself; one that crashed,
was SIGKILLed or hung (watchdog) leaves them running in the unit's cgroup.
Starting a second copy next to each would be wrong (two nova-computes on
one compute node, an OVS agent fighting another over br-int), so before it
spawns anything the new supervisor lists its own service cgroup and stops
every process in it that is not itself and not a data-plane helper
(core/dataplane.py): old agents, their workers and privsep daemons. The helpers
stay and are adopted by the new agents.

Why the cgroup: systemd puts every process the unit ever started in it,
whatever it reparented to, and a pid in ``cgroup.procs`` is a live member
now, so pid reuse cannot make us signal a stranger. It is consulted only
when the cgroup is a systemd service's own (its name ends in ``.service``):
in a login session or a container's root cgroup it would hold unrelated
processes. Without systemd, the record of spawned agents in the state dir
(agentrecord) is the mechanism.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from hvsupervisor.core import dataplane
from hvsupervisor.process import children

LOG = logging.getLogger("hvsupervisor.supervisor")

CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")
TERM_WAIT = 5.0
KILL_WAIT = 5.0


def service_cgroup(proc_cgroup: str) -> str | None:
    """Our cgroup path if it is a systemd service's (unified "0::", else name=systemd)."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hid == "0" and not controllers:
            paths["unified"] = path
        elif controllers == "name=systemd":
            paths["systemd"] = path
    for key in ("unified", "systemd"):
        path = paths.get(key)
        if path and path.rstrip("/").endswith(".service"):
            return path
    return None


def cgroup_members(path: str, roots: Iterable[str] = CGROUP_ROOTS) -> list[int] | None:
    """The pids in cgroup ``path``, from the first hierarchy that has it."""
    for root in roots:
        procs = Path(root) / path.lstrip("/") / "cgroup.procs"
        try:
            return [int(p) for p in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return None


def stale(members: Iterable[int], me: int, cmdlines: Mapping[int, str],
          ppids: Mapping[int, int], helpers: Iterable[str]) -> dict[int, str]:
    """Members to stop: not us, not a data-plane helper nor anything below one."""
    left = {pid: cmdlines.get(pid, "") for pid in members if pid != me}
    _kept, others = dataplane.split(left, ppids, helpers)
    return others


def stop_stale(helpers: Iterable[str], signal_for: Callable[[str], int],
               proc_cgroup_path: str = "/proc/self/cgroup") -> list[int]:
    """Stop a predecessor's leftovers (see the module docstring); return their pids."""
    try:
        path = service_cgroup(Path(proc_cgroup_path).read_text())
    except OSError:
        return []
    if path is None:
        return []
    members = cgroup_members(path)
    if not members:
        return []
    cmdlines = {pid: children.cmdline(pid) for pid in members}
    found = stale(members, os.getpid(), cmdlines, children.proc_ppids(), helpers)
    if not found:
        return []
    for pid, cmd in sorted(found.items()):
        sig = signal_for(cmd)
        LOG.warning("event=stale-process pid=%d cmd=%s: left by the previous supervisor; "
                    "sending %s", pid, cmd[:200], signal.Signals(sig).name)
        children.signal_all([pid], sig)
    rest = children.wait_gone(found, TERM_WAIT)
    if rest:
        LOG.warning("SIGKILL to %d stale process(es): %s", len(rest),
                    ", ".join(map(str, rest)))
        children.signal_all(rest, signal.SIGKILL)
        rest = children.wait_gone(rest, KILL_WAIT)
    for pid in rest:
        LOG.error("stale process %d did not exit after SIGKILL", pid)
    return sorted(found)
