"""``hvsupervisor demo``: six real agents come up, Ctrl-C leaves nothing behind.

Runs the demo as ``./run_demo`` would after its install step (``python -m
hvsupervisor demo`` with HVSUP_DEMO_DIR in a tmp dir), under this test's
interpreter, which must have nova and neutron (the e2e venv). Nothing is
mocked: private OVS, RabbitMQ, the six upstream daemons; no control plane,
so the agents wait for it (the demo's expected state).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hvsupervisor.demo import services
from tests.util import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

REPO = Path(__file__).resolve().parents[2]
AGENTS = {"nova-compute", "nova-api-metadata", "neutron-openvswitch-agent",
          "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent"}


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (netns, OVS)"
    for mod in ("nova", "neutron"):
        if importlib.util.find_spec(mod) is None:
            return f"python module {mod!r} missing: run under the e2e venv"
    from hvsupervisor.demo import node

    return node.preflight()


def _status(run_dir: Path) -> list[dict] | None:
    from hvsupervisor.control.client import ControlError, call

    try:
        return call(run_dir / "control.sock", {"cmd": "status"}, timeout=10)["agents"]
    except (ControlError, OSError, ValueError):
        return None


def _demo_processes(demo: Path) -> list[str]:
    """Every process whose cwd or command line is under the demo dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue  # gone meanwhile, or a kernel thread
        if str(demo) in cmdline or cwd.startswith(str(demo)):
            found.append(f"{entry.name}: {cmdline[:150]} (cwd {cwd})")
    return found


def _accepts(path: Path) -> bool:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def _netns_list() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                          check=False).stdout


def test_demo_runs_six_agents_and_ctrl_c_leaves_nothing(tmp_path):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    demo = tmp_path / "demo"
    out = tmp_path / "demo.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVSUP_")}
    env.update(HVSUP_DEMO_DIR=str(demo), PYTHONPATH=str(REPO))
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hvsupervisor", "demo"], cwd=REPO,
                                env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    ns = None
    try:
        def up() -> list[dict] | None:
            assert proc.poll() is None, out.read_text()[-3000:]
            agents = _status(demo / "run")
            if agents and len(agents) == len(AGENTS) and all(
                    a["state"] in ("starting", "ready") and a["pid"] for a in agents):
                return agents
            return None

        agents = wait_until(up, 180, "six agent processes up", interval=0.5)
        assert {a["name"] for a in agents} == AGENTS
        text = out.read_text()
        assert "fake.PredictableNodeUUIDDriver" in text  # the banner says what runs
        ns = re.search(r"netns (hvsup-demo-[0-9a-f]+)", text).group(1)
        assert ns in _netns_list().split()

        db = f"--db=unix:{demo / 'ovs' / 'db.sock'}"
        wait_until(lambda: subprocess.run(["ovs-vsctl", db, "br-exists", "br-int"],
                                          check=False).returncode == 0,
                   60, "br-int in the demo's ovsdb", interval=0.5)

        r = subprocess.run([sys.executable, "-m", "hvsupervisor", "--run-dir",
                            str(demo / "run"), "status", "--format", "json"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        assert {a["name"] for a in listed["agents"]} == AGENTS

        # The bus and the metadata API listen inside the demo's netns (not on the host).
        netns = services.Netns(ns)
        wait_until(lambda: netns.tcp_open(5672) and netns.tcp_open(8775), 90,
                   "RabbitMQ :5672 and nova-api-metadata :8775 in the demo netns", interval=1)

        proc.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the demo
        rc = proc.wait(180)
    finally:
        if proc.poll() is None:  # a failed assertion: still stop it the demo's way
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(180)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        if ns and ns in _netns_list().split():
            services.Netns(ns).destroy()
    assert rc == 0, out.read_text()[-3000:]
    assert _demo_processes(demo) == []
    assert ns not in _netns_list().split()
    for sock in (demo / "run" / "control.sock", demo / "ovs" / "db.sock"):
        assert not _accepts(sock), f"{sock} still accepts"
    assert "stopped (rc=0)" in out.read_text()
