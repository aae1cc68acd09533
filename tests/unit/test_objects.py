"""The one status object: every output renders the same fields from it."""

from hvsupervisor.cmd.render import status_table
from hvsupervisor.core.agent_status import AgentStatus, NodeStatus
from hvsupervisor.core.status_line import summary_line

FAILED = AgentStatus("neutron-l3-agent", "failed", False, reason="exit 1; gave up",
                     last_exit="exit 1 (ImportError)", restarts=5, digest="d" * 64,
                     argv=("neutron-l3-agent", "--config-file", "/etc/l3.ini"))
READY = AgentStatus("nova-compute", "ready", True, pid=42, degraded=True,
                    reason="libvirtd not reachable")


def _node() -> NodeStatus:
    agents = (READY, FAILED)
    return NodeStatus(ready=False, status=summary_line(agents), agents=agents)


def test_json_round_trip_keeps_every_field():
    node = _node()
    data = node.to_primitive()
    assert data["version"] == NodeStatus.VERSION
    assert data["status"].startswith("1/2 ready; neutron-l3-agent failed: exit 1; gave up")
    assert data["agents"][1]["reason"] == "exit 1; gave up"
    assert data["agents"][1]["argv"] == ["neutron-l3-agent", "--config-file", "/etc/l3.ini"]
    assert NodeStatus.from_primitive(data) == node


def test_a_newer_senders_extra_fields_are_ignored():
    data = _node().to_primitive()
    data["agents"][0]["cgroup"] = "/system.slice/x"
    data["metrics_port"] = 9100
    assert NodeStatus.from_primitive(data) == _node()


def test_table_shows_what_the_json_has():
    lines = status_table(_node()).splitlines()
    assert lines[0] == _node().status
    row = {line.split()[0]: line for line in lines[3:]}
    assert "ready (degraded)" in row["nova-compute"]
    assert "libvirtd not reachable" in row["nova-compute"]
    assert "exit 1 (ImportError)" in row["neutron-l3-agent"]
    assert "exit 1; gave up" in row["neutron-l3-agent"]
