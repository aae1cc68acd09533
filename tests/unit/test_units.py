"""Lint of the shipped systemd units (units/): they load in systemd and say what matters.

`systemd-analyze verify` runs on the bare host (no systemd as PID 1 needed). It refuses a unit
whose ExecStart binary does not exist or is not executable, and /usr/bin/hvsupervisor is not
installed on a dev box. So each test copies the units into a temp dir, with every
`/usr/bin/hvsupervisor` rewritten to an executable stub inside that dir, and verifies the copies
by path. (`systemd-analyze --root=DIR` would need a full unit tree under DIR: it fails on
`sysinit.target not found`.) The directive assertions read the shipped files themselves.
"""

from __future__ import annotations

import configparser
import os
import pathlib
import re
import shutil
import subprocess

import pytest

# The shipped catalog runs the agents as nova/neutron: plans resolve them
# through stand-in accounts when the host has none (tests/fixtures/accounts.py).
pytestmark = pytest.mark.usefixtures("shipped_accounts")

UNITS = pathlib.Path(__file__).resolve().parents[2] / "units"
SERVICE = UNITS / "hvsupervisor.service"
CLEANUP = UNITS / "hvsupervisor-cleanup.service"
SHIPPED_BIN = "/usr/bin/hvsupervisor"

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (Debian package: systemd)",
)


