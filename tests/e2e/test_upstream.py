"""The real upstream daemons (nova 34, neutron 29) under hvsupervisor's defaults.

Each agent runs with the argv and environment of its plan (shipped etc/ +
the shipped catalog + e2e site snippets in the override dir) against a
minimal control plane in a private netns (tests/e2e/controlplane.py). The
only deviations from the shipped defaults are site values and what this
machine cannot provide: no /dev/kvm, no OVS kernel module, no kernel
conntrack, so nova uses fake.PredictableNodeUUIDDriver, OVS the netdev
datapath, and the firewall is noop (all in 50-e2e.conf snippets).
As shipped, nova-* run as nova and neutron-* as neutron, with no
capabilities (doc/upstream-behaviour.md section 15);
test_upstream_users.py adds dnsmasq/haproxy through the privsep broker.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest

from hvsupervisor.process.children import child_env
from tests.e2e.controlplane import NODE_HOST, utc, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

AGENT_TYPES = {"Open vSwitch agent", "DHCP agent", "L3 agent", "Metadata agent"}
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ +\d+ ")
# A whole oslo.log record: timestamp, pid, level, logger, [context], text.
# (Traceback lines carry the prefix without the [context] and may repeat.)
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \S+ +\d+ [A-Z]+ \S+ \[[^]]*\] \S")


SHIPPED_USERS = {"nova-compute": "nova", "nova-api-metadata": "nova",
                 "neutron-openvswitch-agent": "neutron", "neutron-dhcp-agent": "neutron",
                 "neutron-l3-agent": "neutron", "neutron-metadata-agent": "neutron"}


def _proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_every_agent_runs_as_its_shipped_user_with_no_capabilities(upstream_node, agent_users):
    if upstream_node.supervisor is None:
        pytest.skip("HVSUP_E2E_DIRECT=1: spawned as root, without the supervisor")
    status = wait_until(lambda: (lambda st: st if all(a["ready"] for a in st.values())
                                 else None)(upstream_node.status()), 240, "every agent ready")
    for name, user in SHIPPED_USERS.items():
        st = _proc_status(status[name]["pid"])
        pw = agent_users[user]
        assert st["Uid"].split() == [str(pw.pw_uid)] * 4, (name, st["Uid"])
        assert st["Gid"].split()[0] == str(pw.pw_gid), (name, st["Gid"])
        assert st["CapEff"] == "0000000000000000", (name, st["CapEff"])
        assert st["CapBnd"] == "0000000000000000", (name, st["CapBnd"])
        assert st["NoNewPrivs"] == "1", name


def test_ovs_agent_creates_br_int_and_installs_flows(upstream_controlplane, upstream_node):
    cp = upstream_controlplane
    wait_until(lambda: cp.vsctl("br-exists", "br-int").returncode == 0, 60,
               "br-int in the private ovsdb")
    assert "br-int" in cp.vsctl("list-br").stdout.split()

    def flows() -> list[str]:
        out = cp.ofctl("dump-flows", "br-int").stdout
        return [line for line in out.splitlines() if "cookie=" in line]

    found = wait_until(flows, 90, "OpenFlow rules on br-int from the agent")
    assert any("table=0" in f or "table=" in f for f in found)


def test_nova_compute_is_up_and_has_a_resource_provider(upstream_controlplane, upstream_node):
    cp, node = upstream_controlplane, upstream_node
    started = node.started["nova-compute"]

    svc = wait_until(lambda: cp.compute_service_up(NODE_HOST, started), 120,
                     "nova-compute service heartbeat in the nova DB")
    assert svc["disabled"] == 0
    rps = wait_until(lambda: [rp for rp in cp.resource_providers()
                              if rp["name"] == NODE_HOST], 60,
                     "the node's resource provider in Placement")
    assert rps[0]["uuid"] == str(uuid.uuid5(uuid.NAMESPACE_DNS, NODE_HOST))


def test_neutron_agents_are_alive(upstream_controlplane, upstream_node):
    cp = upstream_controlplane

    def alive() -> dict | None:
        agents = {a["agent_type"]: a for a in cp.neutron_agents()
                  if a["host"] == NODE_HOST and a["alive"]}
        return agents if AGENT_TYPES <= set(agents) else None

    agents = wait_until(alive, 150, f"{sorted(AGENT_TYPES)} alive in GET /v2.0/agents")
    assert all(a["admin_state_up"] for a in agents.values())


def test_metadata_api_and_proxy_socket_serve(upstream_controlplane, upstream_node):
    cp, node = upstream_controlplane, upstream_node
    wait_until(lambda: cp.ns.tcp_open(8775), 60, "nova-api-metadata on 127.0.0.1:8775")
    r = cp.ns.run(["curl", "-sf", "--max-time", "10", "http://127.0.0.1:8775/"])
    assert r.returncode == 0 and "latest" in r.stdout, r
    sock_path = node.state_dir / "neutron" / "metadata_proxy"

    def accepts() -> bool:
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(sock_path))
            except OSError:
                return False
            return True

    wait_until(accepts, 60, f"metadata agent socket {sock_path}")


def test_each_agent_logs_to_its_file_once(upstream_controlplane, upstream_node):
    node = upstream_node
    # Wait until every agent has logged through oslo.log (timestamped lines).
    for name in node.plans:
        path = node.log_dir / f"{name}.log"
        wait_until(lambda p=path: p.exists() and any(
            TIMESTAMPED.match(x) for x in p.read_text(errors="replace").splitlines()),
            60, f"oslo.log lines in {path}")
    for name in node.plans:
        lines = (node.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
        # Blank relayed lines ("privsep log: ") legitimately repeat within a ms.
        records = [x for x in lines if RECORD.match(x) and not x.rstrip().endswith(":")]
        # stderr is appended to the same file (no-journal mode): with
        # use_stderr = true there, every record would appear twice. A few
        # repeats are genuine: nova logs "No DB access allowed" as two records
        # that can share their first line and millisecond (seen 1 run in 2).
        dupes = {x for x in records if records.count(x) > 1}
        assert len(dupes) <= max(3, len(set(records)) // 20), (
            f"{name}: {len(dupes)} of {len(set(records))} log records written twice, "
            f"e.g. {sorted(dupes)[:3]}")
        assert node.agent_alive(name), f"{name} is not running, see {node.log_dir / name}.log"


def test_nova_compute_restart_keeps_its_node_identity(upstream_controlplane, upstream_node):
    """A restart against the same DB works: PredictableNodeUUIDDriver + compute_id.

    Under the supervisor this is `hvsupervisor restart nova-compute`.
    """
    cp, node = upstream_controlplane, upstream_node
    node_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, NODE_HOST))
    old_pid = node.agent_pid("nova-compute")
    t0 = time.time()
    if node.supervisor is not None:
        from hvsupervisor.control.client import call

        reply = call(node.control_socket, {"cmd": "restart", "agents": ["nova-compute"]})
        assert reply.get("ok"), reply
        wait_until(lambda: node.status()["nova-compute"]["pid"] not in (None, old_pid)
                   and node.status()["nova-compute"]["state"] in ("starting", "ready"),
                   60, "a new nova-compute pid")
    else:
        from tests.e2e.controlplane import scrubbed_env

        plan = node.plans["nova-compute"]
        node.procs["nova-compute"].stop(timeout=plan.stop_timeout)
        node.procs["nova-compute"] = cp.ns.spawn(
            "nova-compute", list(plan.argv), node.log_dir / "nova-compute.log",
            scrubbed_env(plan.env), cwd=node.run_dir)

    def fresh_heartbeat() -> bool:
        # An old heartbeat still counts as "up": wait for one newer than the restart.
        return any(s["binary"] == "nova-compute" and s["host"] == NODE_HOST and s["updated_at"]
                   and utc(s["updated_at"]) > t0 for s in cp.compute_services())

    wait_until(fresh_heartbeat, 120, "a nova-compute heartbeat after the restart")
    assert node.agent_alive("nova-compute")
    assert [rp["uuid"] for rp in cp.resource_providers() if rp["name"] == NODE_HOST] == \
        [node_uuid]
    log = (node.log_dir / "nova-compute.log").read_text(errors="replace")
    assert "No local node identity found" not in log
    print(f"nova-compute restart to fresh heartbeat: {time.time() - t0:.1f}s")


def test_cleanup_commands_use_the_resolved_config(upstream_controlplane, upstream_node,
                                                  capsys):
    from hvsupervisor.cmd import cleanup

    cp, node = upstream_controlplane, upstream_node
    assert cleanup.main_ovs(["--dry-run", *node.cli_dirs()]) == 0
    dry = capsys.readouterr().out.split()
    assert dry[0].endswith("/neutron-ovs-cleanup")
    ovs_files = [p.path for p in node.plans["neutron-openvswitch-agent"].files]
    assert [dry[i + 1] for i, a in enumerate(dry) if a == "--config-file"] == ovs_files

    # br-int is the OVS agent's: run alone, this test must wait for it too.
    wait_until(lambda: cp.vsctl("br-exists", "br-int").returncode == 0, 120,
               "br-int from the OVS agent")
    ovs = cleanup.build_ovs_cleanup(node.plans, Path(sys.executable).parent, node.log_dir)
    t0 = time.monotonic()
    r = cp.ns.run(list(ovs.argv), env=child_env(os.environ, ovs.env), timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "br-int" in cp.vsctl("list-br").stdout.split(), "ovs-cleanup must keep br-int"
    ovs_s = time.monotonic() - t0

    netns = cleanup.build_netns_cleanup(node.plans, Path(sys.executable).parent,
                                        node.log_dir, ["--force"])
    files = [netns.argv[i + 1] for i, a in enumerate(netns.argv) if a == "--config-file"]
    assert any(f.endswith("/dhcp_agent.ini") for f in files)
    assert any(f.endswith("/l3_agent.ini") for f in files)
    victim = f"qdhcp-{uuid.uuid4()}"
    jail = [sys.executable, str(Path(__file__).with_name("netns_jail.py")), "--make", victim,
            "--", *netns.argv]
    t0 = time.monotonic()
    r = cp.ns.run(["unshare", "--mount", "--propagation", "private", *jail],
                  env=child_env(os.environ, netns.env), timeout=180)
    assert r.returncode == 0, (r.stdout[-1000:], r.stderr[-2000:])
    left = r.stdout.split("--- left", 1)[1]
    log = node.log_dir / "neutron-netns-cleanup.log"
    assert victim not in left, (f"netns-cleanup left {victim}",
                                log.read_text()[-3000:] if log.exists() else "no log")
    netns_s = time.monotonic() - t0
    assert (node.log_dir / "neutron-netns-cleanup.log").exists()
    print(f"ovs-cleanup {ovs_s:.1f}s netns-cleanup {netns_s:.1f}s")


NEUTRON_AGENTS = {"neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
                  "neutron-metadata-agent"}


def _all_ready(node, timeout=120):
    return wait_until(lambda: (lambda st: st if all(a["ready"] for a in st.values()) else None)(
        node.status()), timeout, "every agent ready")


def test_neutron_snippet_reload_restarts_exactly_the_four_neutron_agents(upstream_node):
    import json
    import subprocess

    node = upstream_node
    if node.supervisor is None:
        pytest.skip("HVSUP_E2E_DIRECT=1: no supervisor to reload")
    before = _all_ready(node)
    snippet = node.override / "neutron" / "neutron.conf.d" / "60-e2e-reload.conf"
    snippet.parent.mkdir(parents=True, exist_ok=True)
    snippet.write_text("[DEFAULT]\ndebug = true\n")
    cp = subprocess.run([sys.executable, "-m", "hvsupervisor", *node.cli_dirs(), "reload",
                         "--format", "json"], capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    assert set(json.loads(cp.stdout)["restarted"]) == NEUTRON_AGENTS
    after = _all_ready(node)
    for name, agent in after.items():
        if name in NEUTRON_AGENTS:
            assert agent["pid"] != before[name]["pid"], name
            assert str(snippet) in agent["argv"], name
        else:
            assert agent["pid"] == before[name]["pid"], f"{name} was restarted"
            assert str(snippet) not in agent["argv"]


def test_stop_leaves_no_agent_behind(upstream_controlplane, upstream_node):
    """Measured stop behaviour, which the catalog's stop_timeout values rely on.

    Under the supervisor: SIGTERM to `hvsupervisor run` stops every agent
    (the OVS agent ignores SIGTERM and is SIGKILLed after its stop_timeout)
    and the supervisor exits. Directly: each agent is stopped in turn.
    """
    node = upstream_node
    if node.supervisor is not None:
        from hvsupervisor.control.client import call

        status = _all_ready(node)
        pids = {name: a["pid"] for name, a in status.items()}
        rss = next(line.split(":", 1)[1].strip() for line in
                   Path(f"/proc/{node.supervisor.pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS:"))
        print(f"hvsupervisor RSS, six agents as root: {rss}")
        # `hvsupervisor stop` (every agent; the supervisor stays), then the full stop.
        assert call(node.control_socket, {"cmd": "stop"}, timeout=120)["ok"]
        wait_until(lambda: all(a["state"] == "stopped" for a in node.status().values()), 90,
                   "every agent stopped")
        for name, pid in pids.items():
            assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) survived stop"
        t0 = time.monotonic()
        rc = node.supervisor.stop(timeout=90)
        elapsed = time.monotonic() - t0
        print(f"hvsupervisor stop: {elapsed:.1f}s rc={rc}")
        assert rc == 0
        for name, pid in pids.items():
            assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) survived"
    else:
        times = {}
        for name in ("neutron-metadata-agent", "neutron-l3-agent", "neutron-dhcp-agent",
                     "nova-api-metadata", "nova-compute", "neutron-openvswitch-agent"):
            proc = node.procs[name]
            t0 = time.monotonic()
            rc = proc.stop(timeout=node.plans[name].stop_timeout)
            times[name] = (round(time.monotonic() - t0, 1), rc)
            assert not proc.alive()
        print("stop times (s, rc):", times)
    cp_pids = {p.pid for p in upstream_controlplane.procs}
    stray = [p for p in upstream_controlplane.ns.pids() if p not in cp_pids]
    assert not _node_processes(stray), f"node processes left: {_node_processes(stray)}"


def _node_processes(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(k in cmd for k in ("neutron-openvswitch", "neutron-dhcp", "neutron-l3",
                                  "neutron-metadata", "nova-compute", "nova-api-metadata")):
            out.append(f"{pid} {cmd[:80]}")
    return out


