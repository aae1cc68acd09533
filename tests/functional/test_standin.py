"""The stand-in agent does what its flags promise (other tests rely on it)."""

from __future__ import annotations

import os
import signal
import socket

import pytest

from hvsupervisor.process.children import spawn
from hvsupervisor.systemd.journal import log_file_fd
from tests.functional.test_process_io import PY, STANDIN, reap_blocking, wait_until
from tests.util import WaitTimeout, kill_and_reap

pytestmark = pytest.mark.functional


@pytest.fixture
def run(tmp_path):
    """Spawn the stand-in with output to tmp_path/out; kill leftovers at teardown."""
    pids: list[int] = []
    out = tmp_path / "out"

    def start(*args: str, env: dict | None = None) -> int:
        fd = log_file_fd(str(out))
        try:
            pid = spawn([PY, STANDIN, *args], env or dict(os.environ), fd, fd)
        finally:
            os.close(fd)
        pids.append(pid)
        return pid

    start.out = out  # type: ignore[attr-defined]
    yield start
    kill_and_reap(pids)


def output(run) -> str:
    return run.out.read_text() if run.out.exists() else ""


def test_sigterm_exits_zero_with_stop_line(run):
    pid = run("--print", "hi")
    wait_until(lambda: "hi" in output(run))
    os.kill(pid, signal.SIGTERM)
    assert reap_blocking(pid) == (0, None)
    assert "standin: stopping on SIGTERM" in output(run)


def test_ignore_sigterm_needs_kill(run):
    pid = run("--ignore-sigterm", "--print", "up")
    wait_until(lambda: "up" in output(run))
    os.kill(pid, signal.SIGTERM)
    with pytest.raises(WaitTimeout):
        reap_blocking(pid, timeout=0.3)  # still alive: that is the point
    os.kill(pid, signal.SIGKILL)
    assert reap_blocking(pid) == (None, signal.SIGKILL)


def test_hang_ignores_term_and_int(run):
    pid = run("--hang")
    wait_until(lambda: "hanging" in output(run))
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    with pytest.raises(WaitTimeout):
        reap_blocking(pid, timeout=0.3)
    os.kill(pid, signal.SIGKILL)
    assert reap_blocking(pid) == (None, signal.SIGKILL)


def test_crash_after_with_exit_code(run):
    pid = run("--crash-after", "0.05", "--exit-code", "42")
    assert reap_blocking(pid) == (42, None)
    assert "crashing with exit code 42" in output(run)


def test_listen_unix_after_ready_delay(run, tmp_path):
    path = str(tmp_path / "api.sock")
    pid = run("--ready-after", "0.1", "--listen-unix", path)

    def accepts() -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(path)
            except OSError:
                return False
            return True

    wait_until(accepts)
    assert "standin: ready" in output(run)
    for _ in range(200):  # more than the backlog: the stand-in accepts
        assert accepts()
    os.kill(pid, signal.SIGTERM)
    assert reap_blocking(pid) == (0, None)


def test_listen_tcp(run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pid = run("--listen-tcp", f"127.0.0.1:{port}")

    def accepts() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    wait_until(accepts)
    os.kill(pid, signal.SIGTERM)
    assert reap_blocking(pid) == (0, None)


def test_flood_writes_and_reports(run):
    pid = run("--flood", "0.2", "--crash-after", "0", "--exit-code", "0")
    assert reap_blocking(pid, timeout=10) == (0, None)
    text = output(run)
    done = [line for line in text.splitlines() if line.startswith("standin: flood done")]
    assert done and int(done[0].split("bytes=")[1]) > 100_000
