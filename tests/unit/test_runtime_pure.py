"""Issue 10 sections 3, 7, 8, the pure parts: probe failure and policy changes in the
lifecycle, control-socket request validation, the agent record's identity rule."""

import dataclasses
import json
import os
import random
import signal

import pytest

from hvsupervisor.control.server import BadRequest, parse_request
from hvsupervisor.core.lifecycle import (
    AgentLifecycle,
    BecameReady,
    CancelTimer,
    DepsChanged,
    Exited,
    GateChanged,
    ProbeFailed,
    RestartRequested,
    SetTimer,
    Signal,
    Spawn,
    Spawned,
    State,
    TimerFired,
)
from hvsupervisor.core.restart_policy import RestartPolicy
from hvsupervisor.process.records import AgentRecord, Entry, is_same_process, proc_starttime

POLICY = RestartPolicy(restart_sec=1.0, restart_max_delay=16.0, restart_steps=4, jitter=0.0,
                       stable_period=30.0, flap_max=4, flap_window=60.0)


def starting(pid=100):
    m = AgentLifecycle("a", POLICY, 10.0, "probe", None, random.Random(0))
    m.handle(GateChanged(True), 0)
    assert m.handle(DepsChanged(True), 0) == [Spawn()]
    m.handle(Spawned(pid), 0)
    return m


def test_probe_failure_stops_the_agent_and_marks_it_failed_with_the_error():
    m = starting()
    actions = m.handle(ProbeFailed(100, "UnicodeError: label too long"), 1)
    assert Signal(100, signal.SIGTERM) in actions and m.state is State.STOPPING
    assert [a for a in m.handle(Exited(100, None, signal.SIGTERM), 2)
            if not isinstance(a, CancelTimer)] == []
    assert m.state is State.FAILED
    assert m.reason == "readiness probe error: UnicodeError: label too long"
    # An operator restart revives it, with a clean slate.
    assert m.handle(RestartRequested(), 3) == [Spawn()]
    m.handle(Spawned(101), 3)
    m.handle(BecameReady(101), 4)
    assert m.state is State.READY and m.reason == ""


def test_probe_failure_of_an_old_pid_or_a_ready_agent_is_ignored():
    m = starting()
    assert m.handle(ProbeFailed(99, "stale"), 1) == []
    m.handle(BecameReady(100), 1)
    assert m.handle(ProbeFailed(100, "late"), 2) == [] and m.state is State.READY


def test_set_policy_applies_flap_limit_from_the_next_failure():
    m = starting()
    actions = m.handle(Exited(100, 1), 1)  # failure 1; flap_max 4: backoff
    assert m.state is State.BACKOFF
    m.set_policy(dataclasses.replace(POLICY, flap_max=2))  # a reload lowers it
    token = next(a.token for a in actions if isinstance(a, SetTimer))
    assert m.handle(TimerFired(token), 3) == [Spawn()]
    m.handle(Spawned(101), 3)
    m.handle(Exited(101, 1), 4)  # failure 2 of the history kept: now flapping
    assert m.state is State.FAILED and "gave up after 2 failures" in m.reason


@pytest.mark.parametrize("line,text", [
    (b"[1]", "expected a JSON object"),
    (b'"status"', "expected a JSON object"),
    (b"{nope", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b'{"cmd": "frob"}', "unknown command"),
    (b'{"cmd": "stop", "agents": "ab"}', "agents must be a list"),
    (b'{"cmd": "stop", "agents": [1]}', "agents must be a list"),
    (b'{"cmd": "restart", "agents": ["c"]}', "unknown agent c"),
    (b'{"cmd": "restart"}', "unknown agent (none)"),
])
def test_bad_requests_are_refused_with_a_reason(line, text):
    with pytest.raises(BadRequest, match=rf".*{__import__('re').escape(text)}"):
        parse_request(line, ["a", "b"])


def test_good_requests():
    assert parse_request(b'{"cmd": "status"}', ["a"]) == {"cmd": "status"}
    assert parse_request(b'{"cmd": "stop"}', ["a", "b"])["agents"] == ["a", "b"]
    assert parse_request(b'{"cmd": "start", "agents": ["b", "b"]}', ["a", "b"])["agents"] == ["b"]


def test_record_believes_only_the_same_process(tmp_path):
    rec = AgentRecord(tmp_path / "agents")
    rec.ensure()
    me = rec.add("self", os.getpid())
    assert me.starttime == proc_starttime(os.getpid())
    assert rec.leftovers() == [me]
    # Same pid, another start time (a reused pid), or another boot: not ours.
    for other in (dataclasses.replace(me, starttime=me.starttime + 1),
                  dataclasses.replace(me, boot_id="another-boot")):
        assert not is_same_process(other)
    (tmp_path / "agents" / "999999999").write_text(json.dumps(dataclasses.asdict(
        Entry("gone", 999999999, 1, me.boot_id))))
    (tmp_path / "agents" / "12").write_text("{half")
    assert rec.leftovers() == [me]
    assert not (tmp_path / "agents" / "999999999").exists()  # dead entries are dropped
    rec.remove(os.getpid())
    assert rec.leftovers() == []


def test_leftover_agent_gets_its_own_stop_signal(tmp_path):
    """A leftover that ignores SIGTERM (as the OVS agent does) stops at once on its
    catalog stop_signal, instead of waiting out its stop_timeout for SIGKILL."""
    import subprocess
    import sys

    from hvsupervisor.process.records import stop_leftovers

    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n"
            "print('up', flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == b"up\n"  # handlers installed
        rec = AgentRecord(tmp_path / "agents")
        rec.ensure()
        entry = rec.add("ovs-agent", proc.pid)
        left = stop_leftovers([entry], lambda _name: 30.0, lambda _name: signal.SIGINT)
        assert left == []
        assert proc.wait(5) == 0  # exited by its SIGINT handler, not SIGKILLed
    finally:
        proc.kill()
        proc.wait()
