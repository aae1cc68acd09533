"""Shutdown and the data plane: stop agents in reverse order, then what they left.

The agents stop in reverse dependency order through their lifecycles
(SIGTERM, then SIGKILL after ``stop_timeout``); the processes they left
behind (our descendants as child subreaper) are then stopped, except, with
``stop_dataplane = false`` (the default), the data-plane helpers (dnsmasq,
haproxy, keepalived, ...: core/dataplane.py), which are listed in the log and
keep serving: the unit's KillMode=process leaves them alone too, and the
agents adopt them when they start again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from hvsupervisor.core import dataplane, deps, stopbudget
from hvsupervisor.core.lifecycle import StopRequested
from hvsupervisor.process import children
from hvsupervisor.supervisor.agent import RUNNING

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package
DATAPLANE_STOP_TIMEOUT = stopbudget.DATAPLANE_STOP_TIMEOUT


class Stopping:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: shutdown.

    Sets ``_shutting_down`` and ``_stop``; waits on the loop's ``_changed``.
    """

    def request_shutdown(self) -> None:
        self._stop.set()

    def request_reexec(self) -> dict:
        """Stop the agents, keep the data plane, and come back as the same pid from
        the current release link (cmd/run.py execs once the loop has ended). Used by
        ``release switch``: a unit restart would do the same under systemd, but this
        works without systemd too and keeps the pid systemd watches."""
        if self._shutting_down:
            return {"ok": False, "error": "the supervisor is shutting down"}
        self.reexec_requested = True
        LOG.info("event=reexec: stopping the agents (the data plane stays) to come back "
                 "from the current release")
        self._stop.set()
        return {"ok": True}

    async def _wait_changed(self, timeout: float | None = None) -> None:
        self._changed.clear()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    async def _stop_agents(self) -> None:
        """Stop in reverse dependency order: an agent waits for its dependents.

        Agents without a process (backoff, waiting) are stopped at once: a
        restart timer firing mid-stop would spawn an agent nothing stops
        (the loop's ``_after_event`` does the same for one that crashes
        meanwhile). The agent set is re-read on every pass: a reload cannot
        add agents once shutdown has begun (it is refused), but one may be
        forgotten.
        """
        requested: set[str] = set()
        for name, agent in self.agents.items():
            if agent.machine.state not in RUNNING:
                requested.add(name)
                self._post(name, StopRequested())
        while True:
            after = {n: [d for d in a.plan.after if d in self.agents]
                     for n, a in self.agents.items()}
            live = {n for n, a in self.agents.items() if a.running}
            pending = [n for n in deps.stop_order(after) if n not in requested]
            for name in pending:
                dependents_live = any(name in after[o] and o in live for o in after)
                if not dependents_live:
                    requested.add(name)
                    self._post(name, StopRequested())
            self._drain()
            if not any(a.running for a in self.agents.values()) and requested >= set(after):
                return
            await self._wait_changed()

    def _leftovers(self) -> dict[int, str]:
        """What a stop must end: every descendant, but the data plane when it is kept."""
        left = children.descendants()
        sup = self.settings.supervisor
        if sup.stop_dataplane or not left:
            return left
        kept, others = dataplane.split(left, children.proc_ppids(), sup.dataplane_helpers)
        for pid, cmd in sorted(kept.items()):
            if pid not in self._kept_logged:
                self._kept_logged.add(pid)
                LOG.info("event=left-running pid=%d cmd=%s (data plane, stop_dataplane = false)",
                         pid, cmd)
        return others

    async def _stop_dataplane(self) -> None:
        self._kept_logged: set[int] = set()
        left = self._leftovers()
        if not left:
            return
        LOG.info("stopping %d process(es) the agents left behind", len(left))
        children.signal_all(left, signal.SIGTERM)
        deadline = time.monotonic() + DATAPLANE_STOP_TIMEOUT
        while self._leftovers() and time.monotonic() < deadline:
            await self._wait_changed(deadline - time.monotonic())
        rest = self._leftovers()
        if rest:
            LOG.warning("SIGKILL to %d leftover process(es): %s", len(rest),
                        ", ".join(str(p) for p in sorted(rest)))
            children.signal_all(rest, signal.SIGKILL)
            deadline = time.monotonic() + DATAPLANE_STOP_TIMEOUT
            while self._leftovers() and time.monotonic() < deadline:
                await self._wait_changed(deadline - time.monotonic())

    async def shutdown(self) -> None:
        self._shutting_down = True
        reexec = getattr(self, "reexec_requested", False)
        LOG.info("event=stopping%s", " reexec" if reexec else "")
        if reexec:  # systemd sees a reload; READY=1 from the new code ends it
            self.notifier.reloading("restarting the agents onto another release")
        else:
            self.notifier.stopping("stopping agents")
        if self._ready_timer is not None:
            self._ready_timer.cancel()
        await self.note_instances_on_stop("hvsupervisor")  # supervisor/instances.py
        await self._stop_agents()
        await self.prober.close()  # ours, not something an agent left behind
        if not reexec:  # a release switch never touches the data plane
            await self._stop_dataplane()
