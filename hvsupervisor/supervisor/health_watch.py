"""Health: readiness that means serving, liveness, the control plane, metrics.

For an agent whose ready rule is ``rpc`` or ``http`` (doc/health.md):

* while it starts, it is probed (0.2 s, growing to 2 s) until it answers:
  then it is ready;
* while it is ready, it is probed every ``health_interval`` (+/-10 %);
  ``health_failures`` unanswered probes in a row, while the control plane
  is reachable, make it hung: it is killed with its own session (SIGKILL,
  not its daemonized data plane) and the lifecycle restarts it as a crash,
  so backoff and flapping apply;
* an RPC probe that finds the agent's bus refusing a login makes the node
  ``degraded: control plane unreachable`` (STATUS=, status, metrics), and
  nothing is restarted until a probe gets through again.

RPC probes go through the prober process (health/prober_client.py), HTTP probes
run on this loop; the policy is pure (health/health_policy.py). Every change a
metric shows rewrites the node_exporter textfile (health/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from hvsupervisor.health import health_policy as hp
from hvsupervisor.health import outcome as oc
from hvsupervisor.health.http import http_probe
from hvsupervisor.health.metrics import build_registry
from hvsupervisor.process import children
from hvsupervisor.supervisor.agent import Agent

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package

HEALTH_KINDS = ("rpc", "http")
# Metrics are rebuilt at most this often: a burst of events (200 agents
# starting) costs one rebuild, not one per event; an idle node none.
METRICS_DELAY = 1.0
DEGRADED_BUS = "degraded: control plane unreachable; "


def own_session(pid: int) -> list[int]:
    """``pid`` and its descendants still in its session: the agent itself.

    A hung agent is killed with its own workers (the DHCP and L3 agents'
    cotyledon worker does the RPC serving; left stopped, it would keep a
    consumer on the agent's queue that never answers), but never with what
    it daemonized into a session of its own (dnsmasq, haproxy, keepalived:
    the data plane survives an agent restart).
    """
    pids = [pid]
    for child in children.descendants(pid):
        try:
            if os.getsid(child) == pid:
                pids.append(child)
        except ProcessLookupError:
            continue
    return pids


def with_control_plane(line: str, control_plane: str) -> str:
    """The STATUS= line, prefixed while the control plane is unreachable."""
    if control_plane != hp.UNREACHABLE:
        return line
    return DEGRADED_BUS + line.removeprefix("degraded: ")


class Health:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: probes and liveness.

    Uses the loop's ``agents``, ``rng``, ``_loop``, ``_report``; owns
    ``prober``, ``control_plane`` and ``metrics`` (set up in the loop's
    ``__init__``).
    """

    async def _probe_once(self, agent: Agent) -> oc.ProbeResult:
        """One rpc or http probe of ``agent``."""
        rule = agent.plan.ready
        timeout = self.settings.supervisor.health_timeout
        if rule.kind == "http":
            assert rule.url is not None
            return await http_probe(rule.url, rule.status, timeout)
        if agent.rpc is None or agent.rpc.url is None:
            return oc.ProbeResult(oc.ERROR, "no [DEFAULT] transport_url in the agent's config")
        return await self.prober.probe(agent.rpc.request(timeout))

    async def _wait_serving(self, agent: Agent, pid: int) -> bool:
        """Probe a starting agent until it answers; False if its process changed."""
        for delay in hp.ready_delays():
            result = await self._probe_once(agent)
            if agent.machine.pid != pid:
                return False
            self._record(agent, result, counting=False)
            if result.ok:
                return True
            await asyncio.sleep(delay)
        return False  # not reached: ready_delays() never ends

    def _record(self, agent: Agent, result: oc.ProbeResult, counting: bool = True) -> bool:
        """Note a probe in the agent's health and the node's control-plane state.

        Returns True when the agent is hung. A readiness probe (``counting``
        False) updates what status shows but never counts a failure: a
        starting agent is judged by ready_timeout, not by liveness.
        """
        assert agent.health is not None
        if agent.plan.ready.kind == "rpc":
            state = hp.control_plane(result.outcome, self.control_plane)
            if state != self.control_plane:
                self._control_plane_changed(state, agent, result)
        if counting:
            hung = agent.health.record(result, time.time(), self.control_plane)
        else:
            failures = agent.health.failures
            agent.health.record(result, time.time(), self.control_plane)
            agent.health.failures = failures
            if not result.ok:
                agent.health.state = hp.UNKNOWN
            hung = False
        self._metrics_changed()
        return hung

    def _control_plane_changed(self, state: str, agent: Agent,
                               result: oc.ProbeResult) -> None:
        old, self.control_plane = self.control_plane, state
        if state == hp.UNREACHABLE:
            LOG.warning("event=control-plane state=unreachable agent=%s bus=%s detail=%s: "
                        "node degraded, no agent is restarted for failing probes",
                        agent.name, agent.rpc, result.detail)
        elif old == hp.UNREACHABLE:
            LOG.info("event=control-plane state=reachable agent=%s: recovered", agent.name)
        else:
            LOG.info("event=control-plane state=%s", state)
        self._status = ""  # STATUS= goes out again, with or without the prefix
        self._report()

    def _health_follow(self, agent: Agent) -> None:
        """Liveness runs while the agent is ready; a new process starts afresh."""
        if agent.plan.ready.kind not in HEALTH_KINDS or agent.health is None:
            self._health_stop(agent)  # a reload may have changed the rule
            return
        if agent.machine.pid != agent.health_pid:
            agent.health_pid = agent.machine.pid
            agent.health.reset()
        if agent.machine.ready and not self._shutting_down:
            if agent.health_timer is None and agent.health_task is None:
                self._health_schedule(agent)
        else:
            self._health_stop(agent)

    def _health_schedule(self, agent: Agent) -> None:
        assert self._loop is not None
        delay = hp.next_delay(self.settings.supervisor.health_interval, self.rng)
        agent.health_timer = self._loop.call_later(delay, self._health_tick, agent.name)

    def _health_stop(self, agent: Agent) -> None:
        if agent.health_timer is not None:
            agent.health_timer.cancel()
            agent.health_timer = None
        if agent.health_task is not None:
            agent.health_task.cancel()
            agent.health_task = None

    def _health_tick(self, name: str) -> None:
        agent = self.agents.get(name)
        if agent is None:
            return
        agent.health_timer = None
        agent.health_task = asyncio.ensure_future(self._health_run(agent, agent.machine.pid))

    async def _health_run(self, agent: Agent, pid: int | None) -> None:
        try:
            result = await self._probe_once(agent)
        finally:
            agent.health_task = None
        if agent.machine.pid != pid or not agent.machine.ready or pid is None:
            return  # the process changed under the probe: its answer is stale
        assert agent.health is not None
        if self._record(agent, result):
            why = (f"hung: {agent.health.failures} probes unanswered "
                   f"({agent.health.last_error})")
            LOG.error("event=hung agent=%s pid=%d %s; killing it (SIGKILL: a hung or stopped "
                      "process may never act on SIGTERM) to restart it", agent.name, pid, why)
            agent.hung = why
            children.signal_all(own_session(pid), signal.SIGKILL)
            return
        if result.outcome != oc.ANSWERED:
            LOG.warning("event=probe agent=%s health=%s outcome=%s detail=%s", agent.name,
                        agent.health.label(), result.outcome, result.detail)
        self._health_schedule(agent)

    def _metrics_changed(self) -> None:
        """Something a metric shows changed: rebuild them within METRICS_DELAY."""
        if self._metrics_timer is None and self._loop is not None:
            self._metrics_timer = self._loop.call_later(METRICS_DELAY, self._write_metrics)

    def _write_metrics(self) -> None:
        """Rebuild the metrics now (the sink skips the write when nothing changed)."""
        if self._metrics_timer is not None:
            self._metrics_timer.cancel()
            self._metrics_timer = None
        self.metrics.update(build_registry(self.node_status()))
