"""The drained-line rule (core/stop_drain.py): scanner, lifecycle, config, shipped pattern.

The nova lines below are nova 34's own, as written to its log by the
libvirt-driver nova-compute of benchmarks/libvirt_compute_stop.py and
tests/e2e/test_libvirt_compute.py (doc/upstream-behaviour.md section 18);
the busy ones follow nova/manager.py ``_wait_for_in_progress_tasks`` and
``_record_task_start``/``_record_task_end``.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import pytest

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.settings import load_settings
from hvsupervisor.core.lifecycle import (
    Drained,
    Exited,
    RestartRequested,
    Signal,
    State,
    StopRequested,
    TimerFired,
    WatchDrain,
)
from hvsupervisor.core.stop_drain import MAX_PARTIAL, DrainRule, DrainScanner
from hvsupervisor.supervisor.drain_watch import LogFollower
from tests.unit.test_lifecycle import make, ready, timer

RULE = DrainRule(r"Graceful shutdown: (no in-progress tasks|all finished)\.", signal.SIGINT)
ETC = Path(__file__).resolve().parents[2] / "etc"

P = "2026-12-07 06:16:24.192 7726 INFO "
IDLE = P + "nova.manager [-] Graceful shutdown: no in-progress tasks."
FINISHED = (P + "nova.manager [-] Graceful shutdown: all in-progress tasks finished. "
            "completed tasks: 1, failed tasks: 0")
BUSY = [
    P + "nova.compute.manager [-] Compute manager waiting up to 140 seconds for in-progress "
        "tasks to complete (20 seconds reserved for cleanup_host).",
    P + "nova.manager [-] Graceful shutdown initiated with 1 in-progress tasks: "
        "set_host_enabled(instance=None, request_id=req-1, elapsed=0.5)",
    P + "nova.manager [-] Graceful shutdown still waiting for 1 in progress tasks: "
        "set_host_enabled(instance=None, request_id=req-1, elapsed=10.5)",
    P + "nova.manager [-] Graceful shutdown: task completed: set_host_enabled (instance: "
        "None, request_id: req-1, elapsed: 12.0, remaining in-progress tasks: 0)",
    P + "nova.manager [-] Graceful shutdown timed out with 1 tasks still in progress: "
        "build_instance(instance=u, request_id=r, elapsed=140.0) (completed tasks: "
        "0, failed tasks: 0)",
    P + "nova.manager [-] Graceful shutdown: new task started after shutdown initiated: "
        "live_migration (instance: u, request_id: r, start_time: 1.0)",
    P + "nova.thread_pool_factory [-] The thread pool MainProcess.default is shutting down",
]


# -- the scanner ----------------------------------------------------------------------
def test_fires_once_on_the_first_complete_matching_line():
    s = DrainScanner(RULE)
    assert not s.feed(b"2026 INFO Graceful shutdown start\n")
    assert not s.feed(b"x Graceful shutdown: no in-pro")  # not a line yet
    assert s.feed(b"gress tasks.\nmore\n")
    assert not s.feed(b"Graceful shutdown: all finished.\n")  # once per stop


def test_a_line_split_inside_a_utf8_character_still_matches():
    s = DrainScanner(DrainRule("caf\u00e9 Graceful shutdown: all finished", signal.SIGINT))
    text = "caf\u00e9 Graceful shutdown: all finished.\n".encode()
    cut = text.index(b"\xa9")  # between the two bytes of the e-acute
    assert not s.feed(text[:cut])
    assert s.feed(text[cut:])


def test_a_partial_line_is_dropped_on_truncation_and_capped():
    s = DrainScanner(RULE)
    s.feed(b"Graceful shutdown: no in-progress")
    s.restart()  # the file was truncated: the rest of that line is gone
    assert not s.feed(b" tasks.\n")
    s.feed(b"x" * (MAX_PARTIAL * 3))
    assert len(s._partial) == MAX_PARTIAL


# -- the lifecycle ----------------------------------------------------------------------
def test_stop_watches_the_log_before_the_stop_signal():
    m = make(drain=RULE)
    ready(m, pid=100)
    actions = m.handle(StopRequested(), 1.0)
    kinds = [type(a).__name__ for a in actions]
    assert kinds.index("WatchDrain") < kinds.index("Signal")
    assert WatchDrain(100, RULE) in actions and Signal(100, signal.SIGTERM) in actions


def test_drained_escalates_once_and_keeps_the_kill_timer():
    m = make(drain=RULE)
    ready(m, pid=100)
    kill = timer(m.handle(StopRequested(), 1.0), "kill")
    assert m.handle(Drained(100), 2.0) == [Signal(100, signal.SIGINT)]
    assert m.handle(Drained(100), 2.1) == []
    # The SIGINT may not be enough: SIGKILL after stop_timeout still follows.
    assert m.handle(TimerFired(kill.token), 11.0) == [Signal(100, signal.SIGKILL)]
    m.handle(Exited(100, -9, None), 11.1)
    assert m.state is State.STOPPED


def test_drained_means_nothing_outside_a_stop_or_for_another_pid():
    m = make(drain=RULE)
    ready(m, pid=100)
    assert m.handle(Drained(100), 1.0) == []  # a ready agent that logged such a line
    m.handle(StopRequested(), 2.0)
    assert m.handle(Drained(99), 2.5) == []  # an older process's watch


def test_a_restart_watches_again_for_the_next_process():
    m = make(drain=RULE)
    ready(m, pid=100)
    m.handle(RestartRequested(), 1.0)
    assert m.handle(Drained(100), 1.5) == [Signal(100, signal.SIGINT)]
    m.handle(Exited(100, 1, None), 1.6)  # respawned at once
    ready(m, pid=200, now=2.0)
    actions = m.handle(StopRequested(), 3.0)
    assert WatchDrain(200, RULE) in actions
    assert m.handle(Drained(200), 3.5) == [Signal(200, signal.SIGINT)]


def test_without_a_rule_nothing_is_watched():
    m = make()
    ready(m, pid=100)
    actions = m.handle(StopRequested(), 1.0)
    assert not any(isinstance(a, WatchDrain) for a in actions)
    assert m.handle(Drained(100), 2.0) == []


# -- config ---------------------------------------------------------------------------
def test_a_bad_pattern_names_its_file_and_line(layout):
    p = layout.write("override", "hvsupervisor.conf.d/90-bad.conf",
                     "[agent:alpha]\nstop_drained = Graceful (shutdown\n")
    with pytest.raises(ConfigError) as err:
        layout.settings()
    assert err.value.path == str(p) and err.value.line == 2
    assert "[agent:alpha] stop_drained: invalid value" in str(err.value)


def test_the_rule_reaches_the_plan(layout):
    from hvsupervisor.host.facts import plan_for

    layout.write("override", "hvsupervisor.conf.d/50-drain.conf",
                 "[agent:alpha]\nstop_drained = drained\\.\nstop_drained_signal = SIGINT\n")
    settings = layout.settings()
    assert plan_for(settings, settings.agents["alpha"]).stop_drain == \
        DrainRule(r"drained\.", signal.SIGINT)
    assert plan_for(settings, settings.agents["beta"]).stop_drain is None  # default: off


@pytest.mark.usefixtures("shipped_accounts")
def test_the_shipped_nova_rule_tells_drained_from_busy(tmp_path):
    s = load_settings(ETC, tmp_path / "o", str(tmp_path / "s"), str(tmp_path / "l"),
                      str(tmp_path / "r"))
    spec = s.agents["nova-compute"]
    assert spec.stop_drained_signal == signal.SIGINT  # nova's _fast_exit: os._exit(1)
    regex = re.compile(spec.stop_drained)
    assert regex.search(IDLE) and regex.search(FINISHED)
    assert not [line for line in BUSY if regex.search(line)]
    # Only nova-compute has the rule: the other daemons' stops end by themselves.
    assert [n for n, a in s.agents.items() if a.stop_drained] == ["nova-compute"]


# -- following the file (inotify, a real file) -------------------------------------------
class _Recording(DrainScanner):
    """A scanner that says each time it was fed (the test waits on that, not on time)."""

    def __init__(self, rule: DrainRule) -> None:
        super().__init__(rule)
        self.fed = asyncio.Event()

    def feed(self, chunk: bytes) -> bool:
        self.fed.set()
        return super().feed(chunk)


def test_the_follower_sees_only_lines_written_after_it_started(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text(IDLE + "\n")  # from before the stop: must not count

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hit = asyncio.Event()
        scanner = _Recording(RULE)
        follower = LogFollower(loop, log, scanner, hit.set)
        follower.start()
        try:
            with open(log, "a") as f:
                f.write(BUSY[1] + "\n")
            await asyncio.wait_for(scanner.fed.wait(), 10)
            assert not hit.is_set()  # the old drained line was before the start
            with open(log, "a") as f:
                f.write(FINISHED.replace("all in-progress tasks", "all") + "\n")
            await asyncio.wait_for(hit.wait(), 10)
        finally:
            follower.close()

    asyncio.run(scenario())


def test_the_follower_restarts_after_truncation(tmp_path):
    log = tmp_path / "agent.log"
    log.write_text("old line\n" * 100)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        hit = asyncio.Event()
        follower = LogFollower(loop, log, DrainScanner(RULE), hit.set)
        follower.start()
        try:
            log.write_text(IDLE + "\n")  # copytruncate, then the line
            await asyncio.wait_for(hit.wait(), 10)
        finally:
            follower.close()

    asyncio.run(scenario())
