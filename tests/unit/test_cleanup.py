"""neutron-ovs-cleanup / neutron-netns-cleanup argv from plans (pure)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from hvsupervisor.host import boot_cleanup


def _plan(*paths: str, env=None, supplied=()):
    return SimpleNamespace(files=[SimpleNamespace(path=p) for p in paths], env=env or {},
                           supplied=tuple(supplied))


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
    cmd = boot_cleanup.build_ovs_cleanup(PLANS, Path("/nonexistent/bin"), Path("/var/log/h"))
    assert cmd.argv[0] == "neutron-ovs-cleanup"
    assert cmd.argv[1:3] == ("--log-file", "/var/log/h/neutron-ovs-cleanup.log")
    assert _files(cmd.argv) == [f.path for f in PLANS["neutron-openvswitch-agent"].files]
    assert cmd.env == {"OS_DEFAULT__STATE_PATH": "/s/neutron"}


def test_netns_cleanup_merges_dhcp_and_l3_bases_before_snippets():
    cmd = boot_cleanup.build_netns_cleanup(PLANS, Path("/nonexistent/bin"), Path("/l"), ["--force"])
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
        boot_cleanup.build_netns_cleanup({}, Path("/b"), Path("/l"))




def test_cleanup_runs_privsep_directly_not_through_the_broker(tmp_path, shipped_accounts):
    """The shipped agents are users: their plans route privsep through the supervisor's
    broker; the cleanup tools run as root before it, so they get none of that."""
    from hvsupervisor.config.settings import load_settings
    from hvsupervisor.host.facts import plans_for

    etc = Path(__file__).resolve().parents[2] / "etc"
    plans = plans_for(load_settings(etc, tmp_path / "over", str(tmp_path / "s"),
                                      str(tmp_path / "l"), str(tmp_path / "r")))
    assert "OS_PRIVSEP__HELPER_COMMAND" in plans["neutron-l3-agent"].env
    for cmd in (boot_cleanup.build_ovs_cleanup(plans, Path("/b"), tmp_path),
                boot_cleanup.build_netns_cleanup(plans, Path("/b"), tmp_path)):
        assert not [k for k in cmd.env if k.endswith("__HELPER_COMMAND")], cmd.env
        assert "OS_AGENT__ROOT_HELPER" not in cmd.env
        assert cmd.env["OS_DEFAULT__STATE_PATH"] == f"{tmp_path / 's'}/neutron"
