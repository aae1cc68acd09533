"""Issue 14 item 6: [agent_defaults] and an environment merged key by key;
issue 16: a conf.d only one agent reads ({service}/{agent}.conf.d)."""

from pathlib import Path

import pytest

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.settings import load_settings
from hvsupervisor.host.facts import plan_for, plans_for

# The shipped catalog runs the agents as nova/neutron: plans resolve them
# through stand-in accounts when the host has none (tests/fixtures/accounts.py).
pytestmark = pytest.mark.usefixtures("shipped_accounts")

REPO = Path(__file__).resolve().parents[2]


def test_every_agent_inherits_what_it_does_not_set(layout):
    layout.write("override", "hvsupervisor.conf.d/10-d.conf",
                 "[agent_defaults]\nstop_timeout = 7\nready = alive:3\n")
    s = layout.settings()
    assert s.agents["alpha"].stop_timeout == 7.0
    assert s.agents["alpha"].ready == "alive:1"  # set in [agent:alpha]: the agent wins
    assert s.agents["beta"].ready == "notify"


def test_environment_merges_key_by_key_and_empty_removes(layout):
    cat = layout.defaults / "hvsupervisor.conf"
    cat.write_text(cat.read_text() + "\n[agent_defaults]\nenvironment = A:1,B:2\n")
    layout.write("override", "hvsupervisor.conf.d/20-x.conf",
                 "[agent:alpha]\nenvironment = B:,C:3\n")
    one = layout.write("override", "hvsupervisor.conf.d/30-one-line.conf",
                       "[agent_defaults]\nenvironment = D:4\n")
    s = layout.settings()
    assert dict(s.agents["alpha"].environment) == {"A": "1", "C": "3", "D": "4"}
    assert dict(s.agents["beta"].environment) == {"A": "1", "B": "2", "D": "4"}
    origin = {k: (p, n) for k, p, n in s.agents["beta"].env_origin}
    assert origin["D"] == (str(one), 2)
    assert origin["A"][0] == str(cat)


def test_agent_section_beats_defaults_in_a_later_file(layout):
    layout.write("defaults", "hvsupervisor.conf.d/10-a.conf",
                 "[agent:alpha]\nenvironment = X:agent\n")
    layout.write("override", "hvsupervisor.conf.d/90-d.conf",
                 "[agent_defaults]\nenvironment = X:all\n")
    s = layout.settings()
    assert dict(s.agents["alpha"].environment)["X"] == "agent"
    assert dict(s.agents["beta"].environment)["X"] == "all"


def test_plan_and_explain_name_where_each_env_var_came_from(layout):
    p = layout.write("override", "hvsupervisor.conf.d/10-e.conf",
                     "[agent_defaults]\n\nenvironment = OS_DEFAULT__DEBUG:true\n")
    from hvsupervisor.config.explain import effective

    s = layout.settings()
    plan = plan_for(s, s.agents["beta"])
    assert plan.env_origin["OS_DEFAULT__DEBUG"] == (str(p), 3)
    e = effective(plan).explain("DEFAULT", "debug")
    assert (e.source, e.file, e.line) == ("environment", str(p), 3)


def test_config_plan_shows_env_origin(layout, capsys):
    from hvsupervisor.cmd.cli import main

    p = layout.write("override", "hvsupervisor.conf.d/10-e.conf",
                     "[agent_defaults]\nenvironment = HTTPS_PROXY:http://u:pw@proxy:3128\n")
    assert main(layout.cli() + ["config", "plan", "alpha"]) == 0
    out = capsys.readouterr().out
    assert f"HTTPS_PROXY=http://u:****@proxy:3128  ({p}:2)" in out
    assert "pw@" not in out


def test_unknown_placeholder_in_config_dirs_is_located(layout):
    p = layout.write("override", "hvsupervisor.conf.d/10-x.conf",
                     "[agent:alpha]\nconfig_dirs = {state_dir}/x\n")
    with pytest.raises(ConfigError) as err:
        layout.settings()
    assert (err.value.path, err.value.line) == (str(p), 2)


def _shipped(tmp_path, override=None):
    return load_settings(REPO / "etc", override or tmp_path / "none", str(tmp_path / "s"),
                         str(tmp_path / "l"), str(tmp_path / "r"))


def test_shipped_catalog_states_shared_values_once():
    lines = (REPO / "etc" / "hvsupervisor.conf").read_text().splitlines()
    assert sum(x.startswith("environment =") for x in lines) == 1
    assert sum(x.startswith("config_dirs =") for x in lines) == 1
    assert lines.count("[agent_defaults]") == 1


