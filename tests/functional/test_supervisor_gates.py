"""Host gates inside a real `hvsupervisor run`, and `hvsupervisor check`, on real daemons.

ovsdb-server and libvirtd are the real Debian daemons, started privately by
the fixtures in tests/fixtures/ovs.py and tests/fixtures/libvirt.py.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hvsupervisor.host.ovsdb import bridge_ready
from tests.fixtures.ovs import unique_bridge
from tests.fixtures.supervisor import json_out, standin
from tests.util import wait_until

pytestmark = pytest.mark.functional


def _ovs_agent(node, ovs, bridges=(), ready="alive:0.1"):
    node.agent("ovs-agent", standin(), ready=ready, host_gates="ovsdb")
    mappings = ",".join(f"phys{i}:{b}" for i, b in enumerate(bridges))
    node.snippet("svc/common.conf.d/10-ovs.conf", f"""\
        [ovs]
        ovsdb_connection = {ovs.remote}
        bridge_mappings = {mappings}
        datapath_type = netdev
        """, layer="defaults")


def test_agent_waits_for_ovsdb_then_starts_within_a_second(node, ovs_server):
    ovs_server.stop()
    _ovs_agent(node, ovs_server)
    node.start(wait_ready=False)
    waiting = node.wait_agent("ovs-agent", lambda a: a["state"] == "waiting")
    assert waiting["pid"] is None
    wait_until(lambda: any(f"ovs-agent waiting: ovsdb {ovs_server.remote}" in s
                           for s in node.status_messages()), 10, "waiting STATUS=")
    ovs_server.start(init=False)
    t0 = time.monotonic()
    node.wait_agent("ovs-agent", lambda a: a["pid"] is not None, timeout=5)
    took = time.monotonic() - t0
    print(f"ovsdb back -> agent spawned: {took:.3f} s")
    assert took < 1.0
    node.wait_ready_message()


def test_missing_bridge_named_and_ensure_bridges_creates_it(node, ovs_switch):
    br = unique_bridge()
    _ovs_agent(node, ovs_switch, bridges=[br])
    node.start(wait_ready=False)
    wait_until(lambda: any(f"missing bridge {br}" in s for s in node.status_messages()), 10,
               "missing-bridge STATUS=")
    assert node.agent_status("ovs-agent")["pid"] is None
    # Turn ensure_bridges on and reload: the gate is rebuilt and creates it.
    node.snippet("hvsupervisor.conf.d/10-ensure.conf", "[supervisor]\nensure_bridges = true\n")
    assert node.hv("reload").returncode == 0
    wait_until(lambda: br in ovs_switch.list_br(), 10, f"bridge {br} in ovsdb")
    node.wait_agent("ovs-agent", lambda a: a["ready"])


def test_libvirt_gone_degrades_without_restart_and_clears(node, libvirtd):
    node.agent("compute", standin(), ready="alive:0.1", host_gates="libvirt")
    node.snippet("svc/compute.ini", f"[libvirt]\nconnection_uri = {libvirtd.uri}\n",
                 layer="defaults")
    node.start()
    pid = node.agent_status("compute")["pid"]
    libvirtd.stop()
    degraded = node.wait_agent("compute", lambda a: a.get("degraded"), timeout=10)
    assert degraded["pid"] == pid and degraded["restarts"] == 0
    libvirtd.start()
    cleared = node.wait_agent("compute", lambda a: not a.get("degraded"), timeout=30)
    assert cleared["pid"] == pid and cleared["restarts"] == 0


def _check(node, *extra):
    node.write_catalog()
    cp = node.hv("check", "--format", "json", *extra, timeout=120)
    return cp.returncode, json.loads(cp.stdout)


def _row(data, name):
    return next(r for r in data["checks"] if r["name"] == name)


def test_check_fails_with_a_precise_row_per_fault(node, ovs_server, libvirtd):
    br = unique_bridge()
    _ovs_agent(node, ovs_server, bridges=[br])
    node.agent("compute", standin(), ready="alive:0.1", host_gates="libvirt")
    node.snippet("svc/compute.ini", f"[libvirt]\nconnection_uri = {libvirtd.uri}\n",
                 layer="defaults")
    node.snippet("svc/common.conf.d/README.txt", "oslo ignores me\n")
    rc, data = _check(node)
    assert rc == 1 and data["ok"] is False
    assert _row(data, "config")["status"] == "ok"
    assert _row(data, "libvirt")["status"] == "ok"
    assert "QEMU" in _row(data, "libvirt")["detail"]
    assert _row(data, "ovsdb")["status"] == "ok"
    bridges = _row(data, "bridges")
    assert bridges["status"] == "fail" and br in bridges["detail"]
    assert any(r["status"] == "warn" and "README.txt" in r["detail"] for r in data["checks"])
    # Each fault in turn: ovsdb down, libvirtd down, a config error.
    ovs_server.stop()
    rc, data = _check(node)
    assert _row(data, "ovsdb")["status"] == "fail"
    assert ovs_server.remote in _row(data, "ovsdb")["detail"]
    libvirtd.stop()
    rc, data = _check(node)
    assert _row(data, "libvirt")["status"] == "fail"
    bad = node.snippet("hvsupervisor.conf.d/50-bad.conf", "[agent:compute]\nready = sometimes\n")
    rc, data = _check(node)
    assert rc == 1
    assert _row(data, "config")["status"] == "fail"
    assert _row(data, "config")["detail"].startswith(f"{bad}:2:")


def test_table_form(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.write_catalog()
    cp = node.hv("check")
    assert cp.stdout.startswith("check ") and "config" in cp.stdout
    json_out(node.hv("config", "validate", "--format", "json"))


def test_ovsdb_bridge_readiness_waits_for_bridge_and_controller(node, ovs_switch,
                                                                openflow_controller):
    br = unique_bridge()
    _ovs_agent(node, ovs_switch, ready=f"ovsdb-bridge:{br}")
    node.start(wait_ready=False)
    agent = node.wait_agent("ovs-agent", lambda a: a["state"] == "starting")
    assert not agent["ready"]
    # The bridge alone (as ensure_bridges or an operator makes it, before the
    # agent ran) is not ready: the real agent always sets its own controller.
    ovs_switch.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    ok, why = asyncio.run(bridge_ready(ovs_switch.remote, br))  # what the probe reads
    assert not ok and "no OpenFlow controller" in why, why
    assert not node.agent_status("ovs-agent")["ready"]
    # The "agent" sets its controller and vswitchd connects to it: ready.
    ovs_switch.vsctl("set-controller", br, openflow_controller.target)
    node.wait_agent("ovs-agent", lambda a: a["ready"], timeout=10)
    node.wait_ready_message()
    # A controller nobody serves: after a restart the agent is not ready, because
    # vswitchd reports the controller not connected (a leftover bridge is not enough).
    ovs_switch.vsctl("set-controller", br, "tcp:127.0.0.1:9")
    wait_until(lambda: "false" in ovs_switch.vsctl("--columns=is_connected", "list",
                                                   "controller"), 10, "controller row")
    old = node.agent_status("ovs-agent")["pid"]
    assert node.hv("restart", "ovs-agent").returncode == 0
    agent = node.wait_agent("ovs-agent", lambda a: a["pid"] not in (None, old))
    assert agent["state"] == "starting" and not agent["ready"]
    ovs_switch.vsctl("set-controller", br, openflow_controller.target)
    node.wait_agent("ovs-agent", lambda a: a["ready"], timeout=10)
