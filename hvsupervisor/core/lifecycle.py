"""The life of one agent as a pure state machine: events in, actions out.

Why pure: every supervision rule (backoff, flapping, gates, stop escalation,
stale events) is then a unit test that feeds events and reads actions, with
no process, socket, clock or sleep. The supervisor loop is the only place
that does things: it applies the actions (`Spawn`, `Signal`, `SetTimer`,
`CancelTimer`) and turns what happens into events.

Longer than our other modules on purpose: the transitions read best side by
side, with the event and action types they exchange (doc/architecture.md).

States::

    waiting --(gate open and deps ready)--> starting --(ready signal)--> ready
    starting/ready --(exit, not requested)--> backoff --(timer)--> starting | waiting
                                          \\-> failed   (flapping: gave up)
    starting/ready --(stop/restart)--> stopping --(exit)--> stopped | starting

Rules the supervisor loop must know:

* Start rule: the machine starts in `waiting` and spawns as soon as, while it
  is in `waiting`, both its host gate is open and its deps are ready, on
  whatever event it is handling (except StopRequested, which stops it). The
  gate and deps are believed *closed* until told otherwise, so nothing starts
  before the loop has looked. An agent with no host gates and no deps: build
  it with ``gate_open=True, deps_ready=True`` and it spawns on its first
  event (send StartRequested), or leave the defaults and send
  GateChanged(True) and DepsChanged(True): it spawns on the second.
* Timer tokens are opaque and unique per machine and run
  (``"<agent>/<kind>/<seq>"``); feed back `TimerFired` with the exact token.
  A token that is no longer armed (cancelled, superseded, already fired) is
  ignored, so a late timer can never act on a newer process. `CancelTimer`
  may name a timer that already fired: treat it as a no-op.
* `Spawn` is answered by exactly one `Spawned(pid)` or `SpawnFailed(reason)`.
  Events for another pid are ignored (stale).
* An agent that exits while its host gate is closed goes to `waiting`
  without counting a failure: the restart budget is not spent on a host
  problem.
"""

from __future__ import annotations

import enum
import random
import signal
from dataclasses import dataclass
from typing import Literal

from hvsupervisor.core.agent_status import AgentStatus
from hvsupervisor.core.restart_policy import FlapDetector, RestartPolicy, backoff_delay
from hvsupervisor.core.stop_drain import DrainRule

ReadyKind = Literal["notify", "alive", "probe"]


class State(enum.Enum):
    WAITING = "waiting"
    STARTING = "starting"
    READY = "ready"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


RUNNING = (State.STARTING, State.READY)


# -- events (the loop feeds these) -------------------------------------------------------
@dataclass(frozen=True)
class Spawned:
    """The process asked for by ``Spawn`` runs as ``pid``."""

    pid: int


@dataclass(frozen=True)
class SpawnFailed:
    """No process could be started for ``Spawn`` (``reason``: a missing
    executable, an unwritable directory); it counts as a failure."""

    reason: str


@dataclass(frozen=True)
class Exited:
    """The process ``pid`` was reaped, with its exit code or signal and the
    last line it wrote (for STATUS= and ``last_exit``)."""

    pid: int
    returncode: int | None = None
    signal: int | None = None
    last_line: str | None = None


@dataclass(frozen=True)
class BecameReady:
    """The agent serves: READY=1 from its main ``pid``, or its probe
    (tcp, unix, ovsdb-bridge) succeeded for that process."""

    pid: int


@dataclass(frozen=True)
class ProbeFailed:
    """The readiness probe itself raised: readiness cannot be judged."""

    pid: int
    reason: str


@dataclass(frozen=True)
class TimerFired:
    """A ``SetTimer`` came due; stale tokens are ignored."""

    token: str


@dataclass(frozen=True)
class GateChanged:
    """Its host gates (libvirtd, ovsdb) opened or shut; ``reason`` is
    what STATUS= shows while shut."""

    open: bool
    reason: str = ""


@dataclass(frozen=True)
class DepsChanged:
    """Whether every agent it starts ``after`` is ready now."""

    ready: bool
    reason: str = ""


@dataclass(frozen=True)
class StartRequested:
    """An operator asked to start it (``hvsupervisor start``)."""


@dataclass(frozen=True)
class StopRequested:
    """Stop it (an operator, a reload that removed it, or shutdown);
    ``kill_after`` overrides its stop_timeout."""

    kill_after: float | None = None


@dataclass(frozen=True)
class Drained:
    """The stopping ``pid`` logged its drained line (core/stop_drain.py)."""

    pid: int


@dataclass(frozen=True)
class RestartRequested:
    """Restart it now, skipping any backoff and forgetting failures."""


