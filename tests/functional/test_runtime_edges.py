"""Issue 10 sections 3, 7, 8 on a real ``hvsupervisor run`` with stand-in agents.

Reload as one transaction that returns when it is in effect; a killed
supervisor leaves no duplicate agents; input at the edges (early signals,
hostile control-socket clients, probes that raise, early READY=1).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import time

import pytest

from tests.fixtures.supervisor import json_out, standin
from tests.util import kill_quietly, pid_alive, read_pid, wait_until

pytestmark = pytest.mark.functional


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notify_from(node, key: str) -> list[dict]:
    return [f for pid, f in node.fake_notify.messages if pid == node.proc.pid and key in f]


def _raw(node, data: bytes, timeout: float = 10) -> dict:
    """Send raw bytes on the control socket; return the parsed reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(node.run_dir / "control.sock"))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading it all
        buf = b""
        while not buf.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    assert buf, "no reply"
    return json.loads(buf)


def _unix_sockets_at(path) -> int:
    """Sockets (listening or accepted) bound at ``path``, from /proc/net/unix."""
    with open("/proc/net/unix") as fh:
        return sum(1 for line in fh if line.rstrip("\n").endswith(" " + str(path)))


def _status_when_up(node) -> dict | None:
    from hvsupervisor.control.client import ControlError

    try:
        return node.status()
    except ControlError:
        return None


