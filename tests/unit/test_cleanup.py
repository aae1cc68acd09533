"""neutron-ovs-cleanup / neutron-netns-cleanup argv from plans (pure)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from hvsupervisor import cleanup


def _plan(*paths: str, env=None):
    return SimpleNamespace(files=[SimpleNamespace(path=p) for p in paths], env=env or {})


DEF = "/usr/share/hvsupervisor/etc/neutron"
OVR = "/etc/hvsupervisor/neutron"
PLANS = {
    "neutron-openvswitch-agent": _plan(f"{DEF}/neutron.conf",
                                       f"{DEF}/plugins/ml2/openvswitch_agent.ini",
                                       f"{OVR}/neutron.conf.d/50-site.conf",
                                       env={"OS_DEFAULT__STATE_PATH": "/s/neutron"}),
    "neutron-dhcp-agent": _plan(f"{DEF}/neutron.conf", f"{OVR}/dhcp_agent.ini",
                                f"{OVR}/neutron.conf.d/50-site.conf"),
    "neutron-l3-agent": _plan(f"{DEF}/neutron.conf", f"{DEF}/l3_agent.ini",
                              f"{OVR}/neutron.conf.d/50-site.conf",
                              f"{OVR}/neutron.conf.d/60-l3.conf"),
}


def _files(argv) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--config-file"]


def test_ovs_cleanup_gets_the_ovs_agents_files_in_order():
    cmd = cleanup.build_ovs_cleanup(PLANS, Path("/nonexistent/bin"), Path("/var/log/h"))
    assert cmd.argv[0] == "neutron-ovs-cleanup"
    assert cmd.argv[1:3] == ("--log-file", "/var/log/h/neutron-ovs-cleanup.log")
    assert _files(cmd.argv) == [f.path for f in PLANS["neutron-openvswitch-agent"].files]
    assert cmd.env == {"OS_DEFAULT__STATE_PATH": "/s/neutron"}


def test_netns_cleanup_merges_dhcp_and_l3_bases_before_snippets():
    cmd = cleanup.build_netns_cleanup(PLANS, Path("/nonexistent/bin"), Path("/l"), ["--force"])
    assert _files(cmd.argv) == [
        f"{DEF}/neutron.conf", f"{OVR}/dhcp_agent.ini", f"{DEF}/l3_agent.ini",
        f"{OVR}/neutron.conf.d/50-site.conf", f"{OVR}/neutron.conf.d/60-l3.conf"]
    assert cmd.argv[-1] == "--force"
    # neutron 29's netns-cleanup hangs at exit after --force unless no monitor thread runs.
    assert cmd.env["OS_AGENT__CHECK_CHILD_PROCESSES_INTERVAL"] == "0"


def test_netns_cleanup_without_dhcp_or_l3_is_a_config_error():
    import pytest

    from hvsupervisor.config.errors import ConfigError

    with pytest.raises(ConfigError, match="neutron-dhcp-agent"):
        cleanup.build_netns_cleanup({}, Path("/b"), Path("/l"))


