"""The shipped nova/neutron defaults with the shipped upstream catalog.

Pure: resolves the plans (no daemon runs) and reads effective values with
oslo.config, as the agents will.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from hvsupervisor.config import paths
from hvsupervisor.config.explain import effective
from hvsupervisor.config.settings import load_settings
from hvsupervisor.host.facts import plans_for

# The shipped catalog runs the agents as nova/neutron: plans resolve them
# through stand-in accounts when the host has none (tests/fixtures/accounts.py).
pytestmark = pytest.mark.usefixtures("shipped_accounts")

REPO = Path(__file__).resolve().parents[2]
ETC = REPO / "etc"
AGENTS = ("nova-compute", "nova-api-metadata", "neutron-openvswitch-agent",
          "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent")
NEUTRON_PRIVSEP = ("privsep", "privsep_dhcp_release", "privsep_ovs_vsctl", "privsep_namespace",
                   "privsep_conntrack", "privsep_link")


@pytest.fixture
def plans(tmp_path):
    override = tmp_path / "override"
    settings = load_settings(ETC, override, str(tmp_path / "state"), str(tmp_path / "log"),
                             str(tmp_path / "run"))
    return tmp_path, plans_for(settings)


def test_every_agent_logs_to_its_own_file_and_gets_the_state_dir(plans):
    root, p = plans
    assert set(AGENTS) <= set(p)
    for name in AGENTS:
        argv = list(p[name].argv)
        assert argv[argv.index("--log-file") + 1] == f"{root / 'log'}/{name}.log"
        project = "nova" if name.startswith("nova") else "neutron"
        assert p[name].env["OS_DEFAULT__STATE_PATH"] == f"{root / 'state'}/{project}"
        # privsep-helper and neutron's helpers come from this install first.
        assert p[name].env["PATH"].split(":")[0] == str(paths.bindir())


def test_files_are_passed_in_catalog_order(plans):
    _, p = plans
    files = [f.path for f in p["neutron-openvswitch-agent"].files]
    assert files == [str(ETC / "neutron" / "neutron.conf"),
                     str(ETC / "neutron" / "plugins" / "ml2" / "openvswitch_agent.ini")]
    argv = list(p["neutron-dhcp-agent"].argv)
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--config-file"] == [
        str(ETC / "neutron" / "neutron.conf"), str(ETC / "neutron" / "dhcp_agent.ini")]


def test_privsep_goes_through_the_broker_for_the_agents_contexts(plans):
    """As users (the shipped default) the supervisor's broker starts their helpers.

    The shipped files keep ``helper_command = privsep-helper`` (what a root
    agent runs directly, the 50-root.conf.example opt-out); the supervisor
    supplies the broker client for each context the agent names
    (doc/upstream-behaviour.md section 15).
    """
    root, p = plans
    neutron = effective(p["neutron-l3-agent"])
    sock = f"{root / 'run'}/privsep/neutron-l3-agent.sock"
    brokered = {"privsep", "privsep_link", "privsep_namespace", "privsep_ovs_vsctl",
                "privsep_conntrack"}
    for section in NEUTRON_PRIVSEP:
        value = neutron.lookup(section, "helper_command")
        if section in brokered:
            assert value.endswith(f"hvsupervisor-privsep --broker {sock} privsep-helper"), section
        else:
            assert value == "privsep-helper", section
    assert neutron.lookup("agent", "root_helper").endswith(f"--broker {sock} root-helper")
    nova = effective(p["nova-compute"])
    sock = f"{root / 'run'}/privsep/nova-compute.sock"
    for section in ("nova_sys_admin", "vif_plug_ovs_privileged", "privsep_osbrick"):
        assert nova.lookup(section, "helper_command").endswith(
            f"--broker {sock} privsep-helper"), section
    assert nova.lookup("vif_plug_linux_bridge_privileged", "helper_command") == "privsep-helper"


def test_defaults_are_the_supported_node(plans):
    _, p = plans
    nova = effective(p["nova-compute"])
    assert nova.lookup("DEFAULT", "compute_driver") == "libvirt.LibvirtDriver"
    assert nova.lookup("libvirt", "virt_type") == "kvm"
    assert nova.lookup("DEFAULT", "use_stderr") == "false"
    # Live migration: sources reach this node at my_ip (unset here: nova's default).
    assert nova.lookup("libvirt", "live_migration_inbound_addr") == "$my_ip"
    assert nova.lookup("libvirt", "live_migration_scheme") == "tcp"
    assert nova.lookup("libvirt", "live_migration_uri") is None
    for agent in ("neutron-dhcp-agent", "neutron-l3-agent"):
        assert effective(p[agent]).lookup("DEFAULT", "interface_driver") == "openvswitch"
    ovs = effective(p["neutron-openvswitch-agent"])
    assert ovs.lookup("ovs", "integration_bridge") == "br-int"
    assert ovs.lookup("ovs", "ovsdb_connection") == "unix:/run/openvswitch/db.sock"


def test_readiness_and_stop_rules(plans):
    root, p = plans
    # Readiness that means serving (doc/health.md): each agent's own RPC queue or
    # a real HTTP answer; the OVS agent by br-int, which its dependents need.
    assert str(p["neutron-metadata-agent"].ready) == \
        f"http:http+unix://{root / 'state'}/neutron/metadata_proxy:400"
    assert str(p["nova-api-metadata"].ready) == "http:http://127.0.0.1:8775/:200"
    assert str(p["nova-compute"].ready) == "rpc:nova/compute@6.0"
    assert str(p["neutron-dhcp-agent"].ready) == "rpc:neutron/dhcp_agent@1.0"
    assert str(p["neutron-l3-agent"].ready) == "rpc:neutron/l3_agent@1.0"
    assert str(p["neutron-openvswitch-agent"].ready) == "ovsdb-bridge:br-int"
    # Measured (doc/upstream-behaviour.md section 13): the OVS agent ignores SIGTERM and
    # SIGINT; DHCP/L3 leave at once on SIGINT; nova-compute drains on SIGTERM, with the
    # time its own graceful_shutdown_timeout asks for.
    signals = {n: signal.Signals(plan.stop_signal).name for n, plan in p.items()}
    assert signals == {"nova-compute": "SIGTERM", "nova-api-metadata": "SIGTERM",
                       "neutron-openvswitch-agent": "SIGKILL", "neutron-dhcp-agent": "SIGINT",
                       "neutron-l3-agent": "SIGINT", "neutron-metadata-agent": "SIGTERM"}
    assert p["neutron-openvswitch-agent"].stop_timeout <= 10
    assert p["nova-compute"].stop_timeout == 190
    assert "graceful_shutdown_timeout 180 (the daemon's default)" in p["nova-compute"].stop_source


def test_rpc_targets_come_from_the_agents_own_config(plans):
    from hvsupervisor.health.targets import rpc_target

    _root, p = plans
    target = rpc_target(p["nova-compute"])
    assert (target.exchange, target.topic, target.version) == ("nova", "compute", "6.0")
    assert target.server  # [DEFAULT] host, else the hostname, as nova does
    assert rpc_target(p["nova-api-metadata"]) is None
    assert target.rabbit == ()  # the shipped files set nothing in [oslo_messaging_rabbit]


def test_rpc_target_carries_the_agents_rabbit_tls_options(tmp_path):
    """A site's TLS snippet in nova's conf.d, and one option from the environment:
    the probe must reach the bus as the agent does (doc/health.md)."""
    from hvsupervisor.health.targets import rpc_target

    override = tmp_path / "override"
    snippet = override / "nova" / "nova.conf.d" / "30-tls.conf"
    snippet.parent.mkdir(parents=True)
    snippet.write_text("[oslo_messaging_rabbit]\nssl = True\nssl_ca_file = /etc/ssl/ca.pem\n"
                       "[DEFAULT]\ntransport_url = rabbit://nova:s3@mq:5671/\n")
    settings = load_settings(ETC, override, str(tmp_path / "state"), str(tmp_path / "log"),
                             str(tmp_path / "run"))
    target = rpc_target(plans_for(settings)["nova-compute"])
    assert dict(target.rabbit) == {"ssl": "True", "ssl_ca_file": "/etc/ssl/ca.pem"}
    assert str(target).endswith("via rabbit://nova:****@mq:5671/ (TLS)")


def test_shipped_files_hold_no_secret_values():
    for path in ETC.rglob("*"):
        if not path.is_file() or path.parent.name == "examples" or "examples" in path.parts:
            continue
        for line in path.read_text().splitlines():
            key = line.split("=", 1)[0].strip().lower()
            if line.lstrip().startswith("#") or "=" not in line:
                continue
            assert not any(w in key for w in ("password", "secret", "transport_url")), \
                f"{path}: {line}"
