"""`hvsupervisor install-units`: units copied, and drop-ins naming this install's binary."""

import shutil
import subprocess

import pytest

from hvsupervisor.cmd import install_units


def test_venv_install_gets_dropins_that_systemd_accepts(tmp_path):
    exe = tmp_path / "venv/bin/hvsupervisor"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    written = install_units.install(tmp_path / "root", str(exe))
    system = tmp_path / "root/etc/systemd/system"
    assert system / "hvsupervisor.service" in written
    assert (tmp_path / "root/etc/tmpfiles.d/hvsupervisor.conf").is_file()
    assert (tmp_path / "root/etc/logrotate.d/hvsupervisor").is_file()
    dropin = (system / "hvsupervisor.service.d" / install_units.DROPIN).read_text()
    assert f"ExecStart=\nExecStart={exe} run\n" in dropin
    assert f"ExecReload={exe} reload" in dropin
    cleanup = (system / "hvsupervisor-cleanup.service.d" / install_units.DROPIN).read_text()
    assert f"ExecStart={exe} cleanup ovs\nExecStart={exe} cleanup netns" in cleanup
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    # The installed unit plus drop-in verifies although the packaged /usr/bin path is
    # absent here (without the drop-in, verify fails on it: test_units.py checks that).
    res = subprocess.run(["systemd-analyze", "verify", "--man=no",
                          str(system / "hvsupervisor.service")],
                         env={"SYSTEMD_UNIT_PATH": f"{system}:", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "/usr/bin/hvsupervisor" not in res.stderr, res.stderr


def test_packaged_path_needs_no_dropin(tmp_path):
    written = install_units.install(tmp_path, install_units.PACKAGED)
    assert not any(p.name == install_units.DROPIN for p in written)
