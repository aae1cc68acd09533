"""The agent state machine, driven by events with a fake `now`: exact actions and states."""

import random
import signal

import pytest

from hvsupervisor.core.lifecycle import (
    AgentLifecycle,
    BecameReady,
    CancelTimer,
    DepsChanged,
    Exited,
    GateChanged,
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
    describe_exit,
)
from hvsupervisor.core.restart_policy import RestartPolicy, nominal_delay

POLICY = RestartPolicy(
    restart_sec=1.0, restart_max_delay=16.0, restart_steps=4, jitter=0.0,
    stable_period=30.0, flap_max=4, flap_window=60.0,
)


def make(name="agent", ready_kind="notify", alive_seconds=None, policy=POLICY, **kw):
    return AgentLifecycle(
        name, policy, stop_timeout=10.0, ready_kind=ready_kind,
        alive_seconds=alive_seconds, rng=random.Random(0), **kw,
    )


def timer(actions, kind):
    """The one SetTimer of `kind` in `actions`."""
    found = [a for a in actions if isinstance(a, SetTimer) and a.token.split("/")[1] == kind]
    assert len(found) == 1, actions
    return found[0]


def running(machine, pid=100, now=0.0):
    """Open gate and deps, spawn `pid`, return the actions of Spawned."""
    if machine.state is State.WAITING:
        assert machine.handle(GateChanged(True), now) == []
        assert machine.handle(DepsChanged(True), now) == [Spawn()]
    return machine.handle(Spawned(pid), now)


def ready(machine, pid=100, now=0.0):
    running(machine, pid, now)
    actions = machine.handle(BecameReady(pid), now)
    assert machine.state is State.READY
    return actions


# -- starting -------------------------------------------------------------------------------
def test_waits_until_gate_and_deps_are_open():
    m = make()
    assert m.state is State.WAITING
    assert m.reason == "host gate not checked yet"
    assert m.handle(DepsChanged(True), 0) == []
    assert m.handle(StartRequested(), 0) == []
    assert m.state is State.WAITING
    assert m.handle(GateChanged(False, "libvirt qemu:///system: connection refused"), 0) == []
    assert m.reason == "libvirt qemu:///system: connection refused"
    assert m.handle(GateChanged(True, "libvirt ok"), 1) == [Spawn()]
    assert m.state is State.STARTING
    assert m.pid is None
    assert m.handle(Spawned(100), 1) == []
    assert m.pid == 100


def test_waiting_on_deps_says_why():
    m = make()
    m.handle(GateChanged(True), 0)
    assert m.handle(DepsChanged(False, "waiting for neutron-openvswitch-agent"), 0) == []
    assert m.reason == "waiting for neutron-openvswitch-agent"
    assert m.handle(DepsChanged(True), 1) == [Spawn()]


def test_agent_without_gates_or_deps_starts_on_first_event():
    m = make(gate_open=True, deps_ready=True)
    assert m.state is State.WAITING
    assert m.handle(StartRequested(), 0) == [Spawn()]


def test_stop_before_anything_opened():
    m = make(gate_open=True, deps_ready=True)
    assert m.handle(StopRequested(), 0) == []
    assert m.state is State.STOPPED


def test_notify_ready_only_from_current_pid():
    m = make()
    running(m, pid=100)
    assert m.handle(BecameReady(999), 1) == []
    assert m.state is State.STARTING
    actions = m.handle(BecameReady(100), 2)
    assert m.state is State.READY and m.ready
    assert actions == []  # no failures to forget: no stable timer, no idle wakeup


def test_alive_kind_becomes_ready_on_its_timer():
    m = make(ready_kind="alive", alive_seconds=5.0)
    actions = running(m, pid=7)
    assert actions == [SetTimer("agent/alive/1", 5.0)]
    assert m.handle(BecameReady(7), 1) == []  # READY=1 is not what "alive" waits for
    assert m.state is State.STARTING
    actions = m.handle(TimerFired("agent/alive/1"), 5)
    assert m.state is State.READY
    assert actions == []


