"""At start: stop what a dead predecessor left running, but the data plane. One entry point.

``stop_predecessor`` is the only call (cmd/run.py, before anything spawns). It
uses two mechanisms for the one concept, because neither sees everything:

1. the record of spawned agents in the state dir (records.py): pid, start
   time and boot id of each agent this node's supervisor spawned, with or
   without systemd; each is stopped with its own stop signal and budget;
2. under systemd, the unit's service cgroup (below): whatever else is in it,
   workers and privsep daemons that left the agent's session included.

The record goes first (the agents' own graceful stop, their budgets), then
the cgroup sweep catches the rest.

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
from hvsupervisor.process.records import AgentRecord, stop_leftovers

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


def _stop_signal_for(plans: Mapping, cmdline: str) -> int:
    """The stop_signal of the agent whose program ``cmdline`` runs (SIGTERM if none)."""
    names = dataplane.program_names(cmdline)
    for plan in plans.values():
        if os.path.basename(plan.argv[0]) in names:
            return plan.stop_signal
    return signal.SIGTERM


def stop_predecessor(state_dir: Path, plans: Mapping, helpers: Iterable[str]) -> AgentRecord:
    """Stop everything a dead supervisor left running (see the module docstring) and
    return this run's record of spawned agents.

    Each recorded agent gets its plan's stop budget (stopbudget.py: the catalog's
    stop_timeout, or its graceful_shutdown_timeout + margin) and stop signal;
    an agent no longer in the catalog gets the longest budget and SIGTERM.
    """
    record = AgentRecord.for_state_dir(state_dir)
    record.ensure()
    left = record.leftovers()
    if left:
        default = max((p.stop_timeout for p in plans.values()), default=30.0)
        alive = stop_leftovers(
            left, lambda name: plans[name].stop_timeout if name in plans else default,
            lambda name: plans[name].stop_signal if name in plans else signal.SIGTERM)
        for entry in left:
            if entry.pid not in alive:
                record.remove(entry.pid)
    stop_stale(helpers, lambda cmd: _stop_signal_for(plans, cmd))
    return record