def parse_unit(path: pathlib.Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as ordered (key, value) lists.

    A list, not a dict: systemd keys repeat (ExecStart=, Wants=) and an empty value resets.
    """
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"{path.name}: not KEY=VALUE: {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    """Effective values of a repeatable key: an empty assignment clears the earlier ones."""
    out: list[str] = []
    for k, v in unit.get(section, []):
        if k == key:
            out = [] if v == "" else out + [v]
    return out


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    vals = values(unit, section, key)
    assert vals, f"{section}/{key} not set"
    return vals[-1]


def words(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> set[str]:
    return {w for v in values(unit, section, key) for w in v.split()}


def seconds(text: str) -> float:
    """systemd time span ("90s", "5min", "1min 30s", "250ms") in seconds."""
    scale = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        total += float(num) * scale[unit or "s"]
    return total


def stub_copy(tmp_path: pathlib.Path, *units: pathlib.Path) -> list[pathlib.Path]:
    """Copies of `units` in tmp_path whose hvsupervisor binary is an executable stub there."""
    stub = tmp_path / "bin" / "hvsupervisor"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    out = []
    for unit in units:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(SHIPPED_BIN, str(stub)))
        out.append(copy)
    return out


def analyze_verify(*paths: pathlib.Path, env: dict[str, str] | None = None):
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@needs_analyze
@pytest.mark.parametrize("unit", [SERVICE, CLEANUP], ids=lambda p: p.name)
def test_systemd_analyze_verify(unit, tmp_path):
    (copy,) = stub_copy(tmp_path, unit)
    res = analyze_verify(copy)
    assert res.returncode == 0, res.stderr
    # verify prints warnings (unknown keys, bad values) and still exits 0 for some of them.
    assert "Unknown key" not in res.stderr and "Failed to parse" not in res.stderr, res.stderr


@needs_analyze
def test_verify_catches_a_missing_binary(tmp_path):
    """The check is real: the shipped path, absent here, fails verify."""
    copy = tmp_path / SERVICE.name
    copy.write_text(SERVICE.read_text().replace(SHIPPED_BIN, str(tmp_path / "absent")))
    res = analyze_verify(copy)
    assert res.returncode != 0
    assert "is not executable" in res.stderr


@needs_analyze
def test_venv_drop_in_verifies(tmp_path):
    """units/examples/venv.conf clears and replaces ExecStart/ExecReload (drop-in dir on the
    unit path via $SYSTEMD_UNIT_PATH; the trailing ':' keeps the system dirs for the deps)."""
    (copy,) = stub_copy(tmp_path, SERVICE)
    dropin_dir = tmp_path / "hvsupervisor.service.d"
    dropin_dir.mkdir()
    venv_bin = tmp_path / "opt" / "bin" / "hvsupervisor"
    venv_bin.parent.mkdir(parents=True)
    venv_bin.write_text("#!/bin/sh\nexit 0\n")
    venv_bin.chmod(0o755)
    example = (UNITS / "examples" / "venv.conf").read_text()
    (dropin_dir / "venv.conf").write_text(
        example.replace("/opt/hvsupervisor/bin/hvsupervisor", str(venv_bin))
    )
    env = dict(os.environ, SYSTEMD_UNIT_PATH=f"{tmp_path}:")
    res = analyze_verify(copy, env=env)
    assert res.returncode == 0, res.stderr
    merged = parse_unit(copy)
    merged["Service"] += parse_unit(dropin_dir / "venv.conf")["Service"]
    assert values(merged, "Service", "ExecStart") == [f"{venv_bin} run"]
    assert values(merged, "Service", "ExecReload") == [f"{venv_bin} reload"]


def test_service_directives():
    u = parse_unit(SERVICE)
    assert one(u, "Service", "Type") == "notify"
    # Children send READY=1 themselves (oslo.service, cotyledon): only the main pid may talk.
    assert one(u, "Service", "NotifyAccess") == "main"
    # The data plane outlives a unit stop/restart; the supervisor stops the agents itself.
    assert one(u, "Service", "KillMode") == "process"
    assert one(u, "Service", "OOMPolicy") == "continue"
    assert one(u, "Service", "Restart") == "on-failure"
    assert 0 < seconds(one(u, "Service", "WatchdogSec")) <= 120
    assert values(u, "Service", "ExecStart") == [f"{SHIPPED_BIN} run"]
    # Synchronous reload through the CLI, not an asynchronous `kill -HUP $MAINPID`.
    assert values(u, "Service", "ExecReload") == [f"{SHIPPED_BIN} reload"]
    # nova's docs ask for >= 180 s (its graceful_shutdown_timeout default).
    assert seconds(one(u, "Service", "TimeoutStopSec")) >= 180


def shipped_catalog() -> configparser.RawConfigParser:
    cat = configparser.RawConfigParser(strict=False, interpolation=None)
    path = UNITS.parent / "etc" / "hvsupervisor.conf"
    if not cat.read(path):
        pytest.skip(f"{path} not in this checkout")
    return cat


def test_timeouts_cover_the_shipped_catalog(tmp_path):
    """TimeoutStartSec above [supervisor] ready_timeout (else systemd fails the start before the
    supervisor's degraded READY=1); TimeoutStopSec covers the longest chain of stops of the
    shipped plans, even with stop_dataplane = true (else systemd SIGKILLs mid-drain): the very
    check `hvsupervisor check` runs against the installed unit."""
    from hvsupervisor.config.settings import load_settings
    from hvsupervisor.core import stopbudget
    from hvsupervisor.host.facts import plans_for

    u = parse_unit(SERVICE)
    cat = shipped_catalog()
    ready_timeout = cat.getfloat("supervisor", "ready_timeout")
    assert seconds(one(u, "Service", "TimeoutStartSec")) > ready_timeout
    settings = load_settings(UNITS.parent / "etc", tmp_path / "override", str(tmp_path / "s"),
                             str(tmp_path / "l"), str(tmp_path / "r"))
    plans = plans_for(settings)
    budgets = {n: p.stop_timeout for n, p in plans.items()}
    assert budgets["nova-compute"] == 190  # nova's 180 s graceful_shutdown_timeout + margin
    chain = stopbudget.longest_chain({n: p.after for n, p in plans.items()}, budgets)
    need = stopbudget.required_unit_timeout(chain, 2 * stopbudget.DATAPLANE_STOP_TIMEOUT)
    assert seconds(one(u, "Service", "TimeoutStopSec")) >= need


def test_service_dependencies_are_soft():
    """Wants=, never Requires=/BindsTo=/PartOf=: restarting OVS or libvirtd must not stop us."""
    u = parse_unit(SERVICE)
    for dep in ("libvirtd.service", "openvswitch-switch.service"):
        assert dep in words(u, "Unit", "Wants")
        assert dep in words(u, "Unit", "After")
    for hard in ("Requires", "Requisite", "BindsTo", "PartOf"):
        assert not values(u, "Unit", hard), f"{hard}= would stop the agents with a host daemon"
    assert "hvsupervisor-cleanup.service" in words(u, "Unit", "After")


def test_service_directories_and_modes():
    u = parse_unit(SERVICE)
    for key, mode in (("Runtime", "0750"), ("State", "0711"), ("Logs", "0750")):
        assert one(u, "Service", f"{key}Directory") == "hvsupervisor"
        assert one(u, "Service", f"{key}DirectoryMode") == mode


def test_service_has_no_mount_namespace_hardening():
    """`ip netns add` mounts must reach the host: no directive that implies a mount namespace."""
    u = parse_unit(SERVICE)
    keys = {k for k, _ in u["Service"]}
    forbidden = {
        "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
        "ProtectKernelModules", "ProtectKernelTunables", "ProtectKernelLogs",
        "ProtectControlGroups", "ProtectProc", "ReadOnlyPaths", "InaccessiblePaths",
        "TemporaryFileSystem", "RestrictNamespaces", "NoNewPrivileges", "DeviceAllow",
        "ProtectClock", "CapabilityBoundingSet",
    }  # fmt: skip
    assert not keys & forbidden


def test_cleanup_runs_once_per_boot_before_the_supervisor():
    u = parse_unit(CLEANUP)
    assert one(u, "Service", "Type") == "oneshot"
    # Stays active after it ran: a supervisor restart finds its Wants= met and does not re-run it.
    assert one(u, "Service", "RemainAfterExit") == "yes"
    assert "hvsupervisor.service" in words(u, "Unit", "Before")
    assert "openvswitch-switch.service" in words(u, "Unit", "After")
    assert values(u, "Service", "ExecStart") == [
        f"{SHIPPED_BIN} cleanup ovs",
        f"{SHIPPED_BIN} cleanup netns",
    ]


def test_tmpfiles_match_the_unit_directories():
    lines = [
        ln.split()
        for ln in (UNITS / "tmpfiles.d" / "hvsupervisor.conf").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    entries = {path: (typ, mode, user) for typ, path, mode, user, *_ in lines}
    assert entries == {
        "/run/hvsupervisor": ("d", "0750", "root"),
        "/var/lib/hvsupervisor": ("d", "0711", "root"),
        "/var/log/hvsupervisor": ("d", "0750", "root"),
    }


def test_logrotate_relies_on_watched_file_handler():
    text = (UNITS / "logrotate.d" / "hvsupervisor").read_text()
    body = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert "/var/log/hvsupervisor/*.log" in body
    # oslo.log reopens on inode change: copytruncate would only lose lines, SIGHUP kills agents.
    assert "copytruncate" not in body and "postrotate" not in body
    assert "delaycompress" in body


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate not installed")
def test_logrotate_config_parses(tmp_path):
    conf = UNITS / "logrotate.d" / "hvsupervisor"
    res = subprocess.run(
        ["logrotate", "--debug", "--state", str(tmp_path / "state"), str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    assert "error" not in res.stderr.lower(), res.stderr