def _processes_with(marker: str) -> list[int]:
    """Live pids whose command line contains ``marker`` (zombies excluded)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmd and pid_alive(int(name)):
            found.append(int(name))
    return found


# ------------------------------------------------------------------ section 3: reload


def test_reload_failing_after_reloading_ends_in_ready_and_keeps_state(node):
    """A reload that fails after RELOADING=1 (here: an added agent's notify socket
    cannot be bound) still ends in READY=1 with the error in STATUS=, and nothing of it
    is applied: not the valid change to a, not agent c."""
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    before = node.pids()
    (node.run_dir / "notify" / "c.sock").mkdir()  # in the way of c's socket
    node.snippet("svc/a.ini", "[a]\nmode = new\n")
    node.snippet("hvsupervisor.conf.d/50-c.conf", f"""\
        [DEFAULT]
        enabled_agents = a,b,c
        [agent:c]
        command = {standin()}
        config_files = svc/common.conf
        ready = alive:0.1
        """)
    cp = node.hv("reload")
    assert cp.returncode == 1, cp.stdout + cp.stderr
    assert "agent c" in cp.stderr and "Traceback" not in cp.stderr
    reloading = _notify_from(node, "RELOADING")
    assert len(reloading) == 1
    # READY=1 after the RELOADING=1: systemd is not left mid-reload.
    msgs = [f for pid, f in node.fake_notify.messages if pid == node.proc.pid]
    after = msgs[msgs.index(reloading[0]) + 1:]
    ready_after = [f for f in after if f.get("READY") == "1"]
    assert ready_after and "reload refused" in ready_after[0]["STATUS"]
    assert node.pids() == before  # a not restarted, c not added
    plan_digest = {a["name"]: a["digest"] for a in node.status()["agents"]}
    # The old state is whole: a second, good reload applies both changes.
    (node.run_dir / "notify" / "c.sock").rmdir()
    reply = json_out(node.hv("reload", "--format", "json"))
    assert reply["restarted"] == ["a"] and reply["started"] == ["c"]
    assert reply["agents"] == {"a": "ready", "c": "ready"}
    assert node.status()["agents"][0]["digest"] != plan_digest["a"]


def test_reload_refuses_a_dir_change_naming_the_option(node, tmp_path):
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    node.snippet("hvsupervisor.conf.d/10-logs.conf", f"[DEFAULT]\nlog_dir = {tmp_path}/elsewhere\n")
    cp = node.hv("reload")
    assert cp.returncode == 1
    assert "[DEFAULT] log_dir changed" in cp.stderr and "needs a restart" in cp.stderr
    wait_until(lambda: any("log_dir changed" in s for s in node.status_messages()))


def test_reload_refuses_a_change_to_our_own_logging_naming_the_option(node):
    """[DEFAULT] debug configures our own oslo.log once at start: a reload that kept
    the old value silently would say it applied a change it did not."""
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    before = node.pids()
    node.snippet("hvsupervisor.conf.d/10-debug.conf", "[DEFAULT]\ndebug = true\n")
    cp = node.hv("reload")
    assert cp.returncode == 1
    assert "[DEFAULT] debug changed" in cp.stderr and "needs a restart" in cp.stderr
    assert node.pids() == before


def test_reload_applies_supervisor_restart_settings(node):
    """[supervisor] flap_max lowered by a reload applies to the running crash loop."""
    node.supervisor_opts.update(flap_max="1000", flap_window="60", restart_sec="0.2",
                                restart_max_delay="0.2")
    node.agent("crasher", standin("--crash-after", "0.2"), ready="alive:5")
    node.start(wait_ready=False)
    node.wait_agent("crasher", lambda a: a["restarts"] >= 2)
    node.snippet("hvsupervisor.conf.d/10-flap.conf", "[supervisor]\nflap_max = 2\n")
    json_out(node.hv("reload", "--format", "json"))
    failed = node.wait_agent("crasher", lambda a: a["state"] == "failed", timeout=10)
    assert "gave up after" in failed["reason"]


def test_agent_reenabled_while_stopping_comes_back(node):
    node.supervisor_opts["reload_timeout"] = "0.5"
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin("--ignore-sigterm"), ready="alive:0.1", stop_timeout="3")
    node.start()
    old_b = node.agent_status("b")["pid"]
    only_a = node.snippet("hvsupervisor.conf.d/10-only-a.conf", "[DEFAULT]\nenabled_agents = a\n")
    cp = node.hv("reload", "--format", "json")
    reply = json.loads(cp.stdout)
    assert reply["stopped"] == ["b"]
    assert reply["agents"]["b"].startswith("not settled: stopping")  # bounded by reload_timeout
    assert cp.returncode == 3
    assert node.agent_status("b")["state"] == "stopping"
    # b back in, and a reload_timeout that covers b's SIGKILL at 3 s: the new value
    # applies to the very reload that sets it.
    only_a.write_text("[supervisor]\nreload_timeout = 15\n")
    reply = json_out(node.hv("reload", "--format", "json"))
    assert reply["started"] == ["b"] and reply["agents"] == {"b": "ready"}
    new = node.agent_status("b")
    assert new["ready"] and new["pid"] != old_b and not pid_alive(old_b)


def test_reload_returns_when_restarted_agents_are_ready(node):
    node.agent("a", standin("--ready-after", "1.0"), ready="notify")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    old = node.pids()
    node.snippet("svc/a.ini", "[a]\nmode = new\n")
    t0 = time.monotonic()
    reply = json_out(node.hv("reload", "--format", "json"))
    took = time.monotonic() - t0
    assert reply["restarted"] == ["a"] and reply["agents"] == {"a": "ready"}
    assert reply["settled"] is True
    a = node.agent_status("a")  # in effect when reload returned, not later
    assert a["ready"] and a["pid"] != old["a"]
    assert took >= 1.0
    # The table says the same per agent.
    node.snippet("svc/a.ini", "[a]\nmode = newer\n")
    cp = node.hv("reload")
    assert cp.returncode == 0 and "  a: ready" in cp.stdout


def test_reload_reply_names_an_agent_that_did_not_settle(node):
    node.supervisor_opts["reload_timeout"] = "1"
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    # A new command that never sends the READY=1 its new rule waits for.
    node.snippet("hvsupervisor.conf.d/10-slow.conf",
                 f"[agent:a]\ncommand = {standin('--print', 'new')}\nready = notify\n")
    cp = node.hv("reload", "--format", "json")
    assert cp.returncode == 3
    reply = json.loads(cp.stdout)
    assert reply["agents"]["a"].startswith("not settled: starting")
    assert "reload_timeout (1s) passed" in reply["agents"]["a"]
    assert reply["settled"] is False


def test_reload_overlapping_a_stop_leaves_nothing_running(node, tmp_path):
    """A reload in flight when SIGTERM arrives, and another queued behind it: the queued
    one is refused, and the stop leaves no process (no agent added behind its back)."""
    node.agent("a", standin(), ready="alive:2")
    node.start()
    node.snippet("svc/a.ini", "[a]\nmode = new\n")  # reload 1 settles after a's 2 s
    first = subprocess.Popen([*node.cli(), "--run-dir", str(node.run_dir), "reload"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node.wait_agent("a", lambda a: a["state"] == "starting")
    cpid = tmp_path / "c.pid"
    node.snippet("hvsupervisor.conf.d/50-c.conf", f"""\
        [DEFAULT]
        enabled_agents = a,c
        [agent:c]
        command = {standin("--pidfile", str(cpid))}
        config_files = svc/common.conf
        ready = alive:0.1
        """)
    second = subprocess.Popen([*node.cli(), "--run-dir", str(node.run_dir), "reload"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: "event=reload restarted=['a']" in node.output(), 10)
    # Both reload clients connected (listener + 2 accepted sockets at the path):
    # the second one waits for the first to settle.
    wait_until(lambda: _unix_sockets_at(node.run_dir / "control.sock") >= 3, 10,
               "the second reload connected")
    node.proc.send_signal(signal.SIGTERM)
    try:
        assert node.proc.wait(30) == 0
        first.wait(30)
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1 and "stopping" in err
        assert not cpid.exists(), "an agent was started by a reload during the stop"
        assert _processes_with(str(node.defaults)) == []
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
                p.wait()
        if cpid.exists():
            kill_quietly(int(cpid.read_text()))


def test_agent_in_backoff_does_not_respawn_during_ordered_stop(node, tmp_path):
    """x crash-loops while d (which depends on it) takes 3 s to stop: x must not be
    spawned again once the stop has begun."""
    node.supervisor_opts.update(restart_sec="0.3", restart_max_delay="0.3")
    node.agent("x", standin("--crash-after", "0.5"), ready="alive:0.1")
    node.agent("d", standin("--ignore-sigterm"), ready="alive:0.1", after="x",
               stop_timeout="3")
    node.start(wait_ready=False)
    node.wait_agent("d", lambda a: a["ready"])
    node.wait_agent("x", lambda a: a["restarts"] >= 1)
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(30) == 0
    out = node.output()
    stop_at = out.index("event=stopping")
    assert "event=spawn agent=x" not in out[stop_at:], out[stop_at:]


# --------------------------------------------------------- section 7: killed supervisor


def test_killed_supervisor_leaves_no_duplicates(node, tmp_path):
    node.agent("a", standin("--print", "marker-agent-a", "--pidfile", str(tmp_path / "a.pid")),
               ready="alive:0.1")
    node.agent("b", standin("--ignore-sigterm", "--print", "marker-agent-b",
                            "--setsid-grandchild", str(tmp_path / "gc.pid")),
               ready="alive:0.1", stop_timeout="1")
    node.start()
    first = node.pids()
    gc = read_pid(tmp_path / "gc.pid")
    try:
        node.proc.kill()
        node.proc.wait(10)
        assert pid_alive(first["a"]) and pid_alive(first["b"])  # orphans, as the issue says
        node.out.close()
        node.start()
        second = node.pids()
        gc2 = wait_until(lambda: (p := read_pid(tmp_path / "gc.pid")) != gc and p, 10)
        assert not pid_alive(first["a"]) and not pid_alive(first["b"])
        for name in ("a", "b"):  # b's setsid'd helpers carry its command line too
            copies = set(_processes_with(f"marker-agent-{name}")) - {gc, gc2}
            assert copies == {second[name]}
        assert "event=leftover-agent agent=b" in node.output()
        assert pid_alive(gc), "the data plane (own session) is not a duplicate agent"
        # A clean stop of the new supervisor leaves no agent either.
        assert node.stop() == 0
        assert set(_processes_with("marker-agent-")) <= {gc}
    finally:
        for pid in list(first.values()) + [gc]:
            if pid and pid_alive(pid):
                kill_quietly(pid)


def test_killed_daemon_supervisor_leaves_no_duplicates(node, tmp_path):
    node.agent("a", standin("--print", "marker-daemon-a"), ready="alive:0.1")
    node.write_catalog()
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    pidfile = node.run_dir / "hvsupervisor.pid"
    started = []
    try:
        for _ in range(2):
            cp = subprocess.run([*node.cli(), "run", "--daemon"], env=env, timeout=30,
                                capture_output=True, text=True)
            assert cp.returncode == 0, cp.stderr
            pid = wait_until(lambda: (t := pidfile.read_text().split()) and t[0].isdigit()
                             and int(t[0]) not in started and pid_alive(int(t[0]))
                             and int(t[0]), 10, "daemon pid")
            started.append(pid)
            wait_until(lambda: (st := _status_when_up(node)) and st["agents"][0]["ready"], 15,
                       "the daemon's agent ready")
            assert len(_processes_with("marker-daemon-a")) == 1
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda p=pid: not pid_alive(p), 10)
    finally:
        for pid in _processes_with("marker-daemon-a") + started:
            kill_quietly(pid)


def test_second_supervisor_for_the_same_state_dir_refused(node, tmp_path):
    node.agent("a", standin(), ready="alive:0.1")
    node.start()
    other = tmp_path / "other-run"
    cp = node.hv("--run-dir", str(other), "run", timeout=30)
    assert cp.returncode == 1
    assert f"already running for state dir {node.state_dir}" in cp.stderr
    assert f"pid {node.proc.pid}" in cp.stderr and str(node.run_dir) in cp.stderr
    assert len(node.status()["agents"]) == 1


# --------------------------------------------------------------- section 8: edges


def _sigcgt(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("SigCgt:"):
                return int(line.split()[1], 16)
    return 0


def test_sighup_storm_during_startup_does_not_kill(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.start(wait_ready=False, wait_socket=False)
    pid = node.proc.pid
    t0 = time.monotonic()
    # The interpreter is up once Python's own SIGINT handler is installed; from
    # then on (and from 0.1 s) a HUP must never kill run, until READY=1.
    wait_until(lambda: _sigcgt(pid) & (1 << (signal.SIGINT - 1)), 10, "python init")
    wait_until(lambda: time.monotonic() - t0 >= 0.1, 1)
    sent = 0
    while not any(f.get("READY") == "1" for p, f in node.fake_notify.messages if p == pid):
        assert node.proc.poll() is None, f"rc {node.proc.returncode} after {sent} SIGHUPs"
        node.proc.send_signal(signal.SIGHUP)
        sent += 1
        time.sleep(0.02)  # a storm, not synchronisation
        assert time.monotonic() - t0 < 30
    assert sent >= 3
    assert node.proc.poll() is None
    assert node.agent_status("a")["ready"]


def test_control_socket_rejects_bad_input_with_a_reply(node):
    node.agent("a", standin(), ready="alive:0.1")
    node.agent("b", standin(), ready="alive:0.1")
    node.start()
    before = node.pids()
    for data, text in ((b"[1, 2]\n", "expected a JSON object"),
                       (b"\"status\"\n", "expected a JSON object"),
                       (b"{not json\n", "not JSON"),
                       (b"x" * (70 * 1024) + b"\n", "longer than 65536 bytes"),
                       (b'{"cmd":"stop","agents":"ab"}\n', "agents must be a list"),
                       (b'{"cmd":"stop","agents":[1]}\n', "agents must be a list"),
                       (b'{"cmd":"frobnicate"}\n', "unknown command")):
        reply = _raw(node, data)
        assert reply["ok"] is False and text in reply["error"], (data[:40], reply)
    assert node.pids() == before  # "ab" stopped neither a nor b
    assert node.status()["ok"] is True
    assert "Traceback" not in node.output()


def test_idle_clients_cannot_exhaust_fds(node, tmp_path):
    """400 idle control clients against a 256-fd limit: the agent still respawns,
    status works again once they leave, and the log stays small."""
    node.agent("a", standin("--pidfile", str(tmp_path / "a.pid")), ready="alive:0.1")
    node.start()
    resource.prlimit(node.proc.pid, resource.RLIMIT_NOFILE, (256, 256))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    clients = []
    try:
        for _ in range(400):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(node.run_dir / "control.sock"))
            clients.append(s)
        old = read_pid(tmp_path / "a.pid")
        os.kill(old, signal.SIGKILL)
        new = wait_until(lambda: (p := read_pid(tmp_path / "a.pid")) != old and p, 15,
                         "a respawned")
        assert pid_alive(new)
        wait_until(lambda: f"event=spawn agent=a pid={new}" in node.output(), 10)
    finally:
        for s in clients:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    wait_until(lambda: node.status()["ok"], 15, "status answers again")
    assert node.agent_status("a")["ready"] or node.wait_agent("a", lambda a: a["ready"])
    out = node.output()
    assert out.count("Too many open files") <= 2 and len(out) < 200_000, out[-3000:]


def test_probe_that_raises_marks_the_agent_failed(node):
    # A host name with a 64-character label: getaddrinfo's idna encoding raises
    # UnicodeError, which no probe expected.
    node.agent("a", standin(), ready=f"tcp:{'h' * 64}.example:80")
    node.start(wait_ready=False)
    a = node.wait_agent("a", lambda a: a["state"] == "failed", timeout=15)
    assert "readiness probe error" in a["reason"]
    assert a["pid"] is None
    wait_until(lambda: any("a failed: readiness probe error" in s
                           for s in node.status_messages()))
    assert "Task exception was never retrieved" not in node.output()


def test_agent_ready1_does_not_skip_its_tcp_probe(node):
    port = _free_port()
    node.agent("a", standin("--early-ready", "--ready-after", "1.5", "--listen-tcp",
                            f"127.0.0.1:{port}"), ready=f"tcp:127.0.0.1:{port}")
    node.start(wait_ready=False)
    log = node.log_dir / "a.log"
    wait_until(lambda: log.exists() and "early READY=1 sent" in log.read_text(), 10)
    node.wait_agent("a", lambda a: a["ready"], timeout=15)
    # Ready only once it listened, not on its own READY=1 1.5 s earlier.
    assert "standin: listening now" in log.read_text()
