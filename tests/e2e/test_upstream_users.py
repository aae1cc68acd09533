"""The real six as their own users: nova and neutron, no capabilities, privsep brokered.

The same upstream daemons and control plane as test_upstream.py, under
``hvsupervisor run``, with the shipped catalog: nova-compute and
nova-api-metadata as ``nova``, the four neutron agents as ``neutron``
(doc/upstream-behaviour.md section 15). The users come from the shipped
sysusers file (the session fixture ``agent_users`` applies it with
``systemd-sysusers``, as a package does; they stay). What a user-run node
needs from this rig, and a package install has anyway, the session's control
plane fixture provides (tests/fixtures/controlplane.py).

The node has its own host name (a second node of the session's cloud) and a
flat network on physnet1, so that the DHCP agent starts dnsmasq and, for
isolated metadata, haproxy, both through the supervisor's broker
(doc/upstream-behaviour.md section 15).
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.controlplane import wait_until
from tests.fixtures.controlplane import REPO, make_node, spawn_supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

HOST = "e2e-users-node"
SYSUSERS = REPO / "units" / "sysusers.d" / "hvsupervisor.conf"
USERS = {"nova-compute": "nova", "nova-api-metadata": "nova",
         "neutron-openvswitch-agent": "neutron", "neutron-dhcp-agent": "neutron",
         "neutron-l3-agent": "neutron", "neutron-metadata-agent": "neutron"}
AGENT_TYPES = {"Open vSwitch agent", "DHCP agent", "L3 agent", "Metadata agent"}
# neutron's ProcessMonitor looks at its dnsmasq/haproxy every this many seconds
# (60 by default); short here, so that a respawn loop would show within the test.
CHECK_INTERVAL = 2
CIDR = "10.77.0.0/24"
PROJECT = "admin"  # no keystone: neutron wants the project named (hvtestcloud/boot.py does too)


def _exists(getter, name: str) -> bool:
    try:
        getter(name)
    except KeyError:
        return False
    return True


def _status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _ppid_chain(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        pid = int(_status(pid)["PPid"])
        chain.append(pid)
    return chain


@pytest.fixture(scope="module")
def users_node(upstream_controlplane, agent_users):
    """The six under `hvsupervisor run` as nova/neutron, in a dir the users can reach.

    The session's control plane is ready for user-run nodes
    (tests/fixtures/controlplane.py: venv and ovsdb dir searchable, nova DB
    shared with group nova); the shipped catalog runs the users.
    """
    cp = upstream_controlplane
    base = Path(tempfile.mkdtemp(prefix="hvsup-e2e-users-"))
    base.chmod(0o711)
    override = base / "override"
    conf_d = override / "hvsupervisor.conf.d"
    conf_d.mkdir(parents=True)
    # br-phys for physnet1; dnsmasq and haproxy go with the node.
    (conf_d / "70-e2e-users.conf").write_text(
        "[supervisor]\nensure_bridges = true\nstop_dataplane = true\n")
    neutron = override / "neutron" / "neutron.conf.d" / "70-users.conf"
    neutron.parent.mkdir(parents=True)
    neutron.write_text(f"[agent]\ncheck_child_processes_interval = {CHECK_INTERVAL}\n")
    node = make_node(cp, base, host=HOST, flat_network=True)
    t0 = time.monotonic()
    spawn_supervisor(cp, node)
    node.timings = {"spawn": t0}
    try:
        yield node
    finally:
        if node.supervisor is not None:
            node.supervisor.stop(timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def test_every_agent_runs_as_its_user_with_no_capabilities(users_node, agent_users):
    node = users_node
    t0 = node.timings["spawn"]
    status = node.all_ready(what="every agent ready, as its user")
    print(f"six agents ready as users: {time.monotonic() - t0:.1f}s after `run`")
    for name, user in USERS.items():
        st = _status(status[name]["pid"])
        uid = agent_users[user].pw_uid
        assert st["Uid"].split() == [str(uid)] * 4, (name, st["Uid"])
        assert st["Gid"].split()[0] == str(agent_users[user].pw_gid), (name, st["Gid"])
        assert st["CapEff"] == "0000000000000000", (name, st["CapEff"])
        assert st["CapPrm"] == "0000000000000000", (name, st["CapPrm"])
        assert st["CapBnd"] == "0000000000000000", (name, st["CapBnd"])
        assert st["NoNewPrivs"] == "1", name
    # The neutron agents reach ovsdb through group openvswitch.
    ovs_gid = grp.getgrnam("openvswitch").gr_gid
    for name in ("neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent"):
        assert str(ovs_gid) in _status(status[name]["pid"])["Groups"].split(), name


def test_nova_compute_is_up_as_nova(upstream_controlplane, users_node):
    cp, node = upstream_controlplane, users_node
    svc = wait_until(lambda: cp.compute_service_up(HOST, node.started["nova-compute"]), 180,
                     f"nova-compute of {HOST} up in nova's services")
    assert svc["disabled"] == 0


def test_four_neutron_agents_alive_as_neutron(upstream_controlplane, users_node):
    cp = upstream_controlplane

    def alive():
        agents = {a["agent_type"]: a for a in cp.neutron_agents()
                  if a["host"] == HOST and a["alive"]}
        return agents if AGENT_TYPES <= set(agents) else None

    wait_until(alive, 180, f"{sorted(AGENT_TYPES)} of {HOST} alive in GET /v2.0/agents")


def test_metadata_proxy_socket_is_neutrons(users_node, agent_users):
    node = users_node
    sock = node.state_dir / "neutron" / "metadata_proxy"
    wait_until(sock.exists, 60, f"{sock}")
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert st.st_uid == agent_users["neutron"].pw_uid


def _api_ok(what: str, status: int, body, *ok: int) -> dict:
    assert status in ok, f"{what}: HTTP {status} {body}"
    return body


def _flat_network(cp, name: str) -> dict:
    """A flat network on physnet1 (this node's br-phys), made by the test's project."""
    return _api_ok("create network", *cp.api("POST", cp.url(cp.neutron_port, "/v2.0/networks"), {
        "network": {"name": name, "project_id": PROJECT, "provider:network_type": "flat",
                    "provider:physical_network": "physnet1"}}), 201)["network"]


def test_dhcp_network_gets_dnsmasq_as_nobody_through_the_broker(upstream_controlplane,
                                                                 users_node, agent_users):
    cp, node = upstream_controlplane, users_node
    node.all_ready(what="every agent ready, as its user")
    port = cp.neutron_port
    dhcp_agent = wait_until(lambda: cp.neutron_agent(HOST, "DHCP agent"), 180,
                            "this node's DHCP agent")
    net = _flat_network(cp, "e2e-users")
    try:
        # Hosted by this node's DHCP agent (the session's first node may still
        # count as alive in neutron's eyes; one agent per network by default).
        _api_ok("add network to the DHCP agent", *cp.api(
            "POST", cp.url(port, f"/v2.0/agents/{dhcp_agent['id']}/dhcp-networks"),
            {"network_id": net["id"]}), 201, 409)
        _api_ok("create subnet", *cp.api("POST", cp.url(port, "/v2.0/subnets"), {
            "subnet": {"network_id": net["id"], "project_id": PROJECT, "ip_version": 4,
                       "cidr": CIDR,
                       "gateway_ip": None, "enable_dhcp": True}}), 201)
        _check_dataplane(cp, node, net["id"], agent_users)
    finally:
        status, body = cp.api("DELETE", cp.url(port, f"/v2.0/networks/{net['id']}"))
        # Disabling goes through the broker too (kill via privsep, netns removed);
        # on a failure above, whatever the agent left is removed here.
        removed = _gone_or_removed(f"qdhcp-{net['id']}")
    assert status in (204, 404), (status, body)
    assert removed, f"qdhcp-{net['id']} was not removed by the DHCP agent"


def _gone_or_removed(ns: str, timeout: float = 60) -> bool:
    """True when the agent removed ``ns`` in time; else it is deleted here, False."""
    try:
        wait_until(lambda: ns not in _netns(), timeout, f"{ns} removed by its agent")
        return True
    except Exception:
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        return False


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_from(path: Path):
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() and Path(f"/proc/{text}").exists() else None


def _check_dataplane(cp, node, net_id: str, agent_users) -> None:
    dhcp_dir = node.state_dir / "neutron" / "dhcp" / net_id
    agent_log = node.log_dir / "neutron-dhcp-agent.log"
    try:
        pid = wait_until(lambda: _pid_from(dhcp_dir / "pid"), 180,
                         f"dnsmasq for {net_id} (pid file {dhcp_dir / 'pid'})")
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- dhcp agent:\n"
                             + agent_log.read_text(errors="replace")[-6000:]
                             + "\n--- supervisor:\n" + node.supervisor_log()[-3000:]) from None
    st = _status(pid)
    assert Path(f"/proc/{pid}/exe").resolve().name == "dnsmasq"
    nobody = pwd.getpwnam("nobody").pw_uid
    assert st["Uid"].split()[1] == str(nobody), f"dnsmasq euid: {st['Uid']}"
    # Started by the broker: its `ip netns exec` was the supervisor's child, so
    # the daemonised dnsmasq is reparented to the supervisor (a subreaper), not
    # to the DHCP agent; and the broker logged the grant.
    status = node.status()
    dhcp_pid = status["neutron-dhcp-agent"]["pid"]
    chain = _ppid_chain(pid)
    assert node.supervisor.pid in chain and dhcp_pid not in chain, (chain, dhcp_pid)

    # haproxy (isolated metadata) runs as neutron and reaches the metadata
    # agent's socket: an answer from the agent, not haproxy's 503.
    # ProcessManager's name: <external_pids>/<uuid>.pid.haproxy
    ha_pidfile = node.state_dir / "neutron" / "external" / "pids" / f"{net_id}.pid.haproxy"
    try:
        ha_pid = wait_until(lambda: _pid_from(ha_pidfile), 60, f"haproxy pid file {ha_pidfile}")
    except Exception:
        raise AssertionError(agent_log.read_text(errors="replace")[-5000:]) from None
    log = node.supervisor_log()
    started = re.findall(r"event=privsep-start agent=neutron-dhcp-agent peer=\d+ pid=\d+ "
                         rf"what=ip netns exec qdhcp-{net_id} (\S+)", log)
    assert "dnsmasq" in started, log[-3000:]
    assert "haproxy" in started, log[-3000:]
    assert "event=privsep-refused" not in log, log[-3000:]
    assert _status(ha_pid)["Uid"].split()[1] == str(agent_users["neutron"].pw_uid)
    r = subprocess.run(["ip", "netns", "exec", f"qdhcp-{net_id}", "curl", "-s", "-o",
                        "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                        "http://169.254.169.254/openstack"],
                       capture_output=True, text=True, timeout=40)
    assert r.stdout not in ("", "000", "503"), (r.stdout, r.stderr)
    print(f"metadata through haproxy -> metadata agent: HTTP {r.stdout}")

    # The DHCP agent sees its dnsmasq as active (neutron reads the pid file and
    # /proc/PID/cmdline): over a few of its process checks it keeps the pid and
    # logs no respawn. (An observation window: there is no event for "nothing
    # happened"; CHECK_INTERVAL is the agent's own period.)
    t_end = time.monotonic() + 4 * CHECK_INTERVAL + 1
    while time.monotonic() < t_end:
        assert _pid_from(dhcp_dir / "pid") == pid, "dnsmasq was replaced"
        time.sleep(0.5)
    text = agent_log.read_text(errors="replace")
    assert "respawning" not in text.lower(), text[-3000:]
    assert _pid_from(ha_pidfile) == ha_pid, "haproxy was replaced"


def test_router_gets_its_namespace_and_haproxy_through_the_broker(upstream_controlplane,
                                                                  users_node, agent_users):
    """The L3 agent as neutron: qrouter namespace (privsep), metadata haproxy (root_helper)."""
    cp, node = upstream_controlplane, users_node
    port = cp.neutron_port
    l3 = wait_until(lambda: cp.neutron_agent(HOST, "L3 agent"), 120, "this node's L3 agent")
    net = _flat_network(cp, "e2e-users-r")
    router = None
    try:
        subnet = _api_ok("create subnet", *cp.api("POST", cp.url(port, "/v2.0/subnets"), {
            "subnet": {"network_id": net["id"], "project_id": PROJECT, "ip_version": 4,
                       "cidr": "10.78.0.0/24", "gateway_ip": "10.78.0.1",
                       "enable_dhcp": False}}), 201)["subnet"]
        router = _api_ok("create router", *cp.api("POST", cp.url(port, "/v2.0/routers"), {
            "router": {"name": "e2e-users-r", "project_id": PROJECT}}), 201)["router"]
        _api_ok("schedule the router here", *cp.api(
            "POST", cp.url(port, f"/v2.0/agents/{l3['id']}/l3-routers"),
            {"router_id": router["id"]}), 201, 409)
        _api_ok("add the router interface", *cp.api(
            "PUT", cp.url(port, f"/v2.0/routers/{router['id']}/add_router_interface"),
            {"subnet_id": subnet["id"]}), 200)
        ns = f"qrouter-{router['id']}"
        agent_log = node.log_dir / "neutron-l3-agent.log"
        pidfile = node.state_dir / "neutron" / "external" / "pids" / f"{router['id']}.pid.haproxy"
        try:
            wait_until(lambda: ns in _netns(), 120, f"{ns}")
            ha_pid = wait_until(lambda: _pid_from(pidfile), 120, f"haproxy pid file {pidfile}")
        except Exception:
            raise AssertionError(agent_log.read_text(errors="replace")[-5000:]) from None
        assert _status(ha_pid)["Uid"].split()[1] == str(agent_users["neutron"].pw_uid)
        assert node.supervisor.pid in _ppid_chain(ha_pid)
        log = node.supervisor_log()
        assert re.search(r"event=privsep-start agent=neutron-l3-agent peer=\d+ pid=\d+ "
                         rf"what=ip netns exec {ns} haproxy", log), log[-3000:]
        assert "event=privsep-refused" not in log, log[-3000:]
    finally:
        if router is not None:
            cp.api("PUT", cp.url(port, f"/v2.0/routers/{router['id']}/remove_router_interface"),
                   {"subnet_id": subnet["id"]})
            cp.api("DELETE", cp.url(port, f"/v2.0/routers/{router['id']}"))
        cp.api("DELETE", cp.url(port, f"/v2.0/networks/{net['id']}"))
        removed = router is None or _gone_or_removed(f"qrouter-{router['id']}")
    assert removed, f"qrouter-{router['id']} was not removed by the L3 agent"


def test_check_rows_for_the_users(users_node):
    """`hvsupervisor check` on the running users node: its user rows are all ok."""
    import json
    import sys

    node = users_node
    r = subprocess.run([sys.executable, "-m", "hvsupervisor", *node.cli_dirs(), "check",
                        "--format", "json"], capture_output=True, text=True, timeout=120)
    rows = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    mine = {n: c for n, c in rows.items()
            if n.startswith(("user ", "ownership ", "socket access"))}
    for name, user in USERS.items():
        assert rows[f"user {name}"]["status"] == "ok", rows[f"user {name}"]
        assert rows[f"user {name}"]["detail"].startswith(f"{user}("), rows[f"user {name}"]
    assert all(c["status"] == "ok" for c in mine.values()), mine
    # run_tests installs every program the shipped agents exec (host/agent_tools.py)
    assert rows["host tools"]["status"] == "ok", rows["host tools"]
    assert "dnsmasq" in rows["host tools"]["detail"], rows["host tools"]


def test_stop_leaves_no_agent_or_helper_behind(users_node):
    node = users_node
    status = node.all_ready(what="every agent ready, as its user")
    pids = [a["pid"] for a in status.values()]
    rss = _status(node.supervisor.pid)["VmRSS"].strip()
    print(f"hvsupervisor RSS, six agents as users (broker serving): {rss}")
    t0 = time.monotonic()
    rc = node.supervisor.stop(timeout=120)
    print(f"hvsupervisor stop (users): {time.monotonic() - t0:.1f}s rc={rc}")
    assert rc == 0, node.supervisor_log()[-3000:]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), pid
    assert not (node.run_dir / "privsep").exists() or not any(
        (node.run_dir / "privsep").iterdir()), "broker sockets left behind"
    assert os.path.exists(node.run_dir)
