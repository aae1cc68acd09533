"""The node's guest count and nova's "disabled" in the status object, the table, the metrics."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest

from hvsupervisor.cmd.render import status_table
from hvsupervisor.core.agent_status import NodeStatus
from hvsupervisor.health.metrics import build_registry

WHY = "nova keeps it in the cell database and placement"


def test_fields_survive_the_control_socket_and_default_for_an_older_sender():
    node = NodeStatus(ready=True, status="1/1 ready", instances=3,
                      compute_disabled="unknown", compute_disabled_reason=WHY)
    assert NodeStatus.from_primitive(node.to_primitive()) == node
    old = NodeStatus.from_primitive({"ready": True, "status": "x"})
    assert (old.instances, old.compute_disabled, old.compute_disabled_reason) == \
        (None, "unknown", "")


def test_table_shows_count_and_why_disabled_is_unknown():
    text = status_table(NodeStatus(ready=True, status="s", instances=2,
                                   compute_disabled_reason=WHY))
    assert "instances: 2 (running guests, from libvirt)\n" in text
    assert f"compute service disabled in nova: unknown ({WHY})\n" in text
    text = status_table(NodeStatus(ready=True, status="s", compute_disabled_reason=WHY))
    assert "instances: unknown" in text
    assert "instances" not in status_table(NodeStatus(ready=True, status="s"))


def test_metrics_count_minus_one_when_unknown_and_absent_without_compute():
    def scrape(node):
        return generate_latest(build_registry(node)).decode()

    text = scrape(NodeStatus(ready=True, status="s", instances=4, compute_disabled_reason=WHY))
    assert "hvsupervisor_compute_instances 4.0" in text
    assert "hvsupervisor_compute_service_disabled -1.0" in text
    text = scrape(NodeStatus(ready=True, status="s", compute_disabled_reason=WHY))
    assert "hvsupervisor_compute_instances -1.0" in text
    assert "hvsupervisor_compute_instances" not in scrape(NodeStatus(ready=True, status="s"))
    assert "hvsupervisor_compute_service_disabled 1.0" in scrape(
        NodeStatus(ready=True, status="s", instances=0, compute_disabled="yes"))
