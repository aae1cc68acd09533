"""Reporting: the STATUS= line, READY=1, the watchdog and the status reply.

Everything here reads the agents' lifecycles and tells the outside world;
nothing changes an agent. The metrics are rewritten with every report
(supervisor/health_watch.py, which also owns the control-plane prefix).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from hvsupervisor.core.agent_status import AgentStatus, NodeStatus
from hvsupervisor.core.status_line import summary_line
from hvsupervisor.process import codechange
from hvsupervisor.supervisor.health_watch import with_control_plane

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package


class Reporting:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: what it tells the world.

    Reads the loop's ``agents``, ``_ready_sent``, ``_degraded_ready``,
    ``_status``; owns ``_ready_timer`` and ``_watchdog``.
    """

    def snapshots(self) -> list[AgentStatus]:
        """Each agent's lifecycle status: cheap, for the STATUS= line on every event."""
        return [dataclasses.replace(a.machine.snapshot(), restart_pending=a.pending)
                if a.pending else a.machine.snapshot() for a in self.agents.values()]

    def refresh_pending(self) -> None:
        """Look whether an agent's code changed after its process started (LP#1980211).

        A few stat() calls per agent, done when someone asks (status over the
        control socket) and on a watchdog tick at most every
        ``code_check_interval``: the loop is awake then anyway, so an idle node
        gains no wakeup, and a fleet's metrics show an upgrade that nobody has
        looked at with `status` yet. STATUS= follows, so `systemctl status`
        shows it from then on. A new process clears it (spawning.py).
        """
        self._pending_checked = time.monotonic()
        changed = self._refresh_release_pending()
        for agent in self.agents.values():
            pid = agent.machine.pid
            reason = codechange.changed_since(list(agent.plan.argv), pid) if pid else None
            if (reason or "") != agent.pending:
                agent.pending, changed = reason or "", True
                if reason:
                    LOG.warning("event=restart-pending agent=%s %s", agent.name, reason)
        if changed:
            self._report()
            self._metrics_changed()

    def _refresh_release_pending(self) -> bool:
        """A newer good release installed beside ours and not switched to: 'restart
        pending' for the node (doc/release.md). True if that changed."""
        from hvsupervisor.core.release_model import newest_pending
        from hvsupervisor.release.store import ReleaseError, ReleaseStore, running_release

        if not hasattr(self, "_release"):
            self._release = running_release()
            self.release_pending = ""
        if self._release is None:
            return False
        try:
            newer = newest_pending(self._release, ReleaseStore(
                self.settings.supervisor.release_root).installed())
        except (ReleaseError, OSError):
            newer = None
        text = (f"release {newer.id} installed, not switched to "
                f"(hvsupervisor release switch {newer.id})") if newer else ""
        if text != self.release_pending:
            self.release_pending = text
            if text:
                LOG.warning("event=restart-pending %s", text)
            return True
        return False

    def plans_json(self) -> dict:
        """Each agent's running plan snapshot, for `config diff` and `reload --dry-run`."""
        return {a.name: {"state": a.machine.state.value, "pid": a.machine.pid,
                         "snapshot": a.snapshot} for a in self.agents.values()}

    def _report(self) -> None:
        line = summary_line(self.snapshots())
        all_ready = bool(self.agents) and all(a.machine.ready for a in self.agents.values())
        if all_ready:
            self._degraded_ready = False  # a late agent caught up after ready_timeout
        elif self._degraded_ready:
            line = "degraded: " + line
        line = with_control_plane(line, self.control_plane)
        self._metrics_changed()
        if line != self._status:
            self._status = line
            LOG.info("status: %s", line)
            self.notifier.status(line)
        if all_ready and not self._ready_sent and not self._shutting_down:
            self._send_ready()

    def _send_ready(self, degraded: bool = False) -> None:
        self._ready_sent = True
        self._degraded_ready = degraded
        if self._ready_timer is not None:
            self._ready_timer.cancel()
            self._ready_timer = None
        line = summary_line(self.snapshots())
        if degraded:
            line = "degraded: " + line
        line = with_control_plane(line, self.control_plane)
        self._status = line
        LOG.info("event=ready degraded=%s status=%s", degraded, line)
        self.notifier.ready_with_status(line)

    def _ready_timeout(self) -> None:
        self._ready_timer = None
        if not self._ready_sent:
            LOG.warning("ready_timeout reached: telling systemd READY=1 with a degraded status")
            self._send_ready(degraded=True)

    def _arm_report_timers(self) -> None:
        """The ready_timeout timer, and the watchdog when systemd asked for one."""
        assert self._loop is not None
        timeout = self.settings.supervisor.ready_timeout
        self._ready_timer = self._loop.call_later(timeout, self._ready_timeout)
        interval = self.notifier.watchdog_interval()
        if interval:
            due = time.monotonic() + interval / 2
            self._watchdog = self._loop.call_later(interval / 2, self._watchdog_tick,
                                                   interval, due)

    def _disarm_report_timers(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _watchdog_tick(self, interval: float, scheduled: float) -> None:
        """Pet the watchdog only from the loop, and only if the loop is not lagging."""
        assert self._loop is not None
        lag = time.monotonic() - scheduled
        if lag < interval:
            self.notifier.watchdog()
        else:
            LOG.warning("loop lagged %.1fs: not petting the watchdog", lag)
        every = self.settings.supervisor.code_check_interval
        if every and time.monotonic() - self._pending_checked >= every:
            self.refresh_pending()
            self._background(self.refresh_instances(), "instance count")  # instances.py
        due = time.monotonic() + interval / 2
        self._watchdog = self._loop.call_later(interval / 2, self._watchdog_tick, interval, due)

    def node_status(self) -> NodeStatus:
        """The one status object every output renders (control socket, CLI, JSON)."""
        from hvsupervisor.config.secrets import mask_argv

        agents = tuple(
            dataclasses.replace(a.machine.snapshot(), digest=a.plan.digest,
                                argv=tuple(mask_argv(a.plan.argv)),  # --password X, URLs
                                ready_rule=str(a.plan.ready),
                                health=a.health.to_json() if a.health is not None else None,
                                restart_pending=a.pending)
            for a in self.agents.values())
        ready = self._ready_sent and bool(agents) and all(a.ready for a in agents)
        disabled, why = self.compute_disabled()
        release = getattr(self, "_release", None)
        return NodeStatus(ready=ready, status=self._status, agents=agents,
                          control_plane=self.control_plane, instances=self.instances,
                          compute_disabled=disabled, compute_disabled_reason=why,
                          release=release.id if release else "",
                          release_pending=getattr(self, "release_pending", ""))
