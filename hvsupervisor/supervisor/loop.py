"""The supervision loop: feeds events to the lifecycle, applies its actions.

Decisions live in the pure core (core/lifecycle.py, core/deps.py, core/status_line.py, the
plan); this module only turns them into effects and turns the world back
into events:

* actions ``Spawn``/``Signal``/``SetTimer``/``CancelTimer`` become a spawned
  process (``children.spawn``, see the mixin in spawning.py), kill(2) and
  ``loop.call_later``;
* SIGCHLD (reaper), per-agent notify sockets, readiness probes, host gates,
  the control socket and our own signals become events.

Events are queued and drained in order, never handled re-entrantly, so an
action that produces an event (a spawn that fails at once) cannot recurse
into a half-updated state. Everything runs on one asyncio loop with no
periodic timer: an idle node with the watchdog off does not wake up.

What acts on the world lives in the mixins: spawning.py (processes, probes,
gates), reload.py, shutdown.py (agents and the data plane), reporting.py
(STATUS=, READY=1, status replies).

Why just over 400 lines: the constructor wires every event source (reaper,
notify sockets, gates, prober, broker, control socket) and ``run`` owns the
start/stop order; both must stay next to the drain loop they feed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import signal
import time
from collections.abc import Callable

from hvsupervisor.config import plan_diff
from hvsupervisor.config.plan import Plan
from hvsupervisor.config.settings import Settings
from hvsupervisor.core import deps
from hvsupervisor.core.lifecycle import (
    AgentLifecycle,
    BecameReady,
    CancelTimer,
    DepsChanged,
    Event,
    Exited,
    GateChanged,
    SetTimer,
    Signal,
    Spawn,
    State,
    StopRequested,
    TimerFired,
    WatchDrain,
    describe_exit,
    operator_event,
)
from hvsupervisor.health import health_policy as hp
from hvsupervisor.health.metrics import MetricsSink
from hvsupervisor.health.prober_client import ProberClient
from hvsupervisor.health.targets import rpc_target
from hvsupervisor.process import children
from hvsupervisor.process.early_signals import PENDING
from hvsupervisor.process.records import AgentRecord
from hvsupervisor.supervisor.agent import Agent, lean, ready_kind, restart_policy
from hvsupervisor.supervisor.agent_users import UserAgents
from hvsupervisor.supervisor.drain_watch import DrainWatching
from hvsupervisor.supervisor.health_watch import Health
from hvsupervisor.supervisor.instances import Instances
from hvsupervisor.supervisor.preloading import Preloading
from hvsupervisor.supervisor.reload import Reloading
from hvsupervisor.supervisor.reporting import Reporting
from hvsupervisor.supervisor.shutdown import Stopping
from hvsupervisor.supervisor.spawning import Spawning, last_line
from hvsupervisor.systemd import journal
from hvsupervisor.systemd.notify import NotifyListener, SystemdNotifier

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package


class ShuttingDown(Exception):
    """An operator verb arrived while the supervisor stops: it would start processes
    that nothing would stop."""


class Supervisor(Spawning, Health, Reloading, Stopping, Reporting, UserAgents, Instances,
                 DrainWatching, Preloading):
    """Runs the enabled agents of ``settings`` until asked to stop."""

    def __init__(
        self,
        settings: Settings,
        plans: dict[str, Plan],
        notifier: SystemdNotifier | None = None,
        gate_factory: Callable[[Settings, dict[str, Plan]], tuple[object, dict]] | None = None,
        rng: random.Random | None = None,
        record: AgentRecord | None = None,
        dir_overrides: tuple[str | None, str | None, str | None] | None = None,
    ):
        self.settings = settings
        # Every spawned agent is recorded in the state dir (process/records.py), so
        # the next supervisor can stop what this one leaves if it is killed.
        self.record = record
        # The command line's dirs, re-applied by every reload (None: from the file).
        self.dir_overrides = dir_overrides or (
            str(settings.state_dir), str(settings.log_dir), str(settings.run_dir))
        self.notifier = notifier or SystemdNotifier()
        # gate_factory(settings, plans) -> (key, {name: Gate}); a reload
        # rebuilds the gates only when the key (their inputs) changed.
        self.gate_factory = gate_factory
        self.rng = rng or random.Random()
        self.agents: dict[str, Agent] = {}
        self.gates: dict = {}
        self._gate_key: object = None
        self._initial_plans = plans
        self._queue: collections.deque[tuple[str, Event]] = collections.deque()
        self._draining = False
        self._changed = asyncio.Event()
        self._stop = asyncio.Event()
        self._shutting_down = False
        self._ready_sent = False
        self._degraded_ready = False
        self._status = ""
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()  # referenced until done (see _background)
        self._started_at = time.monotonic()
        self._pid_to_agent: dict[int, str] = {}
        self._use_journal = journal.journal_available(settings.supervisor.journal_socket)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._pending_checked = time.monotonic()  # reporting.refresh_pending
        self._ready_timer: asyncio.TimerHandle | None = None
        self.reaper: children.Reaper | None = None
        self.prober = ProberClient()
        self.control_plane = hp.UNKNOWN
        self._metrics_timer: asyncio.TimerHandle | None = None
        self.metrics = MetricsSink(settings.supervisor.metrics_textfile,
                                   settings.supervisor.metrics_listen)

    # ------------------------------------------------------------------ setup

    def _make_agent(self, plan: Plan, settings: Settings | None = None) -> Agent:
        """An agent with its notify socket bound (OSError/ValueError if that fails).

        ``settings``: a reload's new settings, not yet committed.
        """
        settings = settings or self.settings
        snap = plan_diff.snapshot(plan)
        target = rpc_target(plan)  # reads the plan's parsed files: before lean()
        plan = lean(plan)
        kind, alive = ready_kind(plan)
        machine = AgentLifecycle(
            plan.agent, restart_policy(settings), plan.stop_timeout, kind, alive, self.rng,
            stop_signal=plan.stop_signal, drain=plan.stop_drain,
        )
        agent = Agent(plan=plan, machine=machine, rpc=target, snapshot=snap,
                      health=hp.AgentHealth(settings.supervisor.health_failures))
        notify_dir = settings.run_dir / "notify"
        agent.listener = NotifyListener(
            str(notify_dir / f"{plan.agent}.sock"),
            lambda pid, fields, name=plan.agent: self._on_notify(name, pid, fields),
        )
        return agent

    # ----------------------------------------------------------------- events

    def _post(self, name: str, event: Event) -> None:
        self._queue.append((name, event))

    def _drain(self) -> None:
        """Handle queued events in order; never re-entered."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._queue:
                name, event = self._queue.popleft()
                agent = self.agents.get(name)
                if agent is None:
                    continue
                actions = agent.machine.handle(event, time.monotonic())
                self._apply(agent, actions)
                self._after_event(agent)
                if not self._queue:
                    self._refresh_conditions()
        finally:
            self._draining = False
        self._report()
        self._changed.set()

    def _after_event(self, agent: Agent) -> None:
        if self._shutting_down and agent.machine.state in (State.BACKOFF, State.WAITING):
            self._post(agent.name, StopRequested())  # no respawn during an ordered stop
        self._health_follow(agent)
        if agent.removing and agent.machine.state in (State.STOPPED, State.FAILED,
                                                      State.WAITING):
            if not agent.running:
                self._forget(agent)

    def _refresh_conditions(self) -> None:
        """Post DepsChanged/GateChanged to agents whose conditions changed."""
        ready = {n for n, a in self.agents.items() if a.machine.ready}
        after = {n: list(a.plan.after) for n, a in self.agents.items()}
        # Built once, not per agent: inside the loop it made every event O(n^2)
        # (82 % of the supervisor's CPU starting 200 agents, benchmarks/scale.py).
        known = {n: [d for d in deps_ if d in after] for n, deps_ in after.items()}
        for name, agent in self.agents.items():
            ok, reason = deps.deps_ready(name, known, ready)
            if ok != agent.deps_ok:
                agent.deps_ok = ok
                self._post(name, DepsChanged(ok, reason))
            gate = self._gate_state(agent)
            if gate != agent.gate:  # the reason matters too: it is what STATUS= shows
                agent.gate = gate
                self._post(name, GateChanged(*gate))
        if self._queue and not self._draining:
            self._drain()

    def _on_exit(self, pid: int, returncode: int | None, sig: int | None) -> None:
        if self.broker is not None and self.broker.on_exit(pid, returncode, sig):
            return  # a helper the broker started; its exit code went to the client
        name = self._pid_to_agent.pop(pid, None)
        if name is not None and self.record is not None:
            self.record.remove(pid)
        if name is not None and self.broker is not None:
            self.broker.set_main_pid(name, None)
        if name is None:
            LOG.info("reaped descendant pid=%d %s", pid, describe_exit(returncode, sig))
            self._changed.set()
            return
        agent = self.agents.get(name)
        if agent is None:
            return
        if agent.probe is not None:
            agent.probe.cancel()
            agent.probe = None
        self._unwatch_drain(agent)
        last = last_line(agent.log_path)
        if agent.hung is not None:  # we killed it: say why, not its last log line
            last, agent.hung = agent.hung, None
        LOG.info("event=exit agent=%s pid=%d %s", name, pid,
                 describe_exit(returncode, sig))
        self._post(name, Exited(pid, returncode, sig, last))
        self._drain()

    def _on_notify(self, name: str, pid: int, fields: dict[str, str]) -> None:
        agent = self.agents.get(name)
        if agent is None:
            return
        if pid != agent.machine.pid:
            LOG.warning("agent=%s: ignored notify message from pid %d (main pid is %s)",
                        name, pid, agent.machine.pid)
            return
        if "STATUS" in fields:
            agent.child_status = fields["STATUS"]
        if fields.get("READY") == "1":
            if agent.plan.ready.kind != "notify":
                # Upstream READY=1 means "launched": the configured rule
                # (a socket, a bridge, a time alive) decides, not this.
                LOG.debug("agent=%s: READY=1 noted; ready = %s decides", name, agent.plan.ready)
                return
            self._post(name, BecameReady(pid))
            self._drain()

    def _fire(self, name: str, token: str) -> None:
        agent = self.agents.get(name)
        if agent is None:
            return
        agent.timers.pop(token, None)
        self._post(name, TimerFired(token))
        self._drain()

    # ---------------------------------------------------------------- actions

    def _apply(self, agent: Agent, actions: list) -> None:
        assert self._loop is not None
        for action in actions:
            if isinstance(action, Spawn):
                self._spawn(agent)
            elif isinstance(action, Signal):
                try:
                    os.kill(action.pid, action.signum)
                except ProcessLookupError:
                    pass
                LOG.info("event=signal agent=%s pid=%d signal=%s", agent.name, action.pid,
                         signal.Signals(action.signum).name)
            elif isinstance(action, SetTimer):
                old = agent.timers.pop(action.token, None)
                if old is not None:
                    old.cancel()
                agent.timers[action.token] = self._loop.call_later(
                    action.delay, self._fire, agent.name, action.token)
            elif isinstance(action, CancelTimer):
                handle = agent.timers.pop(action.token, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(action, WatchDrain):
                self._watch_drain(agent, action)

    # ------------------------------------------------------- background tasks

    def _background(self, coro, what: str, on_error: Callable[[str], None] | None = None
                    ) -> asyncio.Task:
        """Run ``coro`` as a task that is referenced until done and never fails silently.

        The loop keeps only weak references to tasks: an unreferenced one can
        be collected mid-flight. An exception is logged once, with ``what``,
        and handed to ``on_error`` (which turns it into an event).
        """
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            exc = t.exception()
            if exc is None:
                return
            LOG.error("event=task-failed task=%s error=%s: %s", what, type(exc).__name__, exc)
            if on_error is not None:
                on_error(f"{type(exc).__name__}: {exc}")

        task.add_done_callback(done)
        return task

    def _on_sighup(self) -> None:
        LOG.info("event=sighup: reloading")
        self._background(self.reload(), "reload (SIGHUP)")

    # ---------------------------------------------------------------- control

    def request(self, name: str, verb: str) -> None:
        """Operator verbs for one agent: start, stop, restart (KeyError if unknown)."""
        if name not in self.agents:
            raise KeyError(name)
        if self._shutting_down and verb != "stop":
            raise ShuttingDown(f"not {verb}ing {name}: the supervisor is stopping")
        event = operator_event(verb)
        LOG.info("event=%s-requested agent=%s", verb, name)
        if verb == "stop" and "libvirt" in self.agents[name].plan.host_gates:
            self._background(self.note_instances_on_stop(name), "instance count")
        self._post(name, event)
        self._drain()

    def _forget(self, agent: Agent) -> None:
        """Drop an agent (removed by a reload, or a prepared one never committed)."""
        for handle in agent.timers.values():
            handle.cancel()
        self._health_stop(agent)
        self._unwatch_drain(agent)
        if agent.listener is not None:
            agent.listener.close()
        self.agents.pop(agent.name, None)

    # -------------------------------------------------------------------- run

    async def run(self) -> int:
        """Start everything, serve until SIGTERM/SIGINT, then stop cleanly."""
        self._loop = asyncio.get_running_loop()
        # Our handlers first (startsignals' placeholders remembered what came
        # before); then act on what came.
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self.request_shutdown)
        self._loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        PENDING.handover(self.request_shutdown, self._on_sighup)
        children.set_child_subreaper()
        self.reaper = children.Reaper(self._on_exit)
        self.reaper.install()
        (self.settings.run_dir / "notify").mkdir(mode=0o700, parents=True, exist_ok=True)

        plans = self._initial_plans
        # A crashed predecessor's leftovers were stopped before this loop ran
        # (process/leftovers.py stop_predecessor, from cmd/run.py).
        for name in deps.start_order({n: list(p.after) for n, p in plans.items()}):
            self.agents[name] = self._make_agent(plans[name])
        self._start_broker(plans)  # agent_users.py: sockets for the agents that run as users
        self._start_preloaders(plans)  # preloading.py: imports overlap the first starts
        if self.gate_factory is not None:
            await self._replace_gates(*self.gate_factory(self.settings, plans))
        self._initial_plans = plans = {}  # the agents hold lean copies
        self._started_at = time.monotonic()
        self._arm_report_timers()
        try:
            self.metrics.start()
        except (OSError, ValueError) as exc:
            LOG.error("metrics_listen %s: %s; serving no metrics endpoint",
                      self.settings.supervisor.metrics_listen, exc)
        LOG.info("event=start agents=%s", ",".join(self.agents))
        if not self._stop.is_set():  # a SIGTERM during start-up starts nothing
            self._refresh_conditions()
            self._drain()
            if not self.agents:
                self._send_ready()

        await self._stop.wait()
        await self.shutdown()
        for gate in self.gates.values():
            await gate.stop()
        self._disarm_report_timers()
        for agent in list(self.agents.values()):
            self._forget(agent)
        self._close_broker()
        self._stop_preloaders()
        self.reaper.close()
        self._write_metrics()  # the final state (every agent stopped) for the scrape
        self.metrics.close()
        LOG.info("event=stopped")
        return 0
