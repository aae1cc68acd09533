"""Stop budgets: per agent from its own config, per chain, and the unit's check."""

import signal

from hvsupervisor.core import stopbudget
from hvsupervisor.core.lifecycle import Signal, StopRequested
from hvsupervisor.host.facts import plan_for
from tests.unit.test_lifecycle import make, ready


def _files(*assignments):
    return [(path, {"DEFAULT": {"graceful_shutdown_timeout": [(value, line)]}})
            for path, value, line in assignments]


def test_last_file_wins_and_env_beats_files():
    files = _files(("nova.conf", "60", 3), ("nova.conf.d/99-local.conf", "170", 2))
    assert stopbudget.graceful_timeout(files, {}) == (170.0, "nova.conf.d/99-local.conf:2")
    env = {"OS_DEFAULT__GRACEFUL_SHUTDOWN_TIMEOUT": "30"}
    assert stopbudget.graceful_timeout(files, env)[0] == 30.0
    assert stopbudget.graceful_timeout([("x.conf", {"DEFAULT": {}})], {}) is None


def test_budget_explicit_beats_graceful_and_default_is_oslos():
    assert stopbudget.agent_budget(12.0, 10.0, (170.0, "f:2")).seconds == 12.0
    b = stopbudget.agent_budget(None, 10.0, (170.0, "f:2"))
    assert b.seconds == 180.0 and "170 (f:2) + margin 10" in b.source
    assert stopbudget.agent_budget(None, 10.0, None).seconds == 70.0


def test_longest_chain_follows_reverse_dependencies():
    after = {"ovs": [], "dhcp": ["ovs"], "nova": ["ovs"], "meta-api": [], "meta": ["meta-api"]}
    budgets = {"ovs": 5.0, "dhcp": 20.0, "nova": 70.0, "meta-api": 15.0, "meta": 10.0}
    chain = stopbudget.longest_chain(after, budgets)
    assert chain.agents == ("nova", "ovs") and chain.seconds == 75.0


def test_unit_timeout_problem_shows_the_arithmetic():
    budgets = {"ovs": 5.0, "nova": 180.0}
    chain = stopbudget.longest_chain({"nova": ["ovs"], "ovs": []}, budgets)
    msg = stopbudget.unit_timeout_problem(120.0, chain, budgets, 10.0, "drop-in x.conf")
    assert msg is not None
    assert "TimeoutStopSec=120s (drop-in x.conf)" in msg
    assert "180 (nova) + 5 (ovs) + 10 (data-plane helpers) + 5 (supervisor exit) = 200s" in msg
    assert stopbudget.unit_timeout_problem(200.0, chain, budgets, 10.0, "x") is None
    assert stopbudget.unit_timeout_problem(0, chain, budgets, 10.0, "x") is None  # infinity


def test_plan_budget_follows_the_agents_snippet(layout):
    """A nova snippet raising graceful_shutdown_timeout raises the agent's stop budget."""
    layout.write("defaults", "svc/svc.conf.d/99-slow.conf",
                 "[DEFAULT]\ngraceful_shutdown_timeout = 170\n")
    settings = layout.settings()
    plan = plan_for(settings, settings.agents["alpha"])
    assert plan.stop_timeout == 180.0
    assert "99-slow.conf:2" in plan.stop_source


def test_lifecycle_sends_the_agents_stop_signal():
    m = make(stop_signal=signal.SIGINT)
    ready(m, pid=100)
    assert Signal(100, signal.SIGINT) in m.handle(StopRequested(), 1.0)


def test_check_fails_with_the_arithmetic_when_a_dropin_is_too_short(layout, tmp_path):
    """`hvsupervisor check`'s row, against an installed unit and a site drop-in."""
    from pathlib import Path

    from hvsupervisor.cmd.check import stop_budget_row
    from hvsupervisor.host.facts import plans_for

    root = tmp_path / "root"
    lib = root / "lib/systemd/system"
    lib.mkdir(parents=True)
    shipped = Path(__file__).resolve().parents[2] / "units" / "hvsupervisor.service"
    (lib / "hvsupervisor.service").write_text(shipped.read_text())
    layout.write("defaults", "svc/svc.conf.d/99-slow.conf",
                 "[DEFAULT]\ngraceful_shutdown_timeout = 100\n")
    settings = layout.settings()
    plans = plans_for(settings)
    row = stop_budget_row(settings, plans, root)
    assert row.status == "ok", row.detail
    dropin = root / "etc/systemd/system/hvsupervisor.service.d/50-short.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nTimeoutStopSec=2min\n")
    row = stop_budget_row(settings, plans, root)
    assert row.status == "fail"
    # beta is after alpha: alpha stops once beta has exited; both read 99-slow.conf.
    assert row.detail.startswith(f"TimeoutStopSec=120s ({dropin}:2) is shorter than the "
                                 "longest stop chain: 110 (beta) + 110 (alpha) + 5 (supervisor "
                                 "exit) = 225s")
