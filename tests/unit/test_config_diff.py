"""`config diff` / `reload --dry-run`: option-level changes, the reload rule, no secrets."""

import json

from hvsupervisor.config import plan_diff
from hvsupervisor.core.agent_status import AgentStatus
from hvsupervisor.core.status_line import summary_line
from hvsupervisor.host.facts import plan_for


def _snap(layout, agent="alpha"):
    settings = layout.settings()
    return plan_diff.snapshot(plan_for(settings, settings.agents[agent]))


def test_option_changes_with_file_line_and_masked_secrets(layout):
    before = _snap(layout)
    snippet = layout.write("override", "svc/svc.conf.d/50-site.conf",
                           "[DEFAULT]\ndebug = true\n[database]\n"
                           "connection = mysql+pymysql://nova:s3cret@db/nova\npassword = s3cret\n")
    after = _snap(layout)
    d = plan_diff.diff("alpha", before, after)
    assert d.action == "restart"
    assert f"file added: {snippet}" in d.reasons
    by = {(c.section, c.option): c for c in d.options}
    assert by[("DEFAULT", "debug")].old == "false"
    assert by[("DEFAULT", "debug")].new == "true"
    assert by[("DEFAULT", "debug")].where == f"{snippet}:2"
    assert by[("database", "connection")].new == "mysql+pymysql://nova:****@db/nova"
    assert by[("database", "password")].new == "****" and by[("database", "password")].old is None
    text = json.dumps([before, after, d.to_json()])
    assert "s3cret" not in text


def test_a_changed_secret_is_a_change_though_both_show_masked(layout):
    layout.write("override", "svc/svc.conf.d/50-site.conf", "[x]\npassword = one\n")
    before = _snap(layout)
    layout.write("override", "svc/svc.conf.d/50-site.conf", "[x]\npassword = two\n")
    d = plan_diff.diff("alpha", before, _snap(layout))
    assert [(c.option, c.old, c.new) for c in d.options] == [("password", "****", "****")]


def test_unchanged_stopped_enabled_and_removed(layout):
    snap = _snap(layout)
    assert plan_diff.diff("alpha", snap, snap).action == "none"
    layout.write("override", "svc/svc.conf", "[DEFAULT]\ndebug = true\n")
    changed = _snap(layout)
    stopped = plan_diff.diff("alpha", snap, changed, state="stopped")
    assert stopped.action.startswith("none (stopped")
    assert plan_diff.diff("alpha", None, changed).action == "start"
    assert plan_diff.diff("alpha", snap, None).action == "stop"


def test_comment_only_change_still_explains_the_restart(layout):
    before = _snap(layout)
    layout.write("defaults", "svc/svc.conf", "# a comment\n[DEFAULT]\ndebug = false\n")
    d = plan_diff.diff("alpha", before, _snap(layout))
    assert d.action == "restart" and not d.options
    assert any("no option differs" in r for r in d.reasons)


def test_multi_valued_options_accumulate(layout):
    layout.write("override", "svc/svc.conf.d/10-a.conf", '[pci]\nalias = {"name": "a"}\n')
    layout.write("override", "svc/svc.conf.d/20-b.conf", '[pci]\nalias = {"name": "b"}\n')
    opt = _snap(layout)["options"]["pci/alias"]
    assert opt["value"] == '{"name": "a"}\n{"name": "b"}'


def test_status_line_names_restart_pending_last():
    line = summary_line([
        AgentStatus("nova-compute", "ready", True, restart_pending="code changed after start: "
                      "nova-34.0.1.dist-info"),
        AgentStatus("neutron-l3-agent", "failed", False, reason="exit 1"),
    ])
    assert line == ("1/2 ready; neutron-l3-agent failed: exit 1; nova-compute restart pending: "
                    "code changed after start: nova-34.0.1.dist-info")


def test_the_control_socket_accepts_plans():
    from hvsupervisor.control.server import parse_request

    assert parse_request(b'{"cmd": "plans"}\n', ["a"])["cmd"] == "plans"
