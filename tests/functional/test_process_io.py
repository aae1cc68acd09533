"""The process/systemd I/O shell against real processes (tests/standin.py).

Nothing is mocked: children are real, sockets are real; only systemd itself
is replaced by the fakes in tests/fixtures/fakesystemd.py (no systemd runs
as PID 1 here).
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from hvsupervisor.core.lifecycle import describe_exit
from hvsupervisor.process.children import Reaper, SpawnError, child_env, spawn
from hvsupervisor.systemd.journal import journal_available, journal_stream, log_file_fd
from hvsupervisor.systemd.notify import NotifyListener, SystemdNotifier
from tests.util import kill_and_reap, wait_until

pytestmark = pytest.mark.functional

ROOT = pathlib.Path(__file__).resolve().parents[2]
STANDIN = str(ROOT / "tests" / "standin.py")
PY = sys.executable


def reap_blocking(pid: int, timeout: float = 5.0) -> tuple[int | None, int | None]:
    """Reap one child of the test process (no Reaper installed)."""
    def done():
        wpid, status = os.waitpid(pid, os.WNOHANG)
        return (wpid, status) if wpid else None
    _, status = wait_until(done, timeout)
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


@pytest.fixture
def devnull():
    fd = os.open(os.devnull, os.O_WRONLY)
    yield fd
    os.close(fd)


@pytest.fixture
def kill_after():
    """Pids to SIGKILL and reap at teardown if a test failed half way."""
    pids: list[int] = []
    yield pids
    kill_and_reap(pids)


def test_child_sees_scrubbed_env(tmp_path, devnull, kill_after):
    base = dict(os.environ, NOTIFY_SOCKET="/nonexistent/notify", WATCHDOG_USEC="1000000",
                WATCHDOG_PID="1", LISTEN_FDS="1", LISTEN_PID="1", LISTEN_FDNAMES="x",
                JOURNAL_STREAM="1:2", OS_DEFAULT__DEBUG="true", OS_OVS__BRIDGE="br-x",
                OS_CLOUD="kept")
    dump = tmp_path / "env.json"
    pid = spawn([PY, STANDIN, "--dump-env", str(dump), "--crash-after", "0", "--exit-code", "0"],
                child_env(base, {"OS_OVS__BRIDGE": "br-plan", "HV_AGENT": "x"}),
                devnull, devnull)
    kill_after.append(pid)
    assert reap_blocking(pid) == (0, None)
    env = json.loads(dump.read_text())
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES", "JOURNAL_STREAM", "OS_DEFAULT__DEBUG"):
        assert key not in env
    assert env["OS_OVS__BRIDGE"] == "br-plan"
    assert env["HV_AGENT"] == "x"
    assert env["OS_CLOUD"] == "kept"


def test_spawn_new_session_devnull_stdin_no_leaked_fds(tmp_path, devnull, kill_after):
    leak_r, leak_w = os.pipe()
    os.set_inheritable(leak_w, True)  # like a socket-activation fd from systemd
    pidfile = tmp_path / "pid"
    try:
        pid = spawn([PY, STANDIN, "--pidfile", str(pidfile)], dict(os.environ),
                    devnull, devnull)
    finally:
        os.close(leak_w)
    kill_after.append(pid)
    wait_until(pidfile.exists)
    assert os.getsid(pid) == pid != os.getsid(0)
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
    targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds if fd > 2]
    assert not any(t.startswith("pipe:") for t in targets), targets
    os.close(leak_r)
    os.kill(pid, signal.SIGTERM)
    assert reap_blocking(pid) == (0, None)


def test_spawn_default_signal_dispositions(tmp_path):
    """SIG_IGN survives exec: Python ignores SIGPIPE/SIGXFSZ, an operator may ignore
    SIGHUP (nohup). The agent must start with all defaults and an empty mask."""
    out = tmp_path / "status"
    fd = log_file_fd(str(out))
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        pid = spawn(["grep", "^Sig", "/proc/self/status"], {"PATH": "/usr/bin:/bin"}, fd, fd)
    finally:
        signal.signal(signal.SIGHUP, old)
        os.close(fd)
    assert reap_blocking(pid) == (0, None)
    fields = dict(line.split(":\t") for line in out.read_text().splitlines())
    assert int(fields["SigIgn"], 16) == 0
    assert int(fields["SigBlk"], 16) == 0


@pytest.mark.parametrize("argv0,reason", [
    ("/nonexistent/agent", "no such file"),
    ("no-such-agent-xyz", "not found in PATH"),
    ("{tmp}/plain.txt", "not executable"),
    ("{tmp}/garbage.bin", "Exec format error"),
    ("/etc", "is a directory"),
])
def test_spawn_error_is_clear(argv0, reason, devnull, tmp_path):
    (tmp_path / "plain.txt").write_text("not a program\n")
    (tmp_path / "garbage.bin").write_bytes(b"\x00\x01garbage")
    (tmp_path / "garbage.bin").chmod(0o755)
    argv0 = argv0.format(tmp=tmp_path)
    with pytest.raises(SpawnError) as err:
        spawn([argv0, "--x"], {"PATH": "/usr/bin:/bin"}, devnull, devnull)
    assert err.value.argv0 == argv0
    assert reason in str(err.value)
    assert str(err.value).startswith(f"cannot start {argv0}: ")


def test_spawn_missing_cwd_is_clear(devnull, tmp_path):
    with pytest.raises(SpawnError, match="working directory .* does not exist"):
        spawn(["true"], {"PATH": "/usr/bin:/bin"}, devnull, devnull, cwd=str(tmp_path / "no"))


def test_spawn_with_cwd(tmp_path, devnull, kill_after):
    pidfile = tmp_path / "pid"
    pid = spawn([PY, STANDIN, "--pidfile", "pid"], dict(os.environ), devnull, devnull,
                cwd=str(tmp_path))
    kill_after.append(pid)
    wait_until(pidfile.exists)
    assert os.readlink(f"/proc/{pid}/cwd") == str(tmp_path)
    assert os.getsid(pid) == pid
    os.kill(pid, signal.SIGTERM)
    assert reap_blocking(pid) == (0, None)


def test_reaper_reports_sigkill_promptly(tmp_path, devnull, kill_after):
    pidfile = tmp_path / "pid"

    async def scenario():
        loop = asyncio.get_running_loop()
        exited: asyncio.Future = loop.create_future()
        others = []

        def on_exit(pid, rc, sig):
            if pid == agent and not exited.done():
                exited.set_result((rc, sig, time.monotonic()))
            else:
                others.append(pid)

        reaper = Reaper(on_exit)
        reaper.install()
        try:
            agent = spawn([PY, STANDIN, "--pidfile", str(pidfile)], dict(os.environ),
                          devnull, devnull)
            kill_after.append(agent)
            # no Reaper poll needed: wait for the pidfile in the loop's default executor
            await loop.run_in_executor(None, wait_until, pidfile.exists)
            t0 = time.monotonic()
            os.kill(agent, signal.SIGKILL)
            rc, sig, t1 = await asyncio.wait_for(exited, 5)
            return rc, sig, (t1 - t0) * 1000, agent
        finally:
            reaper.close()

    rc, sig, ms, agent = asyncio.run(scenario())
    assert (rc, sig) == (None, 9)
    assert describe_exit(rc, sig) == "signal 9 (SIGKILL)"
    assert ms < 500, f"exit reported after {ms:.1f} ms"
    assert not os.path.exists(f"/proc/{agent}")  # reaped, not a zombie


def test_reaper_reports_exit_code_and_coalesced_signals(devnull):
    async def scenario():
        loop = asyncio.get_running_loop()
        seen: dict[int, tuple] = {}
        all_done = loop.create_future()

        def on_exit(pid, rc, sig):
            seen[pid] = (rc, sig)
            if set(pids) <= set(seen) and not all_done.done():
                all_done.set_result(None)

        pids: list[int] = []
        reaper = Reaper(on_exit)
        reaper.install()
        try:
            for code in (0, 3, 7, 3, 0):
                pids.append(spawn([PY, STANDIN, "--crash-after", "0", "--exit-code", str(code)],
                                  dict(os.environ), devnull, devnull))
            await asyncio.wait_for(all_done, 10)
        finally:
            reaper.close()
        return [seen[p] for p in pids]

    assert asyncio.run(scenario()) == [(0, None), (3, None), (7, None), (3, None), (0, None)]


def test_subreaper_descendants_and_signal_all(tmp_path):
    """A setsid() grandchild outlives its agent; we find it and stop it.

    Runs in a separate process (see subreaper_probe.py for why).
    """
    pidfile = tmp_path / "gc.pid"
    out = subprocess.run([PY, "-m", "tests.functional.subreaper_probe", STANDIN, str(pidfile)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    gc = r["grandchild"]
    try:
        assert r["agent_exit"] == [3, None]
        assert r["grandchild_ppid"] == r["me"]  # reparented to the subreaper
        # a session of its own (setsid in the middle process): no pgid of the agent finds it
        assert r["grandchild_sid"] not in (r["agent"], os.getsid(0))
        assert str(gc) in r["descendants"]
        assert "standin.py" in r["descendants"][str(gc)]
        assert gc in r["sent"]
        assert r["grandchild_exit"] == [None, signal.SIGTERM]
        assert r["grandchild_in_proc"] is False
        assert r["left"] == []
    finally:
        if os.path.exists(f"/proc/{gc}"):
            os.kill(gc, signal.SIGKILL)
    assert not os.path.exists(f"/proc/{gc}")


def test_notify_listener_attributes_pid(tmp_path, devnull, kill_after):
    sock_path = str(tmp_path / "agent.notify")

    async def scenario():
        loop = asyncio.get_running_loop()
        got: list[tuple[int, dict]] = []
        both = loop.create_future()

        def on_message(pid, fields):
            got.append((pid, fields))
            roles = {f.get("X_ROLE") for _, f in got if f.get("READY") == "1"}
            if {"main", "grandchild"} <= roles and not both.done():
                both.set_result(None)

        listener = NotifyListener(sock_path, on_message)
        assert oct(os.stat(sock_path).st_mode & 0o777) == "0o600"
        try:
            env = child_env(os.environ, {"NOTIFY_SOCKET": sock_path})
            agent = spawn([PY, STANDIN, "--grandchild-notify", "--ready-after", "0",
                           "--status", "starting"], env, devnull, devnull)
            kill_after.append(agent)
            await asyncio.wait_for(both, 10)
        finally:
            listener.close()
        return agent, got

    agent, got = asyncio.run(scenario())
    assert not os.path.exists(sock_path)  # close() unlinks
    main = [(p, f) for p, f in got if f.get("X_ROLE") == "main"]
    grand = [(p, f) for p, f in got if f.get("X_ROLE") == "grandchild"]
    assert main[0][0] == agent and main[0][1]["READY"] == "1"
    assert int(main[0][1]["X_PID"]) == agent
    # the grandchild's READY=1 carries its own pid: the caller can reject it
    assert grand[0][0] != agent and grand[0][0] == int(grand[0][1]["X_PID"])
    assert (agent, {"STATUS": "starting"}) in got
    os.kill(agent, signal.SIGTERM)
    assert reap_blocking(agent) == (0, None)


def test_notify_listener_ignores_garbage_and_survives(tmp_path):
    import socket

    sock_path = str(tmp_path / "n")

    async def scenario():
        loop = asyncio.get_running_loop()
        got = []
        done = loop.create_future()

        def on_message(pid, fields):
            got.append((pid, fields))
            if fields.get("READY") and not done.done():
                done.set_result(None)

        listener = NotifyListener(sock_path, on_message)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                s.connect(sock_path)
                s.send(b"\x00\xff garbage without equals")
                s.send(b"X" * 10000)  # oversized: dropped
                s.send(b"READY=1")
            await asyncio.wait_for(done, 5)
        finally:
            listener.close()
        return got

    assert asyncio.run(scenario()) == [(os.getpid(), {"READY": "1"})]


def test_systemd_notifier_against_fake(fake_notify, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", fake_notify.path)
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = SystemdNotifier()
    assert notifier.enabled
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        assert key not in os.environ  # nothing we spawn can inherit it
    assert notifier.watchdog_interval() == 10.0

    me = os.getpid()
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.ready_with_status("3/6 agents ready, café")
    assert notifier.reloading()
    assert notifier.ready()
    assert notifier.watchdog()
    assert notifier.stopping("stopping\nagents")

    pid, f = fake_notify.wait_for(lambda p, f: "STATUS" in f and f.get("READY") == "1")
    assert pid == me and f["STATUS"] == "3/6 agents ready, cafe"
    _, f = fake_notify.wait_for(lambda p, f: "RELOADING" in f)
    assert f["RELOADING"] == "1"
    assert before <= int(f["MONOTONIC_USEC"]) <= time.clock_gettime_ns(
        time.CLOCK_MONOTONIC) // 1000
    fake_notify.wait_for(lambda p, f: f == {"READY": "1"})
    fake_notify.wait_for(lambda p, f: f == {"WATCHDOG": "1"})
    _, f = fake_notify.wait_for(lambda p, f: "STOPPING" in f)
    assert f == {"STOPPING": "1", "STATUS": "stopping agents"}


def test_journal_stream_delivers_lines(fake_journal, kill_after):
    assert journal_available(fake_journal.path)
    assert not journal_available(fake_journal.path + ".missing")
    fd = journal_stream("neutron-l3-agent", 6, path=fake_journal.path)
    try:
        pid = spawn([PY, STANDIN, "--print", "hello journal", "--crash-after", "0",
                     "--exit-code", "0"], dict(os.environ), fd, fd)
    finally:
        os.close(fd)
    kill_after.append(pid)
    assert reap_blocking(pid) == (0, None)
    fake_journal.wait_for_line("neutron-l3-agent", "hello journal")
    fake_journal.wait_for_line("neutron-l3-agent", "standin: crashing")
    stream = next(s for s in fake_journal.streams if s.identifier == "neutron-l3-agent")
    assert (stream.unit_id, stream.priority, stream.level_prefix, stream.forward) == (
        "", 6, 0, (0, 0, 0))
    lines = fake_journal.lines("neutron-l3-agent")
    assert lines[0].startswith("standin: started pid=")


def test_journal_stream_missing_socket_raises(tmp_path):
    with pytest.raises(OSError):
        journal_stream("x", path=str(tmp_path / "nope"))


def test_big_line_through_log_file_fd(tmp_path, kill_after):
    size = 10 * 1024 * 1024
    log = tmp_path / "agent.out"
    fd = log_file_fd(str(log))
    assert oct(os.fstat(fd).st_mode & 0o777) in ("0o640", "0o600", "0o640")
    try:
        pid = spawn([PY, STANDIN, "--big-line", str(size), "--crash-after", "0",
                     "--exit-code", "0"], dict(os.environ), fd, fd)
    finally:
        os.close(fd)
    kill_after.append(pid)
    assert reap_blocking(pid, timeout=30) == (0, None)
    lines = log.read_bytes().split(b"\n")
    assert lines[0].startswith(b"standin: started")
    assert lines[1] == b"B" * size
    assert lines[2].startswith(b"standin: crashing")
    assert not os.stat(log).st_mode & 0o007  # nothing for "others"


def test_reaper_install_reaps_children_that_exited_before(devnull):
    pid = spawn(["true"], {"PATH": "/usr/bin:/bin"}, devnull, devnull)
    wait_until(lambda: pathlib.Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z")

    async def scenario():
        seen = []
        reaper = Reaper(lambda p, rc, sig: seen.append((p, rc, sig)))
        reaper.install()  # no SIGCHLD will come any more: install must reap
        reaper.close()
        return seen

    assert (pid, 0, None) in asyncio.run(scenario())


def test_systemd_notifier_unreachable_socket_is_disabled(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert notifier.ready() is False
    assert "NOTIFY_SOCKET" not in os.environ
    assert "cannot connect to NOTIFY_SOCKET" in caplog.text


def test_systemd_notifier_abstract_socket(monkeypatch):
    import socket

    name = f"hvsup-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        srv.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = SystemdNotifier()
        assert notifier.ready_with_status("ok")
        assert srv.recv(4096) == b"READY=1\nSTATUS=ok"
