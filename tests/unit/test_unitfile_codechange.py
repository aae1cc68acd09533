"""The unit's effective TimeoutStopSec= (fragment + drop-ins), and code-change detection."""

import os
import subprocess
import sys
import time

import pytest

from hvsupervisor.process import codechange
from hvsupervisor.systemd import unitfile


def test_timespans():
    assert unitfile.parse_timespan("120s") == 120
    assert unitfile.parse_timespan("3min 30s") == 210
    assert unitfile.parse_timespan("90") == 90
    assert unitfile.parse_timespan("infinity") == 0
    with pytest.raises(ValueError):
        unitfile.parse_timespan("soon")


def test_dropin_overrides_the_fragment_and_names_its_line(tmp_path):
    lib = tmp_path / "lib/systemd/system"
    lib.mkdir(parents=True)
    (lib / "hvsupervisor.service").write_text("[Service]\nTimeoutStopSec=240s\n")
    assert unitfile.timeout_stop(tmp_path) == (240, f"{lib}/hvsupervisor.service:2")
    dropdir = tmp_path / "etc/systemd/system/hvsupervisor.service.d"
    dropdir.mkdir(parents=True)
    (dropdir / "50-short.conf").write_text("# site\n[Service]\nTimeoutSec=1min\n")
    assert unitfile.timeout_stop(tmp_path) == (60, f"{dropdir}/50-short.conf:3")
    assert unitfile.timeout_stop(tmp_path / "nowhere") is None


def test_code_changed_after_start_is_seen(tmp_path):
    """A fake venv: a console script and the dist-info of the package it imports."""
    bindir, site = tmp_path / "bin", tmp_path / "lib/python3.11/site-packages"
    bindir.mkdir()
    dist = site / "fakepkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "RECORD").write_text("")
    script = bindir / "fake-agent"
    script.write_text(f"#!{sys.executable}\nfrom fakepkg.cmd import main\n")
    proc = subprocess.Popen(["sleep", "30"])
    try:
        argv = [str(script), "--config-file", "x"]
        assert codechange.code_files(argv) == [script, dist / "RECORD"]
        past = time.time() - 3600
        for f in (script, dist / "RECORD"):
            os.utime(f, (past, past))
        assert codechange.changed_since(argv, proc.pid) is None
        future = time.time() + 5  # an upgrade after the process started
        os.utime(dist / "RECORD", (future, future))
        assert codechange.changed_since(argv, proc.pid) == \
            "code changed after start: fakepkg-1.0.dist-info"
    finally:
        proc.kill()
        proc.wait()
