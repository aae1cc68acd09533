"""The supervision loop: applies the lifecycle's actions, feeds it events.

Decisions live in the pure core (lifecycle.py, deps.py, status.py, the
plan); this module only turns them into effects and turns the world back
into events:

* actions ``Spawn``/``Signal``/``SetTimer``/``CancelTimer`` become
  posix_spawn, kill(2) and ``loop.call_later``;
* SIGCHLD (reaper), per-agent notify sockets, readiness probes, host gates,
  the control socket and our own signals become events.

Events are queued and drained in order, never handled re-entrantly, so an
action that produces an event (a spawn that fails at once) cannot recurse
into a half-updated state. Everything runs on one asyncio loop with no
periodic timer: an idle node with the watchdog off does not wake up.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hvsupervisor import deps, process
from hvsupervisor.agentrecord import AgentRecord
from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.plan import Plan, build_plans
from hvsupervisor.config.settings import Settings, load_settings
from hvsupervisor.lifecycle import (
    AgentLifecycle,
    BecameReady,
    CancelTimer,
    DepsChanged,
    Event,
    Exited,
    GateChanged,
    ProbeFailed,
    RestartRequested,
    SetTimer,
    Signal,
    Spawn,
    Spawned,
    SpawnFailed,
    StartRequested,
    State,
    StopRequested,
    TimerFired,
)
from hvsupervisor.policy import RestartPolicy
from hvsupervisor.readiness import wait_accepting, wait_bridge
from hvsupervisor.startsignals import PENDING
from hvsupervisor.status import AgentSnapshot, summary_line
from hvsupervisor.systemd import journal
from hvsupervisor.systemd.notify import NotifyListener, SystemdNotifier

LOG = logging.getLogger("hvsupervisor.supervisor")

RUNNING = {State.STARTING, State.READY, State.STOPPING}
DATAPLANE_STOP_TIMEOUT = 5.0
# Traverse-only for others: qemu runs as libvirt-qemu and must reach instance
# disks under {state_dir}/nova/instances; nobody else may list them.
AGENT_DIR_MODE = 0o711


class ReloadRefused(Exception):
    """A reload that cannot be applied whole; the old state is kept."""


class ShuttingDown(Exception):
    """An operator verb arrived while the supervisor stops: it would start processes
    that nothing would stop."""


@dataclass
class Agent:
    """One agent's I/O-side state next to its pure lifecycle."""

    plan: Plan
    machine: AgentLifecycle
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    listener: NotifyListener | None = None
    probe: asyncio.Task | None = None
    log_path: Path | None = None
    child_status: str | None = None
    deps_ok: bool | None = None
    gate: tuple[bool, str] | None = None
    removing: bool = False

    @property
    def name(self) -> str:
        return self.plan.agent

    @property
    def running(self) -> bool:
        return self.machine.state in RUNNING or self.machine.pid is not None


def _policy(settings: Settings) -> RestartPolicy:
    s = settings.supervisor
    return RestartPolicy(
        restart_sec=s.restart_sec,
        restart_max_delay=max(s.restart_max_delay, s.restart_sec),
        restart_steps=s.restart_steps,
        jitter=s.restart_jitter,
        stable_period=s.stable_period,
        flap_max=s.flap_max,
        flap_window=s.flap_window,
    )


def _ready_kind(plan: Plan) -> tuple[str, float | None]:
    kind = plan.ready.kind
    if kind == "alive":
        return "alive", plan.ready.seconds
    if kind == "notify":
        return "notify", None
    return "probe", None


def _lean(plan: Plan) -> Plan:
    """The plan without its parsed files: only explain and gate wiring need them,
    and with a thousand snippets they are most of a running supervisor's RSS."""
    return dataclasses.replace(plan, parsed=())