Event = (
    Spawned | SpawnFailed | Exited | BecameReady | ProbeFailed | TimerFired | GateChanged
    | DepsChanged
    | StartRequested | StopRequested | RestartRequested | Drained
)

OPERATOR_VERBS = ("start", "stop", "restart")


def operator_event(verb: str) -> Event:
    """The event for an operator verb on one agent (KeyError for another verb)."""
    return {"start": StartRequested, "stop": StopRequested,
            "restart": RestartRequested}[verb]()


# -- actions (the loop applies these, in order) ------------------------------------------
@dataclass(frozen=True)
class Spawn:
    """Start a process from the plan; answer with Spawned or SpawnFailed."""


@dataclass(frozen=True)
class Signal:
    """Send ``signum`` to ``pid``."""

    pid: int
    signum: int


@dataclass(frozen=True)
class WatchDrain:
    """Follow the agent's log from its current end for ``rule``; answer with Drained.

    Comes just before the stop signal, so no line written after it is missed.
    """

    pid: int
    rule: DrainRule


@dataclass(frozen=True)
class SetTimer:
    """Arm (or re-arm) timer ``token`` to fire in ``delay`` seconds."""

    token: str
    delay: float


@dataclass(frozen=True)
class CancelTimer:
    """Disarm timer ``token``; a timer already fired is a no-op."""

    token: str


Action = Spawn | Signal | SetTimer | CancelTimer | WatchDrain


def describe_exit(returncode: int | None, signum: int | None,
                  last_line: str | None = None) -> str:
    """"exit 1", "signal 9 (SIGKILL)", plus " (last log line)" when known.

    A negative returncode (subprocess's way of saying "killed by signal") is
    read as a signal.
    """
    if signum is None and returncode is not None and returncode < 0:
        signum = -returncode
    if signum is not None:
        try:
            text = f"signal {signum} ({signal.Signals(signum).name})"
        except ValueError:
            text = f"signal {signum}"
    elif returncode is not None:
        text = f"exit {returncode}"
    else:
        text = "exited (status unknown)"
    line = (last_line or "").strip()
    return f"{text} ({line})" if line else text


