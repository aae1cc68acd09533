"""What a new supervisor stops at start (its unit's cgroup) and what stop keeps (data plane)."""

import signal
import subprocess

from hvsupervisor.core import dataplane
from hvsupervisor.process import children, leftovers
from hvsupervisor.process.leftovers import _stop_signal_for

HYBRID = """\
12:pids:/system.slice/hvsupervisor.service
1:name=systemd:/system.slice/hvsupervisor.service
0::/system.slice/hvsupervisor.service
"""


def test_only_a_service_cgroup_is_trusted():
    assert leftovers.service_cgroup(HYBRID) == "/system.slice/hvsupervisor.service"
    assert leftovers.service_cgroup("0::/system.slice/hvsupervisor.service\n") == \
        "/system.slice/hvsupervisor.service"
    assert leftovers.service_cgroup("0::/user.slice/user-0.slice/session-3.scope\n") is None
    assert leftovers.service_cgroup("0::/\n") is None


def test_cgroup_members_from_the_first_hierarchy_that_has_it(tmp_path):
    d = tmp_path / "systemd/system.slice/x.service"
    d.mkdir(parents=True)
    (d / "cgroup.procs").write_text("10\n11\n")
    roots = [str(tmp_path / "unified"), str(tmp_path / "systemd")]
    assert leftovers.cgroup_members("/system.slice/x.service", roots) == [10, 11]
    assert leftovers.cgroup_members("/system.slice/y.service", roots) is None


def test_stale_is_everything_but_us_and_the_data_plane():
    cmd = {1: "/venv/bin/python3 /venv/bin/hvsupervisor run",
           2: "/venv/bin/python3 /venv/bin/neutron-dhcp-agent --config-file x",
           3: "dnsmasq --no-hosts --pid-file=/var/lib/hvsupervisor/neutron/dhcp/n/pid",
           4: "/venv/bin/python3 /venv/bin/neutron-keepalived-state-change --router_id r",
           5: "keepalived -P -f /var/lib/hvsupervisor/neutron/ha_confs/r/keepalived.conf",
           6: "keepalived -P -f /var/lib/hvsupervisor/neutron/ha_confs/r/keepalived.conf",
           7: "/venv/bin/python3 /venv/bin/privsep-helper --privsep_context x"}
    ppids = {2: 1, 3: 1, 4: 1, 5: 1, 6: 5, 7: 2}
    helpers = ["dnsmasq", "haproxy", "keepalived", "neutron-keepalived-state-change"]
    assert sorted(leftovers.stale(cmd, 1, cmd, ppids, helpers)) == [2, 7]
    kept, others = dataplane.split({p: c for p, c in cmd.items() if p != 1}, ppids, helpers)
    assert sorted(kept) == [3, 4, 5, 6] and sorted(others) == [2, 7]


def test_wait_gone_uses_pidfds():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert children.wait_gone([proc.pid], 0.05) == [proc.pid]
        proc.send_signal(signal.SIGTERM)
        assert children.wait_gone([proc.pid], 5) == []
    finally:
        proc.kill()
        proc.wait()


def test_a_stale_agent_gets_its_own_stop_signal(layout):
    from hvsupervisor.host.facts import plans_for

    layout.write("override", "hvsupervisor.conf.d/50-sig.conf",
                 "[agent:alpha]\ncommand = /usr/bin/fake-ovs-agent\nstop_signal = SIGKILL\n")
    plans = plans_for(layout.settings())
    assert _stop_signal_for(plans, "/usr/bin/fake-ovs-agent --config-file a") == signal.SIGKILL
    assert _stop_signal_for(plans, "/usr/bin/other") == signal.SIGTERM


def test_a_controller_connection_older_than_the_agent_is_not_its_own():
    """ovsdb-bridge readiness after a quick restart: vswitchd still reports the killed
    agent's connection for a while; only a connection younger than the process counts."""
    from hvsupervisor.host.ovsdb import _connected_within

    assert _connected_within({"sec_since_connect": "42"}, None)
    assert not _connected_within({"sec_since_connect": "42"}, 3.0)
    assert _connected_within({"sec_since_connect": "2"}, 3.0)
    assert _connected_within({}, 3.0)  # an OVS without the key: as before


def test_restart_pending_is_a_metric():
    from prometheus_client.exposition import generate_latest

    from hvsupervisor.core.agent_status import AgentStatus, NodeStatus
    from hvsupervisor.health.metrics import build_registry

    node = NodeStatus(ready=True, status="", agents=(
        AgentStatus("nova-compute", "ready", True, restart_pending="code changed"),
        AgentStatus("neutron-l3-agent", "ready", True)))
    text = generate_latest(build_registry(node)).decode()
    assert 'hvsupervisor_agent_restart_pending{agent="nova-compute"} 1.0' in text
    assert 'hvsupervisor_agent_restart_pending{agent="neutron-l3-agent"} 0.0' in text
