"""The shipped sysusers.d file, applied by the real systemd-sysusers to a scratch root."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hvsupervisor.cmd.install_units import install

SYSUSERS = Path(__file__).resolve().parents[2] / "units" / "sysusers.d" / "hvsupervisor.conf"


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
def test_sysusers_creates_the_agents_users_and_groups(tmp_path):
    (tmp_path / "etc").mkdir()
    out = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    users = {ln.split(":")[0]: ln.split(":") for ln in
             (tmp_path / "etc/passwd").read_text().splitlines()}
    groups = {ln.split(":")[0]: ln.split(":")[3].split(",") for ln in
              (tmp_path / "etc/group").read_text().splitlines()}
    for name in ("nova", "neutron"):
        assert int(users[name][2]) > 0
        assert users[name][6] == "/usr/sbin/nologin"
    assert set(groups["openvswitch"]) == {"nova", "neutron"}
    assert groups["libvirt"] == ["nova"]


def test_install_units_ships_it(tmp_path):
    written = install(tmp_path, exe="/usr/bin/hvsupervisor")
    dest = tmp_path / "etc/sysusers.d/hvsupervisor.conf"
    assert dest in written
    assert dest.read_bytes() == SYSUSERS.read_bytes()


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
def test_install_units_creates_the_users_like_a_package(tmp_path, capsys):
    from hvsupervisor.cmd import install_units

    (tmp_path / "etc").mkdir()
    assert install_units.run(str(tmp_path)) == 0
    assert "applied sysusers.d/hvsupervisor.conf" in capsys.readouterr().out
    users = [ln.split(":")[0] for ln in (tmp_path / "etc/passwd").read_text().splitlines()]
    assert {"nova", "neutron"} <= set(users)
