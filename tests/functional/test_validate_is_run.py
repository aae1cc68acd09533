"""Issue 10 sections 2 and 6 on a real `hvsupervisor run`: what `config validate`
passes starts, what it refuses `run` refuses the same way (exit 78, the same
file:line, no traceback, nothing started), and secrets stay out of every output."""

from __future__ import annotations

import os
import signal
import stat
import subprocess

import pytest

from tests.fixtures.supervisor import PY, standin

pytestmark = pytest.mark.functional

SECRET = "S3cretPass"


def _run_refused(node) -> subprocess.CompletedProcess:
    """`run` as a real process in its own session; killed (group) if it does not refuse."""
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = node.fake_notify.path
    proc = subprocess.Popen([*node.cli(), "run"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"run did not refuse the config: {err[-500:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _base(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.write_catalog()


BAD = {
    "jitter-above-1": "[supervisor]\nrestart_jitter = 1.5\n",
    "flap-window-0": "[supervisor]\nflap_window = 0\n",
    "stop-timeout-nan": "[agent:a]\nstop_timeout = nan\n",
    "stop-timeout-1e308": "[agent:a]\nstop_timeout = 1e308\n",
    "alive-nan": "[agent:a]\nready = alive:nan\n",
    "env-key-with-equals": "[agent:a]\nenvironment = A=B:x\n",
    "escape-name": "[DEFAULT]\nenabled_agents = ../../escape\n"
                   "[agent:../../escape]\ncommand = /bin/true\n",
    "slash-name": "[DEFAULT]\nenabled_agents = a/b\n[agent:a/b]\ncommand = /bin/true\n",
    "long-name": f"[DEFAULT]\nenabled_agents = {'x' * 300}\n"
                 f"[agent:{'x' * 300}]\ncommand = /bin/true\n",
    "space-name": "[DEFAULT]\nenabled_agents = a b\n[agent:a b]\ncommand = /bin/true\n",
    "secret-parse-error": "[agent:a]\npassword " + SECRET + "\n",
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_validate_and_run_refuse_alike(node, case):
    _base(node)
    bad = node.snippet("hvsupervisor.conf.d/90-bad.conf", "# x\n" + BAD[case])
    val = node.hv("config", "validate")
    run = _run_refused(node)
    for cp in (val, run):
        assert cp.returncode == 78, (case, cp.stderr)
        assert "Traceback" not in cp.stderr, cp.stderr
        assert SECRET not in cp.stderr
    assert val.stderr.strip() == run.stderr.strip()
    assert val.stderr.startswith(f"hvsupervisor: {bad}:"), val.stderr
    assert "run_dir" not in val.stderr  # a long name is blamed on the name
    assert not (node.log_dir / "a.log").exists(), "an agent was started"


def test_what_validates_runs(node):
    """Edges that validate (jitter 1, a 1 s flap window, a name with '@' and '.')
    run: before, jitter 1 validated and `run` died with a traceback."""
    node.agent("ceilometer@1.x", standin(), ready="alive:0.1", stop_timeout="0.5")
    node.supervisor_opts.update(restart_jitter="1", flap_window="1")
    node.write_catalog()
    val = node.hv("config", "validate")
    assert val.returncode == 0, val.stderr
    node.start()
    a = node.agent_status("ceilometer@1.x")
    assert a["state"] == "ready" and a["pid"]
    assert (node.run_dir / "notify").is_dir()


def test_unknown_key_warns_in_validate_log_and_check(node):
    _base(node)
    typo = node.snippet("hvsupervisor.conf.d/50-typo.conf", "[agent:a]\n\nstop_timout = 60\n")
    want = f"{typo}:3: Unknown key name 'stop_timout' in section 'agent:a', ignoring"
    val = node.hv("config", "validate")
    assert val.returncode == 0 and want in val.stderr, val.stderr
    check = json_out_rc(node.hv("check", "--format", "json"))
    rows = [r for r in check["checks"] if r["name"] == "config key"]
    assert rows == [{"name": "config key", "status": "fail", "detail": want}]
    node.start()
    assert want in node.output()
    assert want in (node.log_dir / "hvsupervisor.log").read_text()
    # A reload that brings a new typo warns about it too (and is applied).
    typo2 = node.snippet("hvsupervisor.conf.d/60-typo.conf", "[supervisor]\nready_timout = 5\n")
    assert node.hv("reload").returncode == 0
    want2 = f"{typo2}:2: Unknown key name 'ready_timout' in section 'supervisor', ignoring"
    assert want2 in (node.log_dir / "hvsupervisor.log").read_text()


def json_out_rc(cp):
    import json

    assert cp.returncode in (0, 1), cp.stderr
    return json.loads(cp.stdout)


def test_secrets_stay_out_of_status_plan_log_and_status_line(node):
    node.agent("a", f"{PY} -c 'import time; time.sleep(3600)' --password {SECRET} "
               f"--db=mysql://u:p@{SECRET}@db/x", ready="alive:0.1")
    node.start()
    raw = node.status()  # the raw control-socket reply
    argv = next(a for a in raw["agents"] if a["name"] == "a")["argv"]
    assert SECRET not in " ".join(argv) and "****" in argv
    plan = node.hv("config", "plan", "a")
    assert plan.returncode == 0 and SECRET not in plan.stdout, plan.stdout
    assert "--password ****" in plan.stdout
    # A reload with a bad line is refused without echoing it anywhere.
    bad = node.snippet("svc/common.conf.d/50-db.conf", f"[database]\npassword {SECRET}\n")
    rel = node.hv("reload")
    assert rel.returncode != 0 and f"{bad}:2" in rel.stderr + rel.stdout
    assert SECRET not in rel.stderr + rel.stdout
    assert SECRET not in str(node.status())
    assert not any(SECRET in s for s in node.status_messages())
    log = node.log_dir / "hvsupervisor.log"
    assert SECRET not in log.read_text() and SECRET not in node.output()
    assert stat.S_IMODE(log.stat().st_mode) == 0o640


def test_reload_refuses_a_bad_environment_key_and_sigterm_still_stops(node):
    """Before: an env key with '=' added by a reload left the agent stuck in
    'stopping' and SIGTERM no longer stopped the supervisor."""
    _base(node)
    node.start()
    pid = node.agent_status("a")["pid"]
    bad = node.snippet("hvsupervisor.conf.d/60-env.conf", "[agent:a]\nenvironment = A=B:x\n")
    rel = node.hv("reload")
    assert rel.returncode != 0 and f"{bad}:2" in rel.stderr + rel.stdout
    a = node.agent_status("a")
    assert (a["state"], a["pid"]) == ("ready", pid)
    assert node.stop() == 0