class AgentLifecycle:
    """One agent's state machine; see the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        policy: RestartPolicy,
        stop_timeout: float,
        ready_kind: ReadyKind,
        alive_seconds: float | None,
        rng: random.Random,
        *,
        gate_open: bool = False,
        deps_ready: bool = False,
        stop_signal: int = signal.SIGTERM,
        drain: DrainRule | None = None,
    ) -> None:
        if ready_kind not in ("notify", "alive", "probe"):
            raise ValueError(f"agent {name}: unknown ready kind {ready_kind!r}")
        if ready_kind == "alive" and (alive_seconds is None or alive_seconds < 0):
            raise ValueError(f"agent {name}: ready=alive needs alive_seconds >= 0")
        self.name = name
        self.policy = policy
        self.stop_timeout = stop_timeout
        # The signal that asks this daemon to stop (systemd's KillSignal=):
        # not every daemon exits on SIGTERM (doc/upstream-behaviour.md).
        self.stop_signal = stop_signal
        # Its log line that says a graceful stop has nothing left to wait for,
        # and what to send then (core/stop_drain.py); None: SIGKILL only.
        self.drain = drain
        self._drained = False
        self.ready_kind = ready_kind
        self.alive_seconds = alive_seconds
        self._rng = rng
        self._state = State.WAITING
        self._since = 0.0
        self._pid: int | None = None
        self._awaiting_spawn = False  # Spawn sent, Spawned/SpawnFailed not yet seen
        self._spawns = 0
        self._restarts = 0
        self._failures = 0  # consecutive, for backoff; reset by the stable timer
        self._flap = FlapDetector(policy.flap_max, policy.flap_window)
        self._gate_open = gate_open
        self._gate_reason = "" if gate_open else "host gate not checked yet"
        self._deps_ready = deps_ready
        self._deps_reason = "" if deps_ready else "dependencies not checked yet"
        self._restart_after_stop = False
        self._fail_after_stop: str | None = None  # stopping because its probe broke
        self._kill_after = stop_timeout
        self._last_exit: str | None = None
        self._fail_reason = ""
        self._timers: dict[str, str] = {}  # kind -> armed token
        self._seq = 0

    # -- read-only view ------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def since(self) -> float:
        """`now` of the last state change."""
        return self._since

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def ready(self) -> bool:
        return self._state is State.READY

    @property
    def restarts(self) -> int:
        """Spawns after the first one, automatic or requested."""
        return self._restarts

    @property
    def last_exit(self) -> str | None:
        return self._last_exit

    @property
    def degraded(self) -> bool:
        """Running although its host gate has closed since it started."""
        return self._state in RUNNING and not self._gate_open

    @property
    def failures(self) -> int:
        """Failures inside the flap window, as of the last handled event."""
        return len(self._flap)

    @property
    def reason(self) -> str:
        """Why it is waiting, failed, backing off or degraded; "" otherwise."""
        if self._state is State.WAITING:
            if not self._gate_open:
                return self._gate_reason or "host gate closed"
            return self._deps_reason or "waiting for dependencies"
        if self._state is State.FAILED:
            return self._fail_reason
        if self._state is State.BACKOFF:
            return f"restarting after {self._last_exit}"
        if self.degraded:
            return self._gate_reason or "host gate closed"
        return ""

    def snapshot(self) -> AgentStatus:
        """Its status without the plan's fields (the supervisor adds digest and argv)."""
        return AgentStatus(
            name=self.name,
            state=self._state.value,
            ready=self.ready,
            reason=self.reason,
            last_exit=self._last_exit,
            degraded=self.degraded,
            pid=self._pid,
            restarts=self._restarts,
        )

    # -- the one entry point ---------------------------------------------------------------
    def handle(self, event: Event, now: float) -> list[Action]:
        """Apply one event at time `now`; return the actions to carry out, in order."""
        self._flap.prune(now)
        match event:
            case Spawned(pid=pid):
                return self._on_spawned(pid)
            case SpawnFailed(reason=reason):
                return self._on_spawn_failed(reason, now)
            case Exited():
                return self._on_exited(event, now)
            case BecameReady(pid=pid):
                ok = self.ready_kind != "alive" and self._state is State.STARTING
                return self._become_ready(now) if ok and pid == self._pid else []
            case ProbeFailed(pid=pid, reason=reason):
                if self._state is not State.STARTING or pid != self._pid:
                    return []
                # A probe that cannot answer would leave the agent "starting"
                # until ready_timeout and nobody would know why. Stop it and
                # call it failed with the probe's error; restarting would only
                # meet the same error (an operator restart revives it).
                self._fail_after_stop = f"readiness probe error: {reason}"
                return self._begin_stop(None, restart=False, now=now)
            case TimerFired(token=token):
                return self._on_timer(token, now)
            case GateChanged(open=is_open, reason=reason):
                self._gate_open, self._gate_reason = is_open, reason
                return self._try_start(now) if self._state is State.WAITING else []
            case DepsChanged(ready=ready, reason=reason):
                self._deps_ready, self._deps_reason = ready, reason
                return self._try_start(now) if self._state is State.WAITING else []
            case StartRequested():
                return self._on_start(now)
            case StopRequested(kill_after=kill_after):
                return self._on_stop(kill_after, now)
            case RestartRequested():
                return self._on_restart(now)
            case Drained(pid=pid):
                return self._on_drained(pid)
        raise TypeError(f"agent {self.name}: not a lifecycle event: {event!r}")

    # -- transitions -------------------------------------------------------------------------
    def _set(self, state: State, now: float) -> None:
        if state is not self._state:
            self._state, self._since = state, now

    def _arm(self, kind: str, delay: float) -> SetTimer:
        self._seq += 1
        token = f"{self.name}/{kind}/{self._seq}"
        self._timers[kind] = token
        return SetTimer(token, delay)

    def _disarm(self, *kinds: str) -> list[Action]:
        kinds = kinds or tuple(self._timers)
        return [CancelTimer(t) for k in kinds if (t := self._timers.pop(k, None))]

    def _try_start(self, now: float) -> list[Action]:
        if self._gate_open and self._deps_ready:
            self._spawns += 1
            if self._spawns > 1:
                self._restarts += 1
            self._pid, self._awaiting_spawn = None, True
            self._set(State.STARTING, now)
            return [Spawn()]
        self._set(State.WAITING, now)
        return []

    def _forgive(self) -> None:
        """An operator (re)start wipes the slate: no backoff, no flap history."""
        self._failures = 0
        self._flap.reset()

    def set_policy(self, policy: RestartPolicy) -> None:
        """A reload changed [supervisor]'s restart settings: they apply from the
        next failure on. The failure history is kept (a reload is not a pardon);
        only the flap detector's limits change."""
        self.policy = policy
        self._flap.max_failures, self._flap.window = policy.flap_max, policy.flap_window

    def _on_spawned(self, pid: int) -> list[Action]:
        if not self._awaiting_spawn:
            return []
        self._awaiting_spawn, self._pid = False, pid
        if self._state is State.STOPPING:  # stop was requested before the pid was known
            return self._send_term()
        if self.ready_kind == "alive":
            return [self._arm("alive", float(self.alive_seconds or 0.0))]
        return []

    def _on_spawn_failed(self, reason: str, now: float) -> list[Action]:
        if not self._awaiting_spawn:
            return []
        self._awaiting_spawn = False
        self._last_exit = f"spawn failed: {reason}"
        if self._state is State.STOPPING:
            return self._after_stop(now)
        return self._on_failure(now)

    def _on_exited(self, ev: Exited, now: float) -> list[Action]:
        if self._pid is None or ev.pid != self._pid:
            return []
        self._pid = None
        self._last_exit = describe_exit(ev.returncode, ev.signal, ev.last_line)
        if self._state is State.STOPPING:
            return self._after_stop(now)
        actions = self._disarm()
        if not self._gate_open:  # the host is the problem: pause, spend no budget
            self._set(State.WAITING, now)
            return actions
        return actions + self._on_failure(now)

    def _on_failure(self, now: float) -> list[Action]:
        self._failures += 1
        self._flap.record(now)
        actions = self._disarm()
        if self._flap.flapping(now):
            self._fail_reason = (
                f"{self._last_exit}; gave up after {len(self._flap)} failures "
                f"in {self.policy.flap_window:g}s"
            )
            self._set(State.FAILED, now)
            return actions
        self._set(State.BACKOFF, now)
        delay = backoff_delay(self.policy, self._failures, self._rng)
        return actions + [self._arm("restart", delay)]

    def _become_ready(self, now: float) -> list[Action]:
        self._set(State.READY, now)
        actions = self._disarm("alive")
        if self._failures:
            # Only a failure count needs forgetting; with none there is no
            # timer, so a healthy idle node never wakes up (0 idle wakeups).
            actions.append(self._arm("stable", self.policy.stable_period))
        return actions

    def _on_timer(self, token: str, now: float) -> list[Action]:
        kind = next((k for k, t in self._timers.items() if t == token), None)
        if kind is None:
            return []  # cancelled or superseded: stale
        del self._timers[kind]
        if kind == "alive" and self._state is State.STARTING:
            return self._become_ready(now)
        if kind == "stable":
            self._failures = 0  # backoff starts over; flap history ages out by itself
        elif kind == "restart" and self._state is State.BACKOFF:
            return self._try_start(now)
        elif kind == "kill" and self._state is State.STOPPING and self._pid is not None:
            return [Signal(self._pid, signal.SIGKILL)]
        return []

    def _begin_stop(self, kill_after: float | None, restart: bool, now: float) -> list[Action]:
        actions = self._disarm()
        self._restart_after_stop = restart
        self._kill_after = self.stop_timeout if kill_after is None else kill_after
        self._set(State.STOPPING, now)
        return actions + (self._send_term() if self._pid is not None else [])

    def _send_term(self) -> list[Action]:
        assert self._pid is not None
        self._drained = False
        watch: list[Action] = [] if self.drain is None else [WatchDrain(self._pid, self.drain)]
        return watch + [Signal(self._pid, self.stop_signal), self._arm("kill", self._kill_after)]

    def _on_drained(self, pid: int) -> list[Action]:
        """Escalate once, for the process being stopped; the kill timer stays armed."""
        if (self.drain is None or self._drained or self._state is not State.STOPPING
                or pid != self._pid):
            return []
        self._drained = True
        return [Signal(pid, self.drain.signum)]

    def _after_stop(self, now: float) -> list[Action]:
        actions = self._disarm()
        if self._fail_after_stop is not None and not self._restart_after_stop:
            self._fail_reason, self._fail_after_stop = self._fail_after_stop, None
            self._set(State.FAILED, now)
            return actions
        self._fail_after_stop = None
        if self._restart_after_stop:
            self._restart_after_stop = False
            return actions + self._try_start(now)
        self._set(State.STOPPED, now)
        return actions

    def _on_stop(self, kill_after: float | None, now: float) -> list[Action]:
        if self._state in RUNNING:
            return self._begin_stop(kill_after, restart=False, now=now)
        if self._state is State.STOPPING:
            self._restart_after_stop = False  # a stop overrides a pending restart
            if kill_after is None or self._pid is None:
                return []
            self._kill_after = kill_after  # a shorter deadline, e.g. the unit is stopping
            return self._disarm("kill") + [self._arm("kill", kill_after)]
        actions = self._disarm()
        self._set(State.STOPPED, now)
        return actions

    def _on_restart(self, now: float) -> list[Action]:
        self._forgive()
        if self._state in RUNNING:
            return self._begin_stop(None, restart=True, now=now)
        if self._state is State.STOPPING:
            self._restart_after_stop = True
            return []
        return self._disarm() + self._try_start(now)

    def _on_start(self, now: float) -> list[Action]:
        if self._state in (State.STOPPED, State.FAILED):
            return self._on_restart(now)
        if self._state is State.STOPPING:
            self._restart_after_stop = True
            return []
        if self._state is State.WAITING:
            return self._try_start(now)
        return []  # already running or about to