def test_alive_kind_needs_seconds():
    with pytest.raises(ValueError, match="agent x: ready=alive needs alive_seconds"):
        make("x", ready_kind="alive", alive_seconds=None)
    with pytest.raises(ValueError, match="unknown ready kind 'tcp'"):
        make("x", ready_kind="tcp")


# -- failures, backoff, flapping -------------------------------------------------------------
def test_exit_goes_to_backoff_then_respawns():
    m = make()
    ready(m, pid=100)
    actions = m.handle(Exited(100, returncode=1, last_line="boom"), 5)
    assert m.state is State.BACKOFF
    assert m.pid is None
    assert actions == [SetTimer("agent/restart/1", 1.0)]
    assert m.last_exit == "exit 1 (boom)"
    assert m.reason == "restarting after exit 1 (boom)"
    assert m.failures == 1
    assert m.handle(TimerFired("agent/restart/1"), 6) == [Spawn()]
    assert m.state is State.STARTING
    assert m.restarts == 1
    # Ready again after a failure: now there is a count to forget after stable_period.
    m.handle(Spawned(101), 6)
    assert m.handle(BecameReady(101), 7) == [SetTimer("agent/stable/2", 30.0)]
    m.handle(TimerFired("agent/stable/2"), 37)
    # Backoff started over: the first step's delay again, not the second's.
    assert timer(m.handle(Exited(101, returncode=1), 40), "restart").delay == 1.0


def test_backoff_grows_to_cap():
    policy = RestartPolicy(restart_sec=1, restart_max_delay=16, restart_steps=4, jitter=0,
                           flap_max=0)
    m = make(policy=policy)
    running(m, pid=1)
    delays = []
    for i in range(1, 8):
        actions = m.handle(Exited(i, returncode=1), i * 100.0)
        t = timer(actions, "restart")
        delays.append(t.delay)
        assert m.handle(TimerFired(t.token), i * 100.0 + t.delay) == [Spawn()]
        m.handle(Spawned(i + 1), i * 100.0 + t.delay)
    assert delays == pytest.approx([1, 2, 4, 8, 16, 16, 16])
    assert m.restarts == 7


def test_backoff_jitter_stays_in_bounds():
    policy = RestartPolicy(restart_sec=1, restart_max_delay=16, restart_steps=4, jitter=0.2,
                           flap_max=0)
    m = make(policy=policy)
    running(m, pid=1)
    for i in range(1, 30):
        t = timer(m.handle(Exited(i, returncode=1), i * 100.0), "restart")
        nominal = nominal_delay(policy, i)
        assert nominal * 0.8 - 1e-9 <= t.delay <= min(16, nominal * 1.2) + 1e-9
        m.handle(TimerFired(t.token), i * 100.0 + t.delay)
        m.handle(Spawned(i + 1), i * 100.0 + t.delay)


def test_backoff_resets_after_stable_period():
    m = make()
    ready(m, pid=1)
    t = timer(m.handle(Exited(1, returncode=1), 0), "restart")
    assert t.delay == 1.0
    m.handle(TimerFired(t.token), 1)
    m.handle(Spawned(2), 1)
    stable = timer(m.handle(BecameReady(2), 2), "stable")
    t = timer(m.handle(Exited(2, returncode=1), 3), "restart")
    assert t.delay == 2.0  # second failure in a row, not yet stable
    m.handle(TimerFired(t.token), 5)
    m.handle(Spawned(3), 5)
    stable = timer(m.handle(BecameReady(3), 6), "stable")
    assert m.handle(TimerFired(stable.token), 36) == []
    t = timer(m.handle(Exited(3, returncode=1), 100), "restart")
    assert t.delay == 1.0  # back to the first step


def test_spawn_failure_counts_like_an_exit():
    m = make()
    m.handle(GateChanged(True), 0)
    assert m.handle(DepsChanged(True), 0) == [Spawn()]
    actions = m.handle(SpawnFailed("[Errno 2] No such file or directory: 'nova-compute'"), 0)
    assert actions == [SetTimer("agent/restart/1", 1.0)]
    assert m.state is State.BACKOFF
    assert m.last_exit == "spawn failed: [Errno 2] No such file or directory: 'nova-compute'"


