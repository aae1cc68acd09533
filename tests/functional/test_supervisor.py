"""A real `hvsupervisor run` with stand-in agents and a fake systemd (issue 3)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.fixtures.supervisor import json_out, standin
from tests.util import kill_and_reap, pid_alive, read_pid, wait_until

pytestmark = pytest.mark.functional


def test_ready_only_after_every_agent_and_dependency_order(node, tmp_path):
    node.agent("a", standin("--ready-after", "0.5", "--pidfile", str(tmp_path / "a.pid")),
               ready="notify")
    node.agent("b", standin("--ready-after", "0", "--pidfile", str(tmp_path / "b.pid")),
               ready="notify", after="a")
    node.start(wait_ready=False)
    node.wait_ready_message()
    status = node.status()
    assert status["ready"] is True
    assert all(a["ready"] for a in status["agents"])
    a_start = os.stat(tmp_path / "a.pid").st_mtime
    b_start = os.stat(tmp_path / "b.pid").st_mtime
    assert b_start - a_start >= 0.45, "b started before a was ready"
    readies = [f for pid, f in node.fake_notify.messages
               if pid == node.proc.pid and f.get("READY") == "1"]
    assert len(readies) == 1
    assert readies[0]["STATUS"] == "2/2 ready"


def test_sigkilled_agent_comes_back(node):
    node.agent("a", standin(), ready="alive:0.2")
    node.start()
    old = node.agent_status("a")["pid"]
    os.kill(old, signal.SIGKILL)
    new = node.wait_agent("a", lambda a: a["pid"] not in (None, old) and a["ready"])
    assert new["restarts"] == 1
    assert new["last_exit"].startswith("signal 9 (SIGKILL)")
    assert not pid_alive(old)


def test_crash_loop_isolates_one_agent_and_restart_revives(node):
    node.supervisor_opts.update(flap_max="3", flap_window="60")
    node.agent("steady", standin(), ready="alive:0.1")
    node.agent("crasher", standin("--print", "boom-now", "--crash-after", "0",
                                  "--exit-code", "3"), ready="alive:5")
    node.start(wait_ready=False)
    steady_pid = node.wait_agent("steady", lambda a: a["ready"])["pid"]
    failed = node.wait_agent("crasher", lambda a: a["state"] == "failed")
    assert failed["last_exit"].startswith("exit 3")
    assert node.agent_status("steady")["pid"] == steady_pid
    wait_until(lambda: any("crasher failed: exit 3" in s for s in node.status_messages()))
    # The operator revives it: it is spawned again (and will crash again).
    before = failed["restarts"]
    cp = node.hv("restart", "crasher")
    assert cp.returncode == 0, cp.stderr
    node.wait_agent("crasher", lambda a: a["restarts"] > before)


def test_agent_ignoring_sigterm_is_killed_after_its_timeout(node, tmp_path):
    node.agent("stubborn", standin("--ignore-sigterm", "--pidfile", str(tmp_path / "s.pid")),
               ready="alive:0.1", stop_timeout="0.5")
    node.start()
    pid = read_pid(tmp_path / "s.pid")
    t0 = time.monotonic()
    assert node.stop() == 0
    assert time.monotonic() - t0 >= 0.5
    assert not pid_alive(pid)
    assert f"agent=stubborn pid={pid} signal=SIGKILL" in node.output()


def test_full_stop_leaves_no_process_setsid_grandchild_included(node, tmp_path):
    node.agent("a", standin("--setsid-grandchild", str(tmp_path / "gc.pid"),
                            "--pidfile", str(tmp_path / "a.pid")), ready="alive:0.1")
    node.agent("b", standin("--pidfile", str(tmp_path / "b.pid")), ready="alive:0.1", after="a")
    node.start()
    pids = [read_pid(tmp_path / n) for n in ("a.pid", "b.pid", "gc.pid")]
    assert all(pid_alive(p) for p in pids)
    assert node.stop() == 0
    assert [p for p in pids if pid_alive(p)] == []
    out = node.output()
    # Reverse dependency order: b (the dependent) is signalled before a.
    assert out.index(f"agent=b pid={pids[1]} signal=SIGTERM") < out.index(
        f"agent=a pid={pids[0]} signal=SIGTERM")


def test_full_stop_keeps_the_data_plane_and_stops_other_leftovers(node, tmp_path):
    """The default (stop_dataplane = false): a helper (argv[0] dnsmasq) outlives the stop and
    is listed; a stray grandchild that is not a helper (a privsep daemon, say) is stopped."""
    node.agent("a", standin("--helper-grandchild", f"dnsmasq:{tmp_path / 'dns.pid'}",
                            "--setsid-grandchild", str(tmp_path / "gc.pid")), ready="alive:0.1")
    node.start()
    helper, stray = read_pid(tmp_path / "dns.pid"), read_pid(tmp_path / "gc.pid")
    try:
        assert node.stop() == 0
        assert pid_alive(helper), "the data plane must outlive a stop of the supervisor"
        assert not pid_alive(stray)
        assert f"event=left-running pid={helper} cmd=dnsmasq infinity" in node.output()
    finally:
        kill_and_reap([helper])


def test_stop_dataplane_true_stops_the_helpers_too(node, tmp_path):
    node.supervisor_opts["stop_dataplane"] = "true"
    node.agent("a", standin("--helper-grandchild", f"haproxy:{tmp_path / 'hap.pid'}"),
               ready="alive:0.1")
    node.start()
    helper = read_pid(tmp_path / "hap.pid")
    try:
        assert node.stop() == 0
        assert not pid_alive(helper)
    finally:
        kill_and_reap([helper])


def test_stop_signal_is_what_the_agent_gets(node, tmp_path):
    """stop_signal = SIGINT: the stand-in exits on SIGINT, the log names the signal."""
    node.agent("a", standin("--pidfile", str(tmp_path / "a.pid")), ready="alive:0.1",
               stop_signal="SIGINT")
    node.start()
    pid = read_pid(tmp_path / "a.pid")
    assert node.stop() == 0
    assert not pid_alive(pid)
    assert f"agent=a pid={pid} signal=SIGINT" in node.output()


def test_single_agent_restart_signals_only_main_process(node, tmp_path):
    node.agent("a", standin("--setsid-grandchild", str(tmp_path / "gc.pid")), ready="alive:0.1")
    node.start()
    gc = read_pid(tmp_path / "gc.pid")
    old = node.agent_status("a")["pid"]
    assert node.hv("restart", "a").returncode == 0
    node.wait_agent("a", lambda a: a["pid"] not in (None, old) and a["ready"])
    assert pid_alive(gc), "a data-plane helper must survive an agent restart"


def test_reload_restarts_exactly_the_changed_agents(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    before = node.pids()
    # No-op reload: nothing restarts.
    reply = json_out(node.hv("reload", "--format", "json"))
    assert reply["restarted"] == []
    assert node.pids() == before
    # A snippet for a's ini only: a restarts, b keeps its pid.
    node.snippet("svc/a.ini", "[a]\nmode = new\n")
    reply = json_out(node.hv("reload", "--format", "json"))
    assert reply["restarted"] == ["a"]
    after = node.wait_agent("a", lambda a: a["pid"] not in (None, before["a"]))
    assert node.agent_status("b")["pid"] == before["b"]
    plan = json_out(node.hv("config", "plan", "a", "--format", "json"))
    assert str(node.override / "svc/a.ini") in plan["argv"]
    assert after["pid"] != before["a"]
    # RELOADING=1 with MONOTONIC_USEC went to systemd, then READY=1 again.
    node.fake_notify.wait_for(lambda pid, f: pid == node.proc.pid and f.get("RELOADING") == "1"
                              and f.get("MONOTONIC_USEC", "").isdigit())


def test_bad_snippet_refused_whole_old_pids_untouched(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    before = node.pids()
    node.snippet("svc/a.ini", "[a]\nmode = new\n")  # a valid change...
    bad = node.snippet("svc/common.conf.d/50-bad.conf", "[DEFAULT]\nnot an assignment\n")
    cp = node.hv("reload")  # ...and a bad one: neither is applied
    assert cp.returncode == 1
    assert f"{bad}:2" in cp.stderr and "Traceback" not in cp.stderr
    assert node.pids() == before
    wait_until(lambda: any("reload refused" in s and str(bad) in s
                           for s in node.status_messages()))


def test_sighup_reloads(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    old = node.agent_status("a")["pid"]
    node.snippet("svc/common.conf.d/10-x.conf", "[DEFAULT]\nx = 1\n")
    node.proc.send_signal(signal.SIGHUP)
    node.wait_agent("a", lambda a: a["pid"] not in (None, old) and a["ready"])


def test_children_inherit_none_of_our_systemd_variables(node, tmp_path):
    node.agent("a", standin("--dump-env", str(tmp_path / "env.json")), ready="alive:0.1",
               environment="OS_DEFAULT__KEEP:yes")
    node.start(env={"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1", "LISTEN_FDS": "3",
                    "LISTEN_PID": "1", "JOURNAL_STREAM": "8:1234",
                    "OS_DEFAULT__DEBUG": "true"})
    env = wait_until(lambda: (tmp_path / "env.json").exists() and json.loads(
        (tmp_path / "env.json").read_text()))
    for var in ("WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "JOURNAL_STREAM",
                "OS_DEFAULT__DEBUG"):
        assert var not in env
    assert env["OS_DEFAULT__KEEP"] == "yes"
    # Its own notify socket, never ours.
    assert env["NOTIFY_SOCKET"] == str(node.run_dir / "notify" / "a.sock")


def test_grandchild_cannot_mark_an_agent_ready(node):
    node.agent("a", standin("--grandchild-notify"), ready="notify")
    node.supervisor_opts["ready_timeout"] = "1"
    node.start(wait_ready=False)
    wait_until(lambda: "ignored notify message from pid" in node.output())
    assert node.agent_status("a")["ready"] is False


def test_ready_timeout_sends_degraded_ready(node):
    node.supervisor_opts["ready_timeout"] = "0.5"
    node.agent("never", standin(), ready="notify")
    node.start(wait_ready=False)
    _, fields = node.wait_ready_message(timeout=10)
    assert fields["STATUS"].startswith("degraded: 0/1 ready")
    assert node.status()["ready"] is False


def test_watchdog_pinged_from_the_loop(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.start(env={"WATCHDOG_USEC": "200000"})
    wait_until(lambda: sum(1 for pid, f in node.fake_notify.messages
                           if pid == node.proc.pid and f.get("WATCHDOG") == "1") >= 3)


def test_stopping_sent_and_exit_zero(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    assert node.stop(signal.SIGINT) == 0
    node.fake_notify.wait_for(lambda pid, f: pid == node.proc.pid and f.get("STOPPING") == "1")


def test_second_supervisor_on_same_run_dir_refused(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    cp = node.hv("run", timeout=30)
    assert cp.returncode == 1
    assert f"already running with run dir {node.run_dir}" in cp.stderr


def test_status_json_contract_and_table(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    data = json_out(node.hv("status", "--format", "json"))
    assert data["ready"] is True
    # The JSON carries every column of the table, and the STATUS= line.
    assert data["status"] == "1/1 ready"
    assert list(data["agents"][0]) == ["name", "state", "ready", "reason", "last_exit",
                                       "degraded", "pid", "restarts", "digest", "argv",
                                       "ready_rule", "health", "restart_pending"]
    assert data["control_plane"] == "unknown"  # no rpc agent: no bus probed
    table = node.hv("status")
    assert "1/1 ready" in table.stdout and "a " in table.stdout
    assert table.stdout.splitlines()[1] == "control_plane: unknown"
    assert table.stdout.splitlines()[2].split() == [
        "agent", "state", "pid", "ready", "health", "last", "probe", "restarts", "last",
        "exit", "reason", "last", "probe", "error"]


def test_control_socket_is_private(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    assert oct((node.run_dir / "control.sock").stat().st_mode & 0o777) == "0o600"


def test_stop_and_start_one_agent(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    b_pid = node.agent_status("b")["pid"]
    assert node.hv("stop", "a").returncode == 0
    node.wait_agent("a", lambda a: a["state"] == "stopped")
    assert node.agent_status("b")["pid"] == b_pid
    assert node.hv("start", "a").returncode == 0
    node.wait_agent("a", lambda a: a["ready"])
    cp = node.hv("restart", "nope")
    assert cp.returncode == 1 and "unknown agent nope" in cp.stderr


def test_agent_output_to_journal_stream_under_its_name(tmp_path, fake_notify, fake_journal):
    from tests.fixtures.supervisor import Node

    n = Node(tmp_path, fake_notify, journal_socket=fake_journal.path)
    try:
        n.agent("nova-compute", standin("--print", "hello from the stand-in"), ready="alive:0.1")
        n.start()
        fake_journal.wait_for_line("nova-compute", "hello from the stand-in")
    finally:
        n.cleanup()


def test_file_log_without_journal_and_big_line(node, tmp_path):
    node.agent("flood", standin("--big-line", str(10 * 1024 * 1024)), ready="alive:0.1")
    node.start()
    log = node.log_dir / "flood.log"
    wait_until(lambda: log.exists() and log.stat().st_size >= 10 * 1024 * 1024, 20)
    rss_kb = int(next(line.split()[1] for line in open(f"/proc/{node.proc.pid}/status")
                      if line.startswith("VmRSS:")))
    assert rss_kb < 100 * 1024  # the supervisor never buffered the line


def test_removed_agent_stopped_and_new_agent_started_on_reload(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    b_pid = node.agent_status("b")["pid"]
    node.snippet("hvsupervisor.conf.d/10-only-a.conf", "[DEFAULT]\nenabled_agents = a\n")
    reply = json_out(node.hv("reload", "--format", "json"))
    assert reply["stopped"] == ["b"]
    wait_until(lambda: not pid_alive(b_pid))
    wait_until(lambda: [a["name"] for a in node.status()["agents"]] == ["a"])


def test_daemon_mode_detaches_with_pidfile(node, tmp_path):
    """--daemon (python-daemon) for hosts without systemd: detached, pidfile, clean stop."""
    import subprocess

    node.agent("a", standin("--pidfile", str(tmp_path / "a.pid")), ready="alive:0.1")
    node.write_catalog()
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    cp = subprocess.run([*node.cli(), "run", "--daemon"], env=env, timeout=30,
                        capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr  # the foreground part returns at once
    pidfile = node.run_dir / "hvsupervisor.pid"
    pid = read_pid(pidfile)
    assert pid_alive(pid)
    wait_until(lambda: (node.run_dir / "control.sock").exists(), 10, "control socket")
    node.wait_agent("a", lambda a: a["ready"])
    agent_pid = read_pid(tmp_path / "a.pid")
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(pid) and not pid_alive(agent_pid), 15, "daemon stop")


def test_run_dir_too_long_for_sockets_is_a_config_error(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.write_catalog()
    long_run = "/tmp/" + "r" * 110
    cp = node.hv("--run-dir", long_run, "run", timeout=30)
    assert cp.returncode == 78
    assert "too long a path" in cp.stderr and "Traceback" not in cp.stderr


def test_no_restart_or_reload_while_stopping(node, tmp_path):
    node.agent("stubborn", standin("--ignore-sigterm"), ready="alive:0.1", stop_timeout="3")
    node.start()
    node.proc.send_signal(signal.SIGTERM)
    node.wait_agent("stubborn", lambda a: a["state"] == "stopping")
    cp = node.hv("restart", "stubborn")
    assert cp.returncode == 1 and "the supervisor is stopping" in cp.stderr
    cp = node.hv("reload")
    assert cp.returncode == 1 and "stopping" in cp.stderr
    assert node.proc.wait(30) == 0


def test_agent_directories_made_before_start(node, tmp_path):
    target = tmp_path / "state" / "nova" / "instances"
    node.agent("a", standin("--pidfile", str(target / "a.pid")), ready="alive:0.1",
               directories="{state_dir}/nova,{state_dir}/nova/instances")
    node.start()
    assert read_pid(target / "a.pid")  # the agent could write into it
    assert target.stat().st_mode & 0o777 == 0o711


def test_config_diff_dry_run_and_restart_pending_apply_nothing(node):
    """`config diff` and `reload --dry-run` name the changed option with its file:line and
    the agent a reload would restart; `status` says "restart pending"; no pid changes."""
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    before = node.pids()
    snippet = node.snippet("svc/a.ini", "[a]\nmode = new\npassword = hunter2\n")
    diff = json_out(node.hv("config", "diff", "--format", "json"))
    assert diff["restarted"] == ["a"] and diff["dry_run"] is False
    a = next(x for x in diff["agents"] if x["agent"] == "a")
    assert {"section": "a", "option": "mode", "old": None, "new": "new",
            "where": f"{snippet}:2"} in a["options"]
    assert "hunter2" not in json.dumps(diff)
    dry = node.hv("reload", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "a reload would restart: a" in dry.stdout
    assert "[a] mode" in dry.stdout and "hunter2" not in dry.stdout
    status = json_out(node.hv("status", "--format", "json"))
    pending = {x["name"]: x["restart_pending"] for x in status["agents"]}
    assert pending["a"].startswith("config changed on disk") and not pending["b"]
    assert node.pids() == before  # nothing applied
    reply = json_out(node.hv("reload", "--format", "json"))
    assert reply["restarted"] == ["a"]
    node.wait_agent("a", lambda x: x["pid"] not in (None, before["a"]) and x["ready"])
    after = json_out(node.hv("config", "diff", "a", "--format", "json"))
    assert after["restarted"] == [] and after["agents"][0]["action"] == "none"


def test_code_change_seen_on_a_watchdog_tick_and_cleared_by_the_restart(node, tmp_path):
    """An upgrade rewrites an agent's script under it: STATUS= says "restart pending"
    without anyone asking `status`; the restart's new process clears it at once."""
    from tests.fixtures.supervisor import PY, STANDIN

    script = tmp_path / "bin" / "fake-agent"
    script.parent.mkdir()
    script.write_text(f"#!{PY}\nimport os, sys\n"
                      f"os.execv({PY!r}, [{PY!r}, {STANDIN!r}, *sys.argv[1:]])\n")
    script.chmod(0o755)
    past = time.time() - 3600
    os.utime(script, (past, past))
    node.agent("a", str(script), ready="alive:0.1")
    node.supervisor_opts["code_check_interval"] = "1"
    node.start(env={"WATCHDOG_USEC": "200000"})
    sup = node.proc.pid

    def status_lines():
        return [f["STATUS"] for pid, f in node.fake_notify.messages
                if pid == sup and "STATUS" in f]

    future = time.time() + 30  # the upgrade, after the agent started
    os.utime(script, (future, future))
    node.fake_notify.wait_for(lambda pid, f: pid == sup and "a restart pending: code changed"
                              in f.get("STATUS", ""), timeout=10)
    os.utime(script, (past, past))  # the next process starts after any mtime we set
    seen = len(status_lines())
    reply = node.ctl({"cmd": "restart", "agents": ["a"]})
    assert reply["ok"], reply
    first_ready = wait_until(lambda: next((line for line in status_lines()[seen + 1:]
                                           if line.startswith("1/1 ready")), None),
                             10, what="the first all-ready STATUS= line after the restart")
    assert "pending" not in first_ready, status_lines()[seen:]
    assert node.agent_status("a")["restart_pending"] == ""
