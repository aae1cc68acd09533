"""The demo's override snippets, read back through the real settings loader."""

from __future__ import annotations

from pathlib import Path

import pytest
from hvtestcloud import cloud, profile
from hvtestcloud.services import Netns

from hvsupervisor.config.settings import load_settings
from hvsupervisor.host.facts import plans_for

# The shipped catalog runs the agents as nova/neutron: plans resolve them
# through stand-in accounts when the host has none (tests/fixtures/accounts.py).
pytestmark = pytest.mark.usefixtures("shipped_accounts")

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path):
    override, state = tmp_path / "override", tmp_path / "state"
    cp = cloud.ControlPlane(tmp_path / "cloud", Netns("hvsup-demo-x"), Path("/v/bin"),
                            Path("/v"), full=True)
    profile.write_profile(override, cp, "demo-host",
                          "qemu+unix:///system?socket=/x/libvirt-sock", "qemu")
    settings = load_settings(REPO / "etc", override, str(state), str(tmp_path / "log"),
                             str(tmp_path / "run"))
    return cp, override, settings


def test_catalog_snippet_adds_ovs_rundir_keeps_the_libvirt_gate_ensures_bridges(tmp_path):
    cp, _override, settings = _write(tmp_path)
    shipped = load_settings(REPO / "etc", tmp_path / "none", str(tmp_path / "s"),
                            str(tmp_path / "log"), str(tmp_path / "run"))
    assert set(settings.agents) == set(shipped.agents)
    for name, spec in settings.agents.items():
        env = dict(spec.environment)
        assert env["OVS_RUNDIR"] == str(cp.ovs_run), name
        # The shipped variables are kept: [agent_defaults] environment merges key by key.
        assert dict(shipped.agents[name].environment).items() <= env.items(), name
    assert settings.agents["nova-compute"].host_gates == ("libvirt",)
    assert settings.supervisor.ensure_bridges is True


def test_snippets_join_the_cloud_with_libvirt_netdev_flat_and_noop_firewall(tmp_path):
    from hvsupervisor.config.explain import effective

    cp, _override, settings = _write(tmp_path)
    plans = plans_for(settings)
    nova = effective(plans["nova-compute"]).lookup
    assert nova("DEFAULT", "compute_driver") == "libvirt.LibvirtDriver"
    assert nova("libvirt", "virt_type") == "qemu"
    assert nova("libvirt", "connection_uri") == "qemu+unix:///system?socket=/x/libvirt-sock"
    assert nova("DEFAULT", "transport_url") == cp.transport_url
    assert nova("neutron", "metadata_proxy_shared_secret") == cloud.METADATA_SECRET
    meta = effective(plans["nova-api-metadata"]).explain("database", "connection")
    assert meta.value == cloud.sqlite_url(cp.nova_db)
    assert "nova-api-metadata.conf.d" in meta.file
    assert effective(plans["nova-compute"]).explain("database", "connection").value is None
    ovs = effective(plans["neutron-openvswitch-agent"]).lookup
    assert ovs("ovs", "datapath_type") == "netdev"
    assert ovs("ovs", "bridge_mappings") == "physnet1:br-phys"
    assert ovs("securitygroup", "firewall_driver") == "noop"
    dhcp = effective(plans["neutron-dhcp-agent"]).lookup
    assert dhcp("DEFAULT", "force_metadata") == "true"


def test_catalog_env_snippet_is_one_line(tmp_path):
    p = profile.catalog_env_snippet(tmp_path / "x.conf", {"OVS_RUNDIR": "/x"})
    lines = [line for line in p.read_text().splitlines() if line and not line.startswith("[")]
    assert lines == ["environment = OVS_RUNDIR:/x"]


def test_nova_compute_stop_budget_follows_the_demo_graceful_timeout(tmp_path):
    """Ctrl-C on the demo: nova-compute (libvirt driver) leaves only when its
    graceful_shutdown_timeout runs out, so the demo sets a short one and the
    supervisor's budget (and the demo's wait) follows it."""
    from hvtestcloud import node

    _cp, _override, settings = _write(tmp_path)
    plans = plans_for(settings)
    compute = plans["nova-compute"]
    graceful = profile.NOVA_GRACEFUL_SHUTDOWN_TIMEOUT
    assert compute.stop_timeout == graceful + settings.agents["nova-compute"].stop_margin
    assert "60-demo-libvirt.conf" in compute.stop_source
    # The longest chain of stops + the data-plane helpers + the supervisor's exit:
    # was 180 + 10 + 5 (OVS agent) + 15 = 210 s with nova's default.
    assert node.stop_budget(plans) <= 60


def test_demo_opts_out_to_root_with_its_reason(tmp_path):
    """The demo runs the six as root (50-demo-root.conf), saying why in the file."""
    _cp, override, settings = _write(tmp_path)
    assert all(plans_for(settings)[name].identity is None for name in profile.AGENTS)
    assert set(profile.AGENTS) == set(settings.enabled_agents)
    text = (override / "hvsupervisor.conf.d" / profile.ROOT_SNIPPET).read_text()
    assert text.startswith("# hvsupervisor demo: the opt-out")