def test_flapping_fails_one_agent_while_sibling_runs():
    bad, good = make("bad"), make("good")
    ready(bad, pid=10)
    ready(good, pid=20)
    now = 0.0
    pid = 10
    for _ in range(3):
        t = timer(bad.handle(Exited(pid, returncode=1, last_line="Traceback"), now), "restart")
        assert bad.state is State.BACKOFF
        now += t.delay
        assert bad.handle(TimerFired(t.token), now) == [Spawn()]
        pid += 1
        bad.handle(Spawned(pid), now)
    actions = bad.handle(Exited(pid, returncode=1, last_line="ImportError: foo"), now)
    assert actions == []  # no restart timer: it gave up
    assert bad.state is State.FAILED
    assert bad.reason == "exit 1 (ImportError: foo); gave up after 4 failures in 60s"
    assert bad.failures == 4
    snap = bad.snapshot()
    assert (snap.name, snap.state, snap.ready) == ("bad", "failed", False)
    assert snap.last_exit == "exit 1 (ImportError: foo)"
    # The sibling is untouched.
    assert good.state is State.READY and good.pid == 20
    # A failed agent ignores gate churn and late events.
    assert bad.handle(GateChanged(True), now + 1) == []
    assert bad.handle(TimerFired("bad/restart/1"), now + 1) == []
    assert bad.state is State.FAILED


def test_failures_outside_window_do_not_flap():
    m = make()
    running(m, pid=1)
    now = 0.0
    for i in range(1, 10):
        t = timer(m.handle(Exited(i, returncode=1), now), "restart")
        now += 61.0  # every failure alone in its window
        m.handle(TimerFired(t.token), now)
        m.handle(Spawned(i + 1), now)
        assert m.state is State.STARTING  # never failed
    assert m.failures == 0  # the last failure is 61 s old: out of the window


def test_signal_exit_is_described():
    m = make()
    ready(m, pid=5)
    m.handle(Exited(5, returncode=None, signal=signal.SIGKILL), 1)
    assert m.last_exit == "signal 9 (SIGKILL)"


def test_describe_exit():
    assert describe_exit(1, None, None) == "exit 1"
    assert describe_exit(0, None, "  done \n") == "exit 0 (done)"
    assert describe_exit(-15, None, None) == "signal 15 (SIGTERM)"
    assert describe_exit(None, 200, None) == "signal 200"
    assert describe_exit(None, None, None) == "exited (status unknown)"
    assert describe_exit(None, 9) == "signal 9 (SIGKILL)"


# -- operator requests ----------------------------------------------------------------------
def test_restart_revives_failed_agent():
    policy = RestartPolicy(restart_sec=1, restart_max_delay=16, jitter=0, flap_max=1)
    m = make(policy=policy)
    running(m, pid=1)
    m.handle(Exited(1, returncode=2), 0)
    assert m.state is State.FAILED
    assert m.handle(StartRequested(), 1) == [Spawn()]  # start on failed == restart
    m.handle(Spawned(2), 1)
    assert m.failures == 0
    m.handle(Exited(2, returncode=2), 2)
    assert m.state is State.FAILED
    assert m.handle(RestartRequested(), 3) == [Spawn()]
    assert m.state is State.STARTING
    assert m.restarts == 2


def test_restart_failed_agent_with_gate_shut_waits():
    policy = RestartPolicy(jitter=0, flap_max=1)
    m = make(policy=policy)
    running(m, pid=1)
    m.handle(Exited(1, returncode=2), 0)
    assert m.state is State.FAILED
    m.handle(GateChanged(False, "ovsdb unix:/run/openvswitch/db.sock: no such file"), 1)
    assert m.handle(RestartRequested(), 2) == []
    assert m.state is State.WAITING
    assert m.reason == "ovsdb unix:/run/openvswitch/db.sock: no such file"
    assert m.handle(GateChanged(True), 3) == [Spawn()]


