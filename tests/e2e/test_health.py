"""Readiness that means serving, liveness and metrics with the real six (nova 34, neutron 29).

The shared e2e node (tests/fixtures/controlplane.py) runs the shipped catalog:
nova-compute, the DHCP and L3 agents ready on their own RPC queues, the
metadata API and proxy on a real HTTP answer, with liveness at test speed
(health_interval 5 s, health_failures 2). Everything is real: RabbitMQ,
nova-conductor, neutron's RPC server, the daemons, the prober, node_exporter.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from hvtestcloud.services import RABBIT, rabbit_env

from hvsupervisor.process.children import descendants
from tests.e2e.controlplane import NODE_HOST, scrubbed_env, utc, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PROBED = {"nova-compute", "nova-api-metadata", "neutron-dhcp-agent", "neutron-l3-agent",
          "neutron-metadata-agent"}
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def _supervised(node) -> None:
    if node.supervisor is None:
        pytest.skip("HVSUP_E2E_DIRECT=1: no supervisor")


def _status(node) -> dict:
    from hvsupervisor.control.client import call

    return call(node.control_socket, {"cmd": "status"})


def _all_ready(node, timeout: float = 180) -> dict:
    return wait_until(lambda: (lambda st: st if st["ready"] else None)(_status(node)),
                      timeout, "READY (every agent ready)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scrape(upstream_node):
    """node_exporter's textfile collector over the node's metrics dir; returns a scraper."""
    if not Path(NODE_EXPORTER).exists():
        if os.environ.get("HVSUP_NO_SKIP") == "1":
            pytest.fail("prometheus-node-exporter is not installed")
        pytest.skip("prometheus-node-exporter is not installed")
    port = _free_port()
    proc = subprocess.Popen(
        [NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
         f"--collector.textfile.directory={upstream_node.root / 'metrics'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def get() -> dict[str, float]:
        out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/metrics"],
                             capture_output=True, text=True, timeout=10).stdout
        series = {}
        for line in out.splitlines():
            if line.startswith("hvsupervisor_"):
                name, _, value = line.rpartition(" ")
                series[name] = float(value)
        return series

    try:
        wait_until(lambda: get(), 20, "node_exporter serving the textfile")
        yield get
    finally:
        proc.kill()
        proc.wait(10)


def test_ready_only_when_every_agent_answers(upstream_controlplane, upstream_node, scrape):
    cp, node = upstream_controlplane, upstream_node
    _supervised(node)
    st = _all_ready(node)
    agents = {a["name"]: a for a in st["agents"]}
    for name in PROBED:
        assert agents[name]["health"]["last_outcome"] == "answered", (name, agents[name])
    assert st["control_plane"] == "reachable"
    out = (node.root / "hvsupervisor.out").read_text()
    assert "event=ready degraded=False" in out
    # nova-compute answers on compute.<host> only after its service record exists
    # (nova's Service.start): so once ready, nova sees it up.
    assert cp.compute_service_up(NODE_HOST, node.started["nova-compute"])
    assert agents["nova-compute"]["ready_rule"] == "rpc:nova/compute@6.0"
    # The probes are quiet in the agents' own logs: no ERROR about our method.
    for name in ("nova-compute", "neutron-dhcp-agent", "neutron-l3-agent",
                 "neutron-metadata-agent"):
        log = (node.log_dir / f"{name}.log").read_text(errors="replace")
        bad = [ln for ln in log.splitlines()
               if "hvsupervisor_probe" in ln and " ERROR " in ln]
        assert not bad, (name, bad[:2])
    # The textfile follows within a second of a change.
    series = wait_until(lambda: (lambda s: s if s.get("hvsupervisor_ready") == 1.0 else None)(
        scrape()), 10, "the scrape shows the node ready")
    for name in agents:
        assert series[f'hvsupervisor_agent_ready{{agent="{name}"}}'] == 1.0, name
    assert series["hvsupervisor_control_plane_reachable"] == 1.0
    assert series["hvsupervisor_ready"] == 1.0


def _agent_session(pid: int) -> list[int]:
    return [pid] + [p for p in descendants(pid) if os.getsid(p) == pid]


def test_stopped_dhcp_agent_is_restarted_and_neutron_sees_it_alive(
        upstream_controlplane, upstream_node, scrape):
    cp, node = upstream_controlplane, upstream_node
    _supervised(node)
    before = {a["name"]: a for a in _all_ready(node)["agents"]}["neutron-dhcp-agent"]
    # Mute but alive: the master and its cotyledon worker (which serves the RPC).
    stopped = _agent_session(before["pid"])
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    t0 = time.time()

    def restarted():
        a = {a["name"]: a for a in _status(node)["agents"]}["neutron-dhcp-agent"]
        return a if a["pid"] not in (None, before["pid"]) and a["ready"] else None

    after = wait_until(restarted, 180, "neutron-dhcp-agent restarted and ready")
    assert after["restarts"] == before["restarts"] + 1
    assert "hung" in after["last_exit"]
    for pid in stopped:
        assert not Path(f"/proc/{pid}").exists(), f"stopped pid {pid} survived"
    out = (node.root / "hvsupervisor.out").read_text()
    assert re.search(rf"event=hung agent=neutron-dhcp-agent pid={before['pid']}\b", out)

    def alive_again():
        for agent in cp.neutron_agents():
            if agent["agent_type"] == "DHCP agent" and agent["host"] == NODE_HOST \
                    and agent["alive"] and utc(agent["heartbeat_timestamp"]) > t0:
                return agent
        return None

    wait_until(alive_again, 120, "neutron sees the DHCP agent alive again")
    series = wait_until(lambda: (lambda s: s if s.get(
        'hvsupervisor_agent_restarts_total{agent="neutron-dhcp-agent"}', 0) >= 1 else None)(
        scrape()), 10, "the scrape shows the restart")
    assert series['hvsupervisor_agent_last_exit_code{agent="neutron-dhcp-agent"}'] == 137


def test_rabbit_outage_degrades_without_restarts_and_recovers(
        upstream_controlplane, upstream_node, scrape):
    cp, node = upstream_controlplane, upstream_node
    _supervised(node)
    before = {a["name"]: a for a in _all_ready(node)["agents"]}
    rabbit = next(p for p in cp.procs if p.name == "rabbitmq")
    rabbit.stop(timeout=20)
    cp.procs.remove(rabbit)
    try:
        wait_until(lambda: _status(node)["control_plane"] == "unreachable", 60,
                   "control plane unreachable")
        wait_until(lambda: _status(node)["status"].startswith(
            "degraded: control plane unreachable"), 20, "degraded status")
        assert _status(node)["ready"]  # READY stays
        # Long enough for health_failures x health_interval twice over.
        end = time.monotonic() + 25
        wait_until(lambda: time.monotonic() > end, 30, "probes during the outage", 1)
        during = {a["name"]: a for a in _status(node)["agents"]}
        for name, a in during.items():
            assert a["pid"] == before[name]["pid"], f"{name} restarted during the outage"
            assert a["restarts"] == before[name]["restarts"], name
        series = scrape()
        assert series["hvsupervisor_control_plane_reachable"] == 0.0
    finally:
        env = scrubbed_env() | rabbit_env(cp.root / "rabbit", cp.rabbit_port)
        new = cp.ns.spawn("rabbitmq", [str(RABBIT)], cp.root / "rabbit" / "rabbit2.out",
                          env, cwd=cp.root / "rabbit")
        new.stop_signal = signal.SIGKILL
        cp.procs.append(new)
        wait_until(lambda: cp.ns.tcp_open(cp.rabbit_port), 90, "RabbitMQ back")
    wait_until(lambda: _status(node)["control_plane"] == "reachable", 90, "reachable again")

    def all_ok():
        st = _status(node)
        healths = [a["health"]["state"] for a in st["agents"] if a["name"] in PROBED]
        return st if all(h == "ok" for h in healths) else None

    st = wait_until(all_ok, 180, "every probed agent ok again")
    assert not st["status"].startswith("degraded")
    for a in st["agents"]:
        assert a["restarts"] == before[a["name"]]["restarts"], a["name"]
    wait_until(lambda: scrape().get("hvsupervisor_control_plane_reachable") == 1.0, 30,
               "the scrape shows the control plane back")
