"""An agent run as a user: its plan carries the identity and the broker's env."""

from __future__ import annotations

import pytest

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.explain import effective
from hvsupervisor.host.facts import plan_for

SNIPPET = """\
[agent:alpha]
user = {user}
privsep_contexts = neutron.privileged.default:privsep,neutron.privileged.link_cmd:privsep_link
root_helper = true
"""


def test_user_run_agent_gets_helper_command_and_root_helper(layout):
    layout.write("override", "hvsupervisor.conf.d/50-user.conf", SNIPPET.format(user="nobody"))
    s = layout.settings()
    plan = plan_for(s, s.agents["alpha"])
    assert plan.identity is not None and plan.identity.uid == 65534
    sock = s.run_dir / "privsep" / "alpha.sock"
    assert plan.env["OS_PRIVSEP__HELPER_COMMAND"].endswith(
        f"hvsupervisor-privsep --broker {sock} privsep-helper")
    assert "OS_PRIVSEP_LINK__HELPER_COMMAND" in plan.env
    assert plan.env["OS_AGENT__ROOT_HELPER"].endswith(f"--broker {sock} root-helper")
    assert set(plan.supplied) == {"OS_PRIVSEP__HELPER_COMMAND",
                                  "OS_PRIVSEP_LINK__HELPER_COMMAND", "OS_AGENT__ROOT_HELPER"}
    assert plan.privsep_contexts == ("neutron.privileged.default",
                                     "neutron.privileged.link_cmd")
    exp = effective(plan).explain("privsep", "helper_command")
    assert "supplied by the supervisor" in exp.source
    # beta runs as root: nothing added, digest as before.
    beta = plan_for(s, s.agents["beta"])
    assert beta.identity is None and not beta.supplied


def test_identity_is_in_the_digest(layout):
    s = layout.settings()
    root = plan_for(s, s.agents["alpha"]).digest
    layout.write("override", "hvsupervisor.conf.d/50-user.conf", SNIPPET.format(user="nobody"))
    s = layout.settings()
    assert plan_for(s, s.agents["alpha"]).digest != root


@pytest.mark.parametrize("user", ["", "root"])
def test_root_or_empty_keeps_todays_behaviour(layout, user):
    layout.write("override", "hvsupervisor.conf.d/50-user.conf", SNIPPET.format(user=user))
    s = layout.settings()
    plan = plan_for(s, s.agents["alpha"])
    assert plan.identity is None and not plan.supplied
    assert "OS_AGENT__ROOT_HELPER" not in plan.env


def test_missing_user_is_a_located_config_error(layout):
    path = layout.write("override", "hvsupervisor.conf.d/50-user.conf",
                        SNIPPET.format(user="no-such-user-hv"))
    s = layout.settings()
    with pytest.raises(ConfigError) as err:
        plan_for(s, s.agents["alpha"])
    assert str(err.value).startswith(f"{path}:2: [agent:alpha] user 'no-such-user-hv'")


def test_run_and_validate_refuse_a_missing_user_with_exit_78(layout):
    """`run` exits 78 before anything starts (no run dir, no lock), naming the user."""
    import subprocess
    import sys

    layout.write("override", "hvsupervisor.conf.d/50-user.conf",
                 SNIPPET.format(user="no-such-user-hv"))
    for verb in (["run"], ["config", "validate"]):
        out = subprocess.run([sys.executable, "-m", "hvsupervisor", *layout.cli(), *verb],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 78, out.stderr
        assert "user 'no-such-user-hv' does not exist" in out.stderr
    assert not (layout.root / "run").exists()


def test_shipped_catalog_as_users_supplies_every_privsep_section(tmp_path):
    """The shipped contexts: one helper_command per section, root_helper for neutron."""
    from pathlib import Path

    from hvsupervisor.config.settings import load_settings

    etc = Path(__file__).resolve().parents[2] / "etc"
    snip = tmp_path / "hvsupervisor.conf.d" / "50-users.conf"
    snip.parent.mkdir()
    snip.write_text("[agent:neutron-dhcp-agent]\nuser = nobody\n"
                    "supplementary_groups =\n"
                    "[agent:nova-compute]\nuser = nobody\nsupplementary_groups =\n")
    s = load_settings(etc, tmp_path)
    dhcp = plan_for(s, s.agents["neutron-dhcp-agent"])
    assert set(dhcp.supplied) == {
        "OS_PRIVSEP__HELPER_COMMAND", "OS_PRIVSEP_LINK__HELPER_COMMAND",
        "OS_PRIVSEP_NAMESPACE__HELPER_COMMAND", "OS_PRIVSEP_OVS_VSCTL__HELPER_COMMAND",
        "OS_PRIVSEP_DHCP_RELEASE__HELPER_COMMAND", "OS_AGENT__ROOT_HELPER"}
    nova = plan_for(s, s.agents["nova-compute"])
    assert set(nova.supplied) == {"OS_NOVA_SYS_ADMIN__HELPER_COMMAND",
                                  "OS_VIF_PLUG_OVS_PRIVILEGED__HELPER_COMMAND",
                                  "OS_PRIVSEP_OSBRICK__HELPER_COMMAND"}



def test_shipped_catalog_runs_every_agent_as_its_user(tmp_path, shipped_accounts):
    """Issue 15: nova-* as nova, neutron-* as neutron, each with its privsep contexts."""
    from pathlib import Path

    from hvsupervisor.config.settings import load_settings

    etc = Path(__file__).resolve().parents[2] / "etc"
    s = load_settings(etc, tmp_path)
    plans = {name: plan_for(s, s.agents[name]) for name in s.enabled_agents}
    users = {name: p.identity.user for name, p in plans.items()}
    assert users == {"nova-compute": "nova", "nova-api-metadata": "nova",
                     "neutron-openvswitch-agent": "neutron", "neutron-dhcp-agent": "neutron",
                     "neutron-l3-agent": "neutron", "neutron-metadata-agent": "neutron"}
    assert "OS_PRIVSEP__HELPER_COMMAND" in plans["neutron-l3-agent"].supplied
    assert "OS_VIF_PLUG_OVS_PRIVILEGED__HELPER_COMMAND" in plans["nova-compute"].supplied


def test_shipped_root_example_opts_all_six_out(tmp_path):
    """etc/examples/hvsupervisor.conf.d/50-root.conf.example: the documented opt-out."""
    import shutil
    from pathlib import Path

    from hvsupervisor.config.settings import load_settings

    etc = Path(__file__).resolve().parents[2] / "etc"
    (tmp_path / "hvsupervisor.conf.d").mkdir()
    shutil.copyfile(etc / "examples" / "hvsupervisor.conf.d" / "50-root.conf.example",
                    tmp_path / "hvsupervisor.conf.d" / "50-root.conf")
    s = load_settings(etc, tmp_path)
    assert {s.agents[name].user for name in s.enabled_agents} == {"root"}
    assert all(plan_for(s, s.agents[name]).identity is None for name in s.enabled_agents)