def test_stop_escalates_to_sigkill():
    m = make()
    ready(m, pid=42)
    actions = m.handle(StopRequested(), 10)
    assert actions == [
        Signal(42, signal.SIGTERM),
        SetTimer("agent/kill/1", 10.0),
    ]
    assert m.state is State.STOPPING
    assert m.handle(TimerFired("agent/kill/1"), 20) == [Signal(42, signal.SIGKILL)]
    assert m.handle(Exited(42, signal=signal.SIGKILL), 20.1) == []
    assert m.state is State.STOPPED
    assert m.pid is None
    assert m.last_exit == "signal 9 (SIGKILL)"
    # A stopped agent stays stopped: no restart timer, gate churn does nothing.
    assert m.handle(GateChanged(True), 30) == []
    assert m.state is State.STOPPED


def test_stop_with_own_deadline_and_clean_exit():
    m = make()
    running(m, pid=42)
    actions = m.handle(StopRequested(kill_after=2.5), 0)
    assert actions == [Signal(42, signal.SIGTERM), SetTimer("agent/kill/1", 2.5)]
    assert m.handle(Exited(42, returncode=0), 1) == [CancelTimer("agent/kill/1")]
    assert m.state is State.STOPPED
    assert m.restarts == 0


def test_second_stop_shortens_deadline():
    m = make()
    running(m, pid=42)
    m.handle(StopRequested(), 0)
    assert m.handle(StopRequested(kill_after=1.0), 1) == [
        CancelTimer("agent/kill/1"), SetTimer("agent/kill/2", 1.0)
    ]
    assert m.handle(StopRequested(), 1.5) == []


def test_stop_in_backoff_cancels_restart():
    m = make()
    running(m, pid=1)
    t = timer(m.handle(Exited(1, returncode=1), 0), "restart")
    assert m.handle(StopRequested(), 0.5) == [CancelTimer(t.token)]
    assert m.state is State.STOPPED
    assert m.handle(TimerFired(t.token), 1) == []  # fired anyway (race): ignored
    assert m.state is State.STOPPED


def test_stop_before_pid_known_signals_once_spawned():
    m = make(gate_open=True, deps_ready=True)
    assert m.handle(StartRequested(), 0) == [Spawn()]
    assert m.handle(StopRequested(), 0) == []
    assert m.state is State.STOPPING
    assert m.handle(Spawned(9), 0) == [Signal(9, signal.SIGTERM), SetTimer("agent/kill/1", 10.0)]
    assert m.handle(Exited(9, returncode=0), 1) == [CancelTimer("agent/kill/1")]
    assert m.state is State.STOPPED


def test_stop_before_spawn_that_then_fails():
    m = make(gate_open=True, deps_ready=True)
    m.handle(StartRequested(), 0)
    m.handle(StopRequested(), 0)
    assert m.handle(SpawnFailed("no such file"), 0) == []
    assert m.state is State.STOPPED


def test_restart_of_running_agent_respawns_at_once_and_forgives():
    m = make()
    ready(m, pid=1)
    t = timer(m.handle(Exited(1, returncode=1), 0), "restart")
    m.handle(TimerFired(t.token), 1)
    m.handle(Spawned(2), 1)
    m.handle(BecameReady(2), 2)
    assert m.failures == 1
    actions = m.handle(RestartRequested(), 3)
    assert Signal(2, signal.SIGTERM) in actions
    kill = timer(actions, "kill")
    assert m.state is State.STOPPING
    # Exit after the requested stop: straight to Spawn, no backoff timer.
    assert m.handle(Exited(2, signal=signal.SIGTERM), 4) == [CancelTimer(kill.token), Spawn()]
    assert m.state is State.STARTING
    assert m.failures == 0
    m.handle(Spawned(3), 4)
    # The next failure starts the backoff curve from the beginning.
    assert timer(m.handle(Exited(3, returncode=1), 5), "restart").delay == 1.0


def test_restart_from_stopped_and_start_while_stopping():
    m = make()
    running(m, pid=1)
    m.handle(StopRequested(), 0)
    assert m.handle(StartRequested(), 0.5) == []  # queued behind the stop
    assert m.handle(Exited(1, returncode=0), 1)[-1] == Spawn()
    m.handle(Spawned(2), 1)
    m.handle(StopRequested(), 2)
    m.handle(Exited(2, returncode=0), 3)
    assert m.state is State.STOPPED
    assert m.handle(RestartRequested(), 4) == [Spawn()]