def _last_line(path: Path | None, limit: int = 4096) -> str | None:
    """The last non-empty line of an agent's output file, for STATUS= on failure."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else None


class Supervisor:
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
        # Every spawned agent is recorded in the state dir (agentrecord.py), so
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
        self._tasks: set[asyncio.Task] = set()
        self._pid_to_agent: dict[int, str] = {}
        self._use_journal = journal.journal_available(settings.supervisor.journal_socket)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._ready_timer: asyncio.TimerHandle | None = None
        self._started_at = time.monotonic()
        self.reaper: process.Reaper | None = None

    # ------------------------------------------------------------------ setup

    def _make_agent(self, plan: Plan, settings: Settings | None = None) -> Agent:
        """An agent with its notify socket bound (OSError/ValueError if that fails)."""
        settings = settings or self.settings
        plan = _lean(plan)
        kind, alive = _ready_kind(plan)
        machine = AgentLifecycle(
            plan.agent, _policy(settings), plan.stop_timeout, kind, alive, self.rng
        )
        agent = Agent(plan=plan, machine=machine)
        notify_dir = settings.run_dir / "notify"
        agent.listener = NotifyListener(
            str(notify_dir / f"{plan.agent}.sock"),
            lambda pid, fields, name=plan.agent: self._on_notify(name, pid, fields),
        )
        return agent

    def _gate_state(self, agent: Agent) -> tuple[bool, str]:
        for gate_name in agent.plan.host_gates:
            gate = self.gates.get(gate_name)
            if gate is None:
                continue
            st = gate.status
            if not st.open:
                return False, st.reason
        return True, ""

    def _on_gate_change(self, status) -> None:
        LOG.info("event=gate gate=%s open=%s reason=%s", status.name, status.open, status.reason)
        self._refresh_conditions()
        self._drain()

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
        name = self._pid_to_agent.pop(pid, None)
        if name is not None and self.record is not None:
            self.record.remove(pid)
        if name is None:
            LOG.info("reaped descendant pid=%d %s", pid, process.describe_exit(returncode, sig))
            self._changed.set()
            return
        agent = self.agents.get(name)
        if agent is None:
            return
        if agent.probe is not None:
            agent.probe.cancel()
            agent.probe = None
        last = _last_line(agent.log_path)
        LOG.info("event=exit agent=%s pid=%d %s", name, pid,
                 process.describe_exit(returncode, sig))
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

    def _output_fds(self, agent: Agent) -> tuple[int, int]:
        # Decided per spawn: a reload may change [supervisor] journal_socket.
        agent.log_path = None if self._use_journal else self.settings.log_dir / f"{agent.name}.log"
        if self._use_journal:
            path = self.settings.supervisor.journal_socket
            try:
                # One stream for stdout and stderr: oslo.log writes every level
                # to one of them, and one stream keeps a traceback in order.
                out = journal.journal_stream(agent.name, 6, path)
                return out, os.dup(out)
            except OSError as exc:
                LOG.warning("journal stream for %s failed (%s); writing %s.log instead",
                            agent.name, exc, agent.name)
                agent.log_path = self.settings.log_dir / f"{agent.name}.log"
        assert agent.log_path is not None
        fd = journal.log_file_fd(str(agent.log_path))
        return fd, os.dup(fd)

    def _spawn(self, agent: Agent) -> None:
        for directory in agent.plan.directories:
            try:
                os.makedirs(directory, mode=AGENT_DIR_MODE, exist_ok=True)
            except OSError as exc:
                self._post(agent.name, SpawnFailed(f"cannot create {directory}: {exc.strerror}"))
                return
        env = process.child_env(os.environ, agent.plan.env)
        if agent.listener is not None:
            env["NOTIFY_SOCKET"] = agent.listener.path
        try:
            out, err = self._output_fds(agent)
        except OSError as exc:
            self._post(agent.name, SpawnFailed(f"cannot open output: {exc}"))
            return
        try:
            pid = process.spawn(agent.plan.argv, env, out, err)
        except process.SpawnError as exc:
            LOG.error("event=spawn-failed agent=%s %s", agent.name, exc)
            self._post(agent.name, SpawnFailed(str(exc)))
            return
        finally:
            os.close(out)
            os.close(err)
        self._pid_to_agent[pid] = agent.name
        if self.record is not None:
            try:
                self.record.add(agent.name, pid)
            except OSError as exc:
                LOG.warning("agent=%s pid=%d: not recorded in %s (%s): a supervisor killed now "
                            "would leave it running", agent.name, pid, self.record.directory, exc)
        LOG.info("event=spawn agent=%s pid=%d digest=%s", agent.name, pid,
                 agent.plan.digest[:12])
        self._post(agent.name, Spawned(pid))
        if agent.plan.ready.kind in ("tcp", "unix", "ovsdb-bridge"):
            agent.probe = self._background(
                self._probe(agent.name, pid), f"readiness probe of {agent.name}",
                lambda error, name=agent.name, pid=pid: self._probe_failed(name, pid, error))

    def _probe_failed(self, name: str, pid: int, error: str) -> None:
        agent = self.agents.get(name)
        if agent is not None and agent.probe is not None and agent.probe.done():
            agent.probe = None
        self._post(name, ProbeFailed(pid, error))
        self._drain()

    async def _probe(self, name: str, pid: int) -> None:
        agent = self.agents.get(name)
        if agent is None:
            return
        rule = agent.plan.ready
        if rule.kind == "ovsdb-bridge":
            assert rule.bridge is not None
            await wait_bridge(self._ovsdb_remote(), rule.bridge)
        else:
            await wait_accepting(rule)
        agent.probe = None
        self._post(name, BecameReady(pid))
        self._drain()

    # ------------------------------------------------------------- reporting

    def snapshots(self) -> list[AgentSnapshot]:
        return [a.machine.snapshot() for a in self.agents.values()]

    def _report(self) -> None:
        line = summary_line(self.snapshots())
        all_ready = bool(self.agents) and all(a.machine.ready for a in self.agents.values())
        if all_ready:
            self._degraded_ready = False  # a late agent caught up after ready_timeout
        elif self._degraded_ready:
            line = "degraded: " + line
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
        self._status = line
        LOG.info("event=ready degraded=%s status=%s", degraded, line)
        self.notifier.ready_with_status(line)

    def _ready_timeout(self) -> None:
        self._ready_timer = None
        if not self._ready_sent:
            LOG.warning("ready_timeout reached: telling systemd READY=1 with a degraded status")
            self._send_ready(degraded=True)

    def _watchdog_tick(self, interval: float, scheduled: float) -> None:
        """Pet the watchdog only from the loop, and only if the loop is not lagging."""
        assert self._loop is not None
        lag = time.monotonic() - scheduled
        if lag < interval:
            self.notifier.watchdog()
        else:
            LOG.warning("loop lagged %.1fs: not petting the watchdog", lag)
        due = time.monotonic() + interval / 2
        self._watchdog = self._loop.call_later(interval / 2, self._watchdog_tick, interval, due)

    def status_json(self) -> dict:
        return {
            "ready": self._ready_sent and bool(self.agents)
            and all(a.machine.ready for a in self.agents.values()),
            "status": self._status,
            "agents": [
                {
                    "name": a.name,
                    "state": a.machine.state.value,
                    "pid": a.machine.pid,
                    "ready": a.machine.ready,
                    "restarts": a.machine.restarts,
                    "last_exit": a.machine.last_exit,
                    "reason": a.machine.reason,
                    "degraded": a.machine.degraded,
                    "digest": a.plan.digest,
                    "argv": list(a.plan.argv),
                }
                for a in self.agents.values()
            ],
        }

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
        event = {"start": StartRequested(), "stop": StopRequested(),
                 "restart": RestartRequested()}[verb]
        LOG.info("event=%s-requested agent=%s", verb, name)
        self._post(name, event)
        self._drain()

    async def reload(self) -> dict:
        """Re-resolve every plan; restart only what changed; all or nothing.

        One transaction (doc: README "Reload"): *prepare* everything that can
        fail (parse, plans, gate inputs, the notify sockets of added agents,
        [DEFAULT] dirs that need a restart) without touching the running
        state; then *commit* synchronously, which cannot fail; then *settle*:
        wait until every restarted or started agent is ready or failed, every
        removed one gone, or ``[supervisor] reload_timeout`` passed. Every
        RELOADING=1 ends in READY=1, with the refusal in STATUS= if refused.
        """
        if self._shutting_down:
            return {"ok": False, "error": "the supervisor is stopping; reload refused"}
        async with self._reload_lock:
            if self._shutting_down:
                return {"ok": False, "error": "the supervisor is stopping; reload refused"}
            # Before the first READY=1 systemd is not in a reload: tell it nothing.
            tell = self._ready_sent
            if tell:
                self.notifier.reloading()
            try:
                result = self._reload_commit(*self._reload_prepare())
            except ReloadRefused as exc:
                error = str(exc)
            except Exception as exc:  # a bug: still end the reload, keep the old state
                LOG.exception("event=reload-error")
                error = f"internal error: {type(exc).__name__}: {exc}"
            else:
                error = None
            if error is not None:
                # Logged outside the except block: oslo.log would append a
                # traceback, and an operator mistake gets one clear line.
                LOG.error("event=reload-refused error=%s", error)
                self._status = f"reload refused, old config kept: {error}"
                if tell:
                    self.notifier.ready_with_status(self._status[:400])
                else:
                    self.notifier.status(self._status[:400])
                return {"ok": False, "error": error}
            gates = result.pop("_gates")
            if gates is not None:
                await self._replace_gates(*gates)
            process.release_memory()
            LOG.info("event=reload restarted=%s started=%s stopped=%s",
                     result["restarted"], result["started"], result["stopped"])
            outcome = await self._settle(result)
            LOG.info("event=reload-settled %s",
                     " ".join(f"{n}={v}" for n, v in outcome["agents"].items()) or "-")
            self._status = ""
            self._report()
            if tell:
                self.notifier.ready_with_status(self._status)
            return {"ok": True, **result, **outcome}

    def _reload_prepare(self) -> tuple:
        """Everything that can fail, without touching the running state (ReloadRefused)."""
        try:
            settings = load_settings(self.settings.defaults_dir, self.settings.override_dir,
                                     *self.dir_overrides)
            for option in ("state_dir", "log_dir", "run_dir"):
                old, new = getattr(self.settings, option), getattr(settings, option)
                if old != new:
                    raise ReloadRefused(
                        f"[DEFAULT] {option} changed ({old} -> {new}): it needs a restart "
                        f"of hvsupervisor, not a reload")
            plans = build_plans(settings)
            from hvsupervisor.run_cmd import socket_path_problem

            problem = socket_path_problem(settings.run_dir, plans)
            if problem:
                raise ReloadRefused(problem)
            gates = None
            if self.gate_factory is not None:
                key, new_gates = self.gate_factory(settings, plans)
                if key != self._gate_key:
                    gates = (key, new_gates)
        except ConfigError as exc:
            raise ReloadRefused(str(exc)) from None
        added: dict[str, Agent] = {}
        try:
            for name, plan in plans.items():
                if name not in self.agents:
                    added[name] = self._make_agent(plan, settings)
        except (OSError, ValueError) as exc:
            for agent in added.values():
                self._forget(agent)
            raise ReloadRefused(f"agent {name}: cannot be set up: {exc}") from None
        return settings, plans, gates, added

    def _reload_commit(self, settings: Settings, plans: dict[str, Plan], gates, added) -> dict:
        """Apply a prepared reload; synchronous (no await), so no stop can slip in between."""
        if self._shutting_down:
            for agent in added.values():
                self._forget(agent)
            raise ReloadRefused("the supervisor is stopping; reload refused")
        self.settings = settings
        self._use_journal = journal.journal_available(settings.supervisor.journal_socket)
        policy = _policy(settings)
        for agent in self.agents.values():
            agent.machine.set_policy(policy)
        self._rearm_ready_timer()
        restarted, started, stopped = [], [], []
        for name in list(self.agents):
            if name not in plans and not self.agents[name].removing:
                self.agents[name].removing = True
                stopped.append(name)
                self._post(name, StopRequested())
        for name in deps.start_order({n: list(p.after) for n, p in plans.items()}):
            plan = plans[name]
            if name in added:
                self.agents[name] = added[name]
                started.append(name)
                continue
            agent = self.agents[name]
            old = agent.plan
            agent.plan = _lean(plan)
            agent.machine.stop_timeout = plan.stop_timeout
            # The ready rule is not in the digest: a new one applies from the next start.
            agent.machine.ready_kind, agent.machine.alive_seconds = _ready_kind(plan)
            if agent.removing:
                # Re-enabled while it still stops: it starts again once stopped.
                agent.removing = False
                started.append(name)
                self._post(name, StartRequested())
            elif plan.digest != old.digest and agent.machine.state is not State.STOPPED:
                restarted.append(name)
                self._post(name, RestartRequested())
        self._refresh_conditions()
        self._drain()
        return {"restarted": restarted, "started": started, "stopped": stopped,
                "_gates": gates}

    def _rearm_ready_timer(self) -> None:
        """ready_timeout changed before the first READY=1: count it from the start."""
        if self._ready_timer is None or self._ready_sent or self._loop is None:
            return
        self._ready_timer.cancel()
        left = self._started_at + self.settings.supervisor.ready_timeout - time.monotonic()
        self._ready_timer = self._loop.call_later(max(0.0, left), self._ready_timeout)

    def _settled(self, name: str, removed: bool) -> str | None:
        """An agent's reload outcome once it is final, else None."""
        agent = self.agents.get(name)
        if removed:
            return "stopped" if agent is None or not agent.running else None
        if agent is None:
            return "removed"
        state = agent.machine.state
        if state is State.READY:
            return "ready"
        if state is State.FAILED:
            return f"failed: {agent.machine.reason}"
        if state is State.STOPPED:
            return "stopped"
        return None

    async def _settle(self, result: dict) -> dict:
        """Wait until the reload is in effect (see reload); say per agent what happened."""
        targets = {n: False for n in result["restarted"] + result["started"]}
        targets.update({n: True for n in result["stopped"]})
        bound = self.settings.supervisor.reload_timeout
        deadline = time.monotonic() + bound
        outcome: dict[str, str] = {}
        while True:
            for name, removed in targets.items():
                if name not in outcome and (verdict := self._settled(name, removed)):
                    outcome[name] = verdict
            left = deadline - time.monotonic()
            if len(outcome) == len(targets) or left <= 0 or self._shutting_down:
                break
            await self._wait_changed(left)
        for name in targets:
            if name not in outcome:
                agent = self.agents.get(name)
                state = agent.machine.state.value if agent else "gone"
                reason = agent.machine.reason if agent else ""
                why = ("the supervisor began stopping" if self._shutting_down
                       else f"reload_timeout ({bound:g}s) passed")
                outcome[name] = f"not settled: {state}" + (f" ({reason})" if reason else "") \
                    + f"; {why}"
        settled = all(not v.startswith("not settled") for v in outcome.values())
        return {"agents": outcome, "settled": settled}

    def _ovsdb_remote(self) -> str:
        """The ovsdb the node's agents use: the ovsdb gate's, else neutron's default."""
        ovsdb = getattr(self._gate_key, "ovsdb", None)
        if ovsdb:
            return ovsdb[0]
        from hvsupervisor.host.ovsdb import DEFAULT_REMOTE

        return DEFAULT_REMOTE

    async def _replace_gates(self, key: object, gates: dict) -> None:
        old, self.gates, self._gate_key = self.gates, gates, key
        for gate in old.values():
            await gate.stop()
        for name, gate in gates.items():
            LOG.info("event=gate-watch gate=%s", name)
            await gate.start(self._on_gate_change)
        self._refresh_conditions()

    def _forget(self, agent: Agent) -> None:
        """Drop an agent (removed by a reload, or a prepared one never committed)."""
        for handle in agent.timers.values():
            handle.cancel()
        if agent.listener is not None:
            agent.listener.close()
        self.agents.pop(agent.name, None)

    # --------------------------------------------------------------- shutdown

    def request_shutdown(self) -> None:
        self._stop.set()

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
        (``_after_event`` does the same for one that crashes meanwhile).
        The agent set is re-read on every pass: a reload cannot add agents
        once shutdown has begun (it is refused), but one may be forgotten.
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

    async def _stop_dataplane(self) -> None:
        left = process.descendants()
        if not left:
            return
        if not self.settings.supervisor.stop_dataplane:
            for pid, cmd in sorted(left.items()):
                LOG.warning("event=left-running pid=%d cmd=%s (stop_dataplane = false)", pid, cmd)
            return
        LOG.info("stopping %d process(es) the agents left behind", len(left))
        process.signal_all(left, signal.SIGTERM)
        deadline = time.monotonic() + DATAPLANE_STOP_TIMEOUT
        while process.descendants() and time.monotonic() < deadline:
            await self._wait_changed(deadline - time.monotonic())
        rest = process.descendants()
        if rest:
            LOG.warning("SIGKILL to %d leftover process(es): %s", len(rest),
                        ", ".join(str(p) for p in sorted(rest)))
            process.signal_all(rest, signal.SIGKILL)
            deadline = time.monotonic() + DATAPLANE_STOP_TIMEOUT
            while process.descendants() and time.monotonic() < deadline:
                await self._wait_changed(deadline - time.monotonic())

    async def shutdown(self) -> None:
        self._shutting_down = True
        LOG.info("event=stopping")
        self.notifier.stopping("stopping agents")
        if self._ready_timer is not None:
            self._ready_timer.cancel()
        await self._stop_agents()
        await self._stop_dataplane()

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
        process.set_child_subreaper()
        self.reaper = process.Reaper(self._on_exit)
        self.reaper.install()
        (self.settings.run_dir / "notify").mkdir(mode=0o700, parents=True, exist_ok=True)

        plans = self._initial_plans
        for name in deps.start_order({n: list(p.after) for n, p in plans.items()}):
            self.agents[name] = self._make_agent(plans[name])
        if self.gate_factory is not None:
            await self._replace_gates(*self.gate_factory(self.settings, plans))
        self._initial_plans = plans = {}  # the agents hold lean copies
        timeout = self.settings.supervisor.ready_timeout
        self._started_at = time.monotonic()
        self._ready_timer = self._loop.call_later(timeout, self._ready_timeout)
        interval = self.notifier.watchdog_interval()
        if interval:
            due = time.monotonic() + interval / 2
            self._watchdog = self._loop.call_later(interval / 2, self._watchdog_tick,
                                                   interval, due)
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
        if self._watchdog is not None:
            self._watchdog.cancel()
        for agent in list(self.agents.values()):
            self._forget(agent)
        self.reaper.close()
        LOG.info("event=stopped")
        return 0
