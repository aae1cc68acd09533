"""The command-line contract of `config plan|explain` (used by tests outside the repo)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def hv(layout, *args):
    return subprocess.run([sys.executable, "-m", "hvsupervisor", *layout.cli(), *args],
                          capture_output=True, text=True, timeout=60)


def test_plan_json_contract(layout):
    out = hv(layout, "config", "plan", "alpha", "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"agent", "argv", "env", "env_origin", "files", "digest", "user",
                         "supplied_by_supervisor"}
    assert data["agent"] == "alpha"
    assert data["files"] == [
        {"path": str(layout.defaults / "svc/svc.conf"), "layer": "defaults"},
        {"path": str(layout.defaults / "svc/alpha.ini"), "layer": "defaults"},
    ]
    assert len(data["digest"]) == 64


def test_plan_masks_credentials(layout):
    cat = layout.defaults / "hvsupervisor.conf"
    cat.write_text(cat.read_text().replace(
        "ready = alive:1", "ready = alive:1\n"
        "environment = OS_DEFAULT__TRANSPORT_URL:rabbit://u:topsecret@h:5672/"))
    out = hv(layout, "config", "plan", "alpha", "--format", "json")
    assert "topsecret" not in out.stdout
    assert json.loads(out.stdout)["env"]["OS_DEFAULT__TRANSPORT_URL"] == "rabbit://u:****@h:5672/"


def test_explain_json_contract_and_masking(layout):
    p = layout.write("override", "svc/svc.conf.d/50-bus.conf",
                     "[DEFAULT]\ntransport_url = rabbit://nova:pw123@10.1.1.1:5672/\n")
    out = hv(layout, "config", "explain", "alpha", "DEFAULT", "transport_url", "--format", "json")
    data = json.loads(out.stdout)
    assert {k: data[k] for k in ("agent", "section", "option", "value", "file")} == {
        "agent": "alpha", "section": "DEFAULT", "option": "transport_url",
        "value": "rabbit://nova:****@10.1.1.1:5672/", "file": str(p)}
    table = hv(layout, "config", "explain", "alpha", "DEFAULT", "transport_url")
    assert f"{p}:2" in table.stdout and "pw123" not in table.stdout


def test_table_forms_for_people(layout):
    out = hv(layout, "config", "plan", "beta")
    assert out.returncode == 0
    assert "digest:" in out.stdout and "defaults" in out.stdout


def _fails_cleanly(out, *needles):
    assert out.returncode == 78
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    for n in needles:
        assert n in lines[0]


def test_unknown_agent_exit_78(layout):
    _fails_cleanly(hv(layout, "config", "plan", "nope"), "unknown agent 'nope'")


def test_parse_error_exit_78_with_file_and_line(layout):
    p = layout.write("override", "svc/svc.conf.d/10-bad.conf", "[DEFAULT]\n= novalue\n")
    _fails_cleanly(hv(layout, "config", "plan", "alpha"), f"{p}:2:")


def test_missing_base_file_exit_78(layout):
    (layout.defaults / "svc/alpha.ini").unlink()
    _fails_cleanly(hv(layout, "config", "plan", "alpha"), "svc/alpha.ini")


def test_unreadable_snippet_exit_78(layout):
    d = layout.override / "svc/svc.conf.d"
    d.mkdir(parents=True)
    (d / "20-x.conf").symlink_to("/nonexistent/file.conf")
    _fails_cleanly(hv(layout, "config", "plan", "alpha"), str(d / "20-x.conf"), "broken symlink")


def test_shipped_defaults_resolve_for_all_six(tmp_path):
    # The shipped users are not what this tests (a host may lack them:
    # test_privsep_plan.py tests the shipped identity): the documented opt-out.
    conf_d = tmp_path / "hvsupervisor.conf.d"
    conf_d.mkdir()
    shutil.copyfile(REPO / "etc" / "examples" / "hvsupervisor.conf.d" / "50-root.conf.example",
                    conf_d / "50-root.conf")
    out = subprocess.run([sys.executable, "-m", "hvsupervisor", "--override-dir", str(tmp_path),
                          "config", "validate", "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    agents = json.loads(out.stdout)["agents"]
    assert sorted(agents) == sorted([
        "nova-compute", "nova-api-metadata", "neutron-openvswitch-agent",
        "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent"])