def test_stop_overrides_pending_restart():
    m = make()
    running(m, pid=1)
    m.handle(RestartRequested(), 0)
    m.handle(StopRequested(), 0.1)
    assert m.handle(Exited(1, returncode=0), 1) == [CancelTimer("agent/kill/1")]
    assert m.state is State.STOPPED


def test_restart_in_backoff_skips_the_wait():
    m = make()
    running(m, pid=1)
    t = timer(m.handle(Exited(1, returncode=1), 0), "restart")
    assert m.handle(RestartRequested(), 0.1) == [CancelTimer(t.token), Spawn()]
    assert m.handle(StartRequested(), 0.2) == []  # already starting


# -- stale events ---------------------------------------------------------------------------
def test_stale_pid_and_timers_are_ignored():
    m = make(ready_kind="alive", alive_seconds=5.0)
    alive_old = timer(running(m, pid=100), "alive")
    restart = timer(m.handle(Exited(100, returncode=1), 1), "restart")
    assert m.handle(TimerFired(restart.token), 2) == [Spawn()]
    alive_new = timer(m.handle(Spawned(200), 2), "alive")
    # The old process's alive timer fires late: must not mark the new one ready.
    assert m.handle(TimerFired(alive_old.token), 6) == []
    assert m.state is State.STARTING
    # Events for the old pid, a duplicate Spawned, an unknown token.
    assert m.handle(Exited(100, returncode=1), 6) == []
    assert m.handle(BecameReady(100), 6) == []
    assert m.handle(Spawned(300), 6) == []
    assert m.handle(TimerFired("agent/restart/999"), 6) == []
    assert m.handle(TimerFired(restart.token), 6) == []  # already fired once
    assert m.state is State.STARTING and m.pid == 200
    assert m.handle(TimerFired(alive_new.token), 7) == [SetTimer("agent/stable/4", 30.0)]
    assert m.ready


def test_late_kill_timer_does_not_hit_new_process():
    m = make()
    running(m, pid=1)
    kill = timer(m.handle(RestartRequested(), 0), "kill")
    m.handle(Exited(1, returncode=0), 1)
    m.handle(Spawned(2), 1)
    assert m.handle(TimerFired(kill.token), 10) == []
    assert m.state is State.STARTING


def test_tokens_are_unique_per_agent():
    a, b = make("a", ready_kind="alive", alive_seconds=1.0), make("b", ready_kind="alive",
                                                                  alive_seconds=1.0)
    ta = timer(running(a, pid=1), "alive")
    tb = timer(running(b, pid=2), "alive")
    assert ta.token != tb.token
    assert a.handle(TimerFired(tb.token), 1) == []


# -- host gates -----------------------------------------------------------------------------
def test_gate_closed_while_running_degrades_but_keeps_running():
    m = make()
    ready(m, pid=1)
    assert m.handle(GateChanged(False, "libvirt qemu:///system: connection refused"), 1) == []
    assert m.state is State.READY and m.pid == 1
    assert m.degraded
    assert m.reason == "libvirt qemu:///system: connection refused"
    assert m.snapshot().degraded
    assert m.handle(GateChanged(True, "libvirt ok"), 2) == []
    assert not m.degraded
    assert m.reason == ""


def test_exit_while_gate_closed_pauses_without_spending_budget():
    m = make()
    ready(m, pid=1)
    m.handle(GateChanged(False, "libvirt gone"), 1)
    # libvirtd went away and the agent died with it: wait for the host, count nothing.
    assert m.handle(Exited(1, returncode=1), 2) == []
    assert m.state is State.WAITING
    assert m.failures == 0
    assert m.reason == "libvirt gone"
    assert m.handle(GateChanged(True), 500) == [Spawn()]
    m.handle(Spawned(2), 500)
    assert timer(m.handle(Exited(2, returncode=1), 501), "restart").delay == 1.0