def test_shipped_plans_keep_their_environment(tmp_path):
    s = _shipped(tmp_path)
    for name, plan in plans_for(s).items():
        service = "nova" if name.startswith("nova") else "neutron"
        assert plan.env["OS_DEFAULT__STATE_PATH"] == f"{tmp_path / 's'}/{service}"
        assert plan.env["PATH"].endswith(":/usr/sbin:/usr/bin:/sbin:/bin")
        assert plan.env["OS_DEFAULT__USE_STDERR"] in ("true", "false")
        assert f"{tmp_path / 's'}/{service}" in plan.directories


def test_metadata_only_dir_is_not_in_nova_computes_plan(tmp_path):
    over = tmp_path / "over"
    db = over / "nova" / "nova-api-metadata.conf.d" / "50-db.conf"
    db.parent.mkdir(parents=True)
    db.write_text("[database]\nconnection = mysql+pymysql://nova:pw@db/nova\n")
    site = over / "nova" / "nova.conf.d" / "50-site.conf"
    site.parent.mkdir(parents=True)
    site.write_text("[DEFAULT]\nhost = n1\n")
    s = _shipped(tmp_path, over)
    assert s.agents["nova-api-metadata"].config_dirs == (
        "nova/nova.conf.d", "nova/nova-api-metadata.conf.d")
    assert s.agents["nova-compute"].config_dirs == ("nova/nova.conf.d", "nova/nova-compute.conf.d")
    plans = plans_for(s)
    assert str(db) in plans["nova-api-metadata"].argv
    assert str(site) in plans["nova-api-metadata"].argv
    for name, plan in plans.items():
        if name != "nova-api-metadata":
            assert not any("nova-api-metadata.conf.d" in a for a in plan.argv), name


def test_config_plan_nova_compute_does_not_list_the_metadata_dir(tmp_path, capsys):
    from hvsupervisor.cmd.cli import main

    over = tmp_path / "over"
    db = over / "nova" / "nova-api-metadata.conf.d" / "50-db.conf"
    db.parent.mkdir(parents=True)
    db.write_text("[database]\nconnection = sqlite:////x\n")
    args = ["--defaults-dir", str(REPO / "etc"), "--override-dir", str(over)]
    assert main(args + ["config", "plan", "nova-compute"]) == 0
    assert "nova-api-metadata.conf.d" not in capsys.readouterr().out
    assert main(args + ["config", "plan", "nova-api-metadata"]) == 0
    assert str(db) in capsys.readouterr().out


def _db_rows(tmp_path, files: dict[str, str]):
    from hvsupervisor.cmd.check import _db_sources
    from hvsupervisor.host import preflight

    over = tmp_path / "over"
    for rel, text in files.items():
        (over / rel).parent.mkdir(parents=True, exist_ok=True)
        (over / rel).write_text(text)
    plans = plans_for(_shipped(tmp_path, over))
    return preflight.check_nova_db(_db_sources(plans, "nova-api-metadata"),
                                   _db_sources(plans, "nova-compute"))


def test_check_fails_without_metadata_db_and_warns_when_compute_has_it(tmp_path):
    secret = "mysql+pymysql://nova:S3cretPass@db/nova"
    rows = _db_rows(tmp_path, {})
    assert [(r.name, r.status) for r in rows] == [("nova db", "fail")]
    assert "nova-api-metadata.conf.d" in rows[0].detail

    rows = _db_rows(tmp_path, {
        "nova/nova-api-metadata.conf.d/50-db.conf": f"[api_database]\nconnection = {secret}\n"})
    assert [(r.name, r.status) for r in rows] == [("nova db", "ok")]

    site = "nova/nova.conf.d/50-site.conf"
    rows = _db_rows(tmp_path, {site: f"[database]\n\nconnection = {secret}\n"})
    assert [(r.name, r.status) for r in rows] == [("nova db", "ok"),
                                                  ("nova-compute db", "warn")]
    assert f"{site}:3" in rows[1].detail
    assert all("S3cretPass" not in r.detail for r in rows)


def test_unknown_placeholder_in_inherited_environment_is_located(layout):
    p = layout.write("override", "hvsupervisor.conf.d/10-x.conf",
                     "[agent_defaults]\n\nenvironment = X:{nope}\n")
    s = layout.settings()
    with pytest.raises(ConfigError) as err:
        plan_for(s, s.agents["alpha"])
    assert (err.value.path, err.value.line) == (str(p), 3)
    assert "{nope}" in str(err.value)


@pytest.mark.parametrize("option", ["command = /bin/true {nope}", "ready = unix:{nope}/s",
                                    "directories = {nope}/x"])
def test_unknown_placeholder_names_its_line(layout, option):
    p = layout.write("override", "hvsupervisor.conf.d/10-x.conf", f"[agent:alpha]\n\n{option}\n")
    s = layout.settings()
    with pytest.raises(ConfigError) as err:
        plan_for(s, s.agents["alpha"])
    assert (err.value.path, err.value.line) == (str(p), 3)
