"""The gunicorn launcher behind nova-api-metadata, with a stand-in WSGI app.

Real gunicorn, real sockets; the app is a stand-in (tests/functional/
wsgi_echo.py) because nova needs its databases. What the catalog relies on:
the app sees the agent's own argv (``--config-file``...), the port accepts
(``ready = tcp:``), and SIGTERM stops master and worker promptly with rc 0.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.util import pid_alive, wait_until

pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(importlib.util.find_spec("gunicorn") is None,
                       reason="gunicorn not installed (pip install gunicorn)"),
]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def test_app_gets_its_argv_and_sigterm_stops_it_promptly(tmp_path):
    port = _free_port()
    argv = [sys.executable, "-m", "hvsupervisor.agents.wsgi", "--app",
            "tests.functional.wsgi_echo:application", "--name", "echo-api",
            "--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5",
            "--log-file", str(tmp_path / "echo.log"), "--config-file", "/a.conf",
            "--config-file", "/b.conf"]
    log = open(tmp_path / "out", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_until(lambda: _accepts(port) or proc.poll() is not None, 30, "the port accepts")
        assert proc.poll() is None, (tmp_path / "out").read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["argv"] == ["echo-api", "--log-file", str(tmp_path / "echo.log"),
                                "--config-file", "/a.conf", "--config-file", "/b.conf"]
        worker = body["pid"]
        assert worker != proc.pid, "the app runs in a worker, not in the master"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(15)
        elapsed = time.monotonic() - t0
        assert rc == 0
        assert elapsed < 5, f"SIGTERM took {elapsed:.1f}s"
        wait_until(lambda: not pid_alive(worker), 5, "the worker to exit")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        log.close()