def test_gate_closed_at_restart_time_waits_and_does_not_recount():
    m = make()
    running(m, pid=1)
    t = timer(m.handle(Exited(1, returncode=1), 0), "restart")
    assert m.failures == 1
    m.handle(GateChanged(False, "ovsdb down"), 0.5)
    assert m.state is State.BACKOFF
    # Many restart periods pass with the gate shut: no spawns, no failures.
    assert m.handle(TimerFired(t.token), 1) == []
    assert m.state is State.WAITING
    assert m.reason == "ovsdb down"
    for now in range(2, 50):
        assert m.handle(DepsChanged(True), now) == []
    assert m.failures == 1
    assert m.handle(GateChanged(True), 50) == [Spawn()]
    m.handle(Spawned(2), 50)
    # Second failure in a row: the curve continues where it was, not reset, not skipped.
    assert timer(m.handle(Exited(2, returncode=1), 51), "restart").delay == 2.0


def test_stop_while_waiting():
    m = make()
    m.handle(GateChanged(False, "x"), 0)
    assert m.handle(StopRequested(), 1) == []
    assert m.state is State.STOPPED
    assert m.since == 1


def test_unknown_event_is_a_type_error():
    with pytest.raises(TypeError, match="agent agent: not a lifecycle event"):
        make().handle(object(), 0)  # type: ignore[arg-type]


# -- invariants under random event sequences -------------------------------------------------
def test_random_event_sequences_keep_invariants():
    """A faithful fake loop plus random stale noise: the machine never acts on a dead pid,
    never double-spawns, and only cancels timers it armed."""
    rng = random.Random(1234)
    m = make(ready_kind="alive", alive_seconds=1.0,
             policy=RestartPolicy(restart_sec=0.5, restart_max_delay=8, jitter=0.1,
                                  flap_max=3, flap_window=20))
    armed: set[str] = set()
    fired: list[str] = []
    spawn_pending = False
    next_pid = 100
    now = 0.0
    for _ in range(5000):
        now += rng.uniform(0, 2)
        choices = [
            GateChanged(rng.random() < 0.7, "gate"), DepsChanged(rng.random() < 0.8, "deps"),
            StartRequested(), RestartRequested(), StopRequested(rng.choice([None, 0.5])),
            Exited(rng.randrange(1, 100), 1), BecameReady(rng.randrange(1, 100)),
        ]
        if fired:
            choices.append(TimerFired(rng.choice(fired)))  # stale timers
        if armed:
            choices += [TimerFired(rng.choice(sorted(armed)))] * 4
        if m.pid is not None:
            choices += [Exited(m.pid, rng.choice([0, 1, None]), None, "x")] * 2
        if spawn_pending:
            choices += [Spawned(next_pid)] * 4 + [SpawnFailed("nope")]
        event = rng.choice(choices)
        if isinstance(event, Spawned):
            next_pid += 1
        if isinstance(event, Spawned | SpawnFailed):
            spawn_pending = False
        if isinstance(event, TimerFired) and event.token in armed:
            armed.discard(event.token)
            fired.append(event.token)
        old_pid = m.pid
        actions = m.handle(event, now)
        for action in actions:
            if isinstance(action, Spawn):
                assert not spawn_pending and m.pid is None
                spawn_pending = True
            elif isinstance(action, Signal):
                assert action.pid == m.pid == (old_pid or action.pid)
                assert m.state is State.STOPPING
            elif isinstance(action, SetTimer):
                assert action.token not in armed and action.token not in fired
                assert action.delay >= 0
                armed.add(action.token)
            elif isinstance(action, CancelTimer):
                assert action.token in armed
                armed.discard(action.token)
        if m.state in (State.WAITING, State.BACKOFF, State.STOPPED, State.FAILED):
            assert m.pid is None and not spawn_pending
            assert not m.degraded
        kinds = {t.split("/")[1] for t in armed}
        assert ("restart" in kinds) == (m.state is State.BACKOFF)
        assert ("kill" in kinds) <= (m.state is State.STOPPING)
        assert ("stable" in kinds) <= (m.state is State.READY)  # it may have fired already
        assert m.ready == (m.state is State.READY)
    assert m.restarts > 10  # the sequence really exercised restarts
