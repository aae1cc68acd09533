"""The STATUS= line: exact strings, ASCII only, bounded length."""

from hvsupervisor.config.opts import SIX_AGENTS
from hvsupervisor.core.agent_status import AgentStatus
from hvsupervisor.core.status_line import MAX_LEN, ascii_clean, summary_line

NAMES = SIX_AGENTS


def ready(name, **kw):
    return AgentStatus(name=name, state="ready", ready=True, **kw)


def test_all_ready():
    assert summary_line([ready(n) for n in NAMES]) == "6/6 ready"


def test_no_agents():
    assert summary_line([]) == "no agents enabled"


def test_failed_agent_with_exit_and_last_line():
    snaps = [ready(n) for n in NAMES if n != "neutron-l3-agent"]
    snaps.append(
        AgentStatus(
            "neutron-l3-agent", "failed", False,
            reason="exit 1 (ImportError: no module named foo); gave up after 5 failures in 60s",
            last_exit="exit 1 (ImportError: no module named foo)",
        )
    )
    assert summary_line(snaps) == (
        "5/6 ready; neutron-l3-agent failed: exit 1 (ImportError: no module named foo); "
        "gave up after 5 failures in 60s"
    )


def test_waiting_and_degraded_are_named_failed_first():
    snaps = [
        AgentStatus("nova-compute", "waiting", False,
                      reason="libvirt qemu:///system: connection refused"),
        ready("neutron-openvswitch-agent", degraded=True, reason="ovsdb: socket gone"),
        AgentStatus("neutron-dhcp-agent", "failed", False, reason="signal 9 (SIGKILL)"),
        ready("nova-api-metadata"),
    ]
    assert summary_line(snaps) == (
        "2/4 ready; neutron-dhcp-agent failed: signal 9 (SIGKILL); "
        "nova-compute waiting: libvirt qemu:///system: connection refused; "
        "neutron-openvswitch-agent degraded: ovsdb: socket gone"
    )


def test_starting_has_no_detail():
    snaps = [AgentStatus("nova-compute", "starting", False), ready("x")]
    assert summary_line(snaps) == "1/2 ready; nova-compute starting"


def test_failed_without_reason_falls_back_to_last_exit():
    snap = AgentStatus("a", "failed", False, last_exit="exit 3")
    assert summary_line([snap]) == "0/1 ready; a failed: exit 3"


def test_non_ascii_and_newlines_are_cleaned():
    snap = AgentStatus("a", "failed", False, reason="exit 1 (caf\u00e9 \u2013 bad\nnext\tline)")
    line = summary_line([snap])
    assert line == "0/1 ready; a failed: exit 1 (caf? ? bad next line)"
    line.encode("ascii")
    assert ascii_clean("\x00x\x1b[0m") == "?x?[0m"


def test_long_line_is_bounded_and_says_how_many_more():
    snaps = [
        AgentStatus(f"agent-{i}", "failed", False, reason="exit 1 (" + "x" * 300 + ")")
        for i in range(6)
    ]
    line = summary_line(snaps)
    assert len(line) <= MAX_LEN
    assert line.startswith("0/6 ready; agent-0 failed: exit 1 (xxx")
    assert line.endswith(" more")
    assert "\n" not in line


def test_many_short_problems_fit_or_are_counted():
    snaps = [AgentStatus(f"some-long-agent-name-{i}", "waiting", False, reason="waiting for x")
             for i in range(20)]
    line = summary_line(snaps)
    assert len(line) <= MAX_LEN
    shown = line.count(" waiting: ")
    assert line.endswith(f"; +{20 - shown} more")
