"""The shipped units in a real systemd (PID 1 in a systemd-nspawn container, tests/fixtures/nspawn.py).

What users do with the service: `systemctl start|reload|restart`, `journalctl -u/-t`, drop-in
snippets. Each is driven here against a real systemd, not a fake.

1. A smoke test with a tiny Python Type=notify unit proves the harness itself.
2. The shipped hvsupervisor.service with a stand-in main process (systemd semantics of the unit
   as written: dependencies, cleanup once per boot, directories, the watchdog, KillMode=mixed).
3. The shipped unit running the real `hvsupervisor run` with stand-in agents (tests/standin.py):
   skipped until the CLI has `run`.
"""

from __future__ import annotations

import json
import pathlib
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.fixtures.nspawn import PROJECT_ROOT, Container, wait_until, write_console_script

pytestmark = pytest.mark.e2e

UNITS = PROJECT_ROOT / "units"
PY = sys.executable

# A Type=notify main process in ~20 lines of stdlib: READY=1 after a delay, STATUS= on SIGHUP,
# WATCHDOG=1 pings at half the interval (from its main loop, so SIGSTOP stops them), and a
# child that calls setsid() (to see KillMode=mixed reach it). argv: delay, child-pidfile or "-".
PROBE = textwrap.dedent(
    """\
    import os, signal, socket, sys, time
    addr = os.environ["NOTIFY_SOCKET"]
    addr = "\\0" + addr[1:] if addr.startswith("@") else addr
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    def notify(msg):
        sock.sendto(msg.encode(), addr)
    print("probe: starting", flush=True)
    if sys.argv[2] != "-":
        child = os.fork()
        if child == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(60)
        open(sys.argv[2], "w").write(str(child))
    time.sleep(float(sys.argv[1]))
    reloads = 0
    def on_hup(*_):
        global reloads
        reloads += 1
        notify(f"STATUS=reloaded {reloads}")
    signal.signal(signal.SIGHUP, on_hup)
    print("probe: sending READY=1", flush=True)
    notify("READY=1\\nSTATUS=probe ready")
    wd = int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6
    while True:
        time.sleep(wd or 60)
        if wd:
            notify("WATCHDOG=1")
    """
)


@pytest.fixture(scope="module")
def probe_script(systemd_container: Container) -> pathlib.Path:
    path = systemd_container.shared / "probe.py"
    path.write_text(PROBE)
    return path


def timed(fn, *args, **kwargs):
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# 1. The harness


def test_smoke_notify_unit(systemd_container: Container, probe_script, record_property):
    c = systemd_container
    record_property("boot_seconds", round(c.boot_seconds, 3))
    delay = 1.0
    c.install_unit(
        "smoke-probe.service",
        f"""\
[Service]
Type=notify
NotifyAccess=main
ExecStart={PY} {probe_script} {delay} -
ExecReload=/bin/kill -HUP $MAINPID
SyslogIdentifier=smoke-ident
""",
    )
    try:
        res, took = timed(c.systemctl, "start", "smoke-probe.service")
        assert res.returncode == 0, res.stderr
        # `systemctl start` of a Type=notify unit returns only once READY=1 arrived.
        assert took >= delay, f"start returned after {took:.2f}s, before READY=1"
        assert c.show("smoke-probe.service", "ActiveState") == "active"
        assert c.show("smoke-probe.service", "StatusText") == "probe ready"
        record_property("start_to_ready_seconds", round(took, 3))

        c.systemctl("reload", "smoke-probe.service", check=True)
        wait_until(
            lambda: c.show("smoke-probe.service", "StatusText") == "reloaded 1",
            10, what="STATUS= after reload",
        )  # fmt: skip

        by_unit = c.journal("-u", "smoke-probe.service")
        assert "probe: sending READY=1" in by_unit
        by_ident = c.journal("-t", "smoke-ident")
        assert "probe: starting" in by_ident and "probe: sending READY=1" in by_ident
    finally:
        c.systemctl("stop", "smoke-probe.service")
        c.remove_unit("smoke-probe.service")
