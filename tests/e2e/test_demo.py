"""``hvsupervisor demo``: six real agents come up, Ctrl-C leaves nothing behind.

Runs the demo as ``./run_demo`` would after its install step (``python -m
hvsupervisor demo`` with HVSUP_DEMO_DIR in a tmp dir), under this test's
interpreter, which must have nova, neutron, placement, glance and
libvirt-python (the e2e venv). Nothing is mocked: the demo cloud
(testcloud/hvtestcloud/cloud.py), private OVS and libvirtd, the six upstream
daemons; the node joins the cloud (nova-compute up, four neutron agents
alive), which the demo reports in one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hvtestcloud import node, services

from tests.util import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
# After the supervisor: libvirtd, the cloud (SIGTERM, 10 s at most), OVS, the netns.
TEARDOWN_S = 30
AGENTS = {"nova-compute", "nova-api-metadata", "neutron-openvswitch-agent",
          "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent"}


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (netns, OVS)"
    for mod in ("nova", "neutron", "placement", "glance", "libvirt"):
        if importlib.util.find_spec(mod) is None:
            return f"python module {mod!r} missing: run under the e2e venv"

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


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short dir: the demo's unix sockets must fit in sun_path (108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hvd-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start_demo(demo: Path, out: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HVSUP_")}
    env.update(HVSUP_DEMO_DIR=str(demo), PYTHONPATH=str(REPO))
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "hvsupervisor", "demo"], cwd=REPO,
                                env=env, stdin=subprocess.DEVNULL, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, env


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_runs_six_agents_and_a_signal_leaves_nothing(short_tmp, signum):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    demo = short_tmp / "demo"
    out = short_tmp / "demo.out"
    proc, env = _start_demo(demo, out)
    ns = None
    try:
        def up() -> list[dict] | None:
            assert proc.poll() is None, out.read_text()[-3000:]
            agents = _status(demo / "run")
            if agents and len(agents) == len(AGENTS) and all(
                    a["state"] in ("starting", "ready") and a["pid"] for a in agents):
                return agents
            return None

        agents = wait_until(up, 240, "six agent processes up", interval=0.5)
        assert {a["name"] for a in agents} == AGENTS
        joined = wait_until(lambda: re.search(r"joined the cloud ([0-9.]+) s after start: (.*)",
                                              out.read_text()), 300, "the joined line",
                            interval=1)
        assert "nova-compute up in nova's services" in joined.group(2)
        assert "4 neutron agents alive" in joined.group(2)
        text = out.read_text()
        assert "nova-compute (libvirt)" in text  # the banner says what runs
        ns = re.search(r"netns (hvsup-demo-[0-9a-f]+)", text).group(1)
        assert ns in _netns_list().split()

        db = f"--db=unix:{demo / 'cloud' / 'ovs' / 'db.sock'}"
        wait_until(lambda: subprocess.run(["ovs-vsctl", db, "br-exists", "br-int"],
                                          check=False).returncode == 0,
                   60, "br-int in the demo's ovsdb", interval=0.5)

        r = subprocess.run([sys.executable, "-m", "hvsupervisor", "--run-dir",
                            str(demo / "run"), "status", "--format", "json"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=60, check=False)
        assert r.returncode == 0, r.stderr
        listed = json.loads(r.stdout)
        assert {a["name"] for a in listed["agents"]} == AGENTS
        assert all(a["ready"] for a in listed["agents"]), listed

        # The bus and the metadata API listen inside the demo's netns (not on the host).
        netns = services.Netns(ns)
        wait_until(lambda: netns.tcp_open(5672) and netns.tcp_open(8775), 90,
                   "RabbitMQ :5672 and nova-api-metadata :8775 in the demo netns", interval=1)

        t_signal = time.monotonic()
        proc.send_signal(signum)  # SIGINT: what Ctrl-C delivers to the demo
        # The demo says how long its supervisor may take (node.stop_budget: the
        # longest chain of agent stops; nova-compute's follows the demo's short
        # graceful_shutdown_timeout, hvtestcloud/profile.py). Past that it SIGKILLs the
        # supervisor (SUPERVISOR_STOP_SLACK later); then libvirtd, the cloud
        # (10 s at most), OVS and the netns go in seconds.
        said = wait_until(lambda: re.search(r"stopping the agents \(up to (\d+) s\)",
                                            out.read_text()), 10, "the demo's stop line",
                          interval=0.2)
        budget = int(said.group(1))
        assert budget <= 60, said.group(0)
        rc = proc.wait(budget + node.SUPERVISOR_STOP_SLACK + TEARDOWN_S)
        stop_s = time.monotonic() - t_signal
        print(f"demo stop after {signal.Signals(signum).name}: {stop_s:.1f} s "
              f"(supervisor budget {budget} s)")
    finally:
        if proc.poll() is None:  # a failed assertion: still stop it the demo's way
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        if ns and ns in _netns_list().split():
            services.Netns(ns).destroy()
    assert rc == 0, out.read_text()[-3000:]
    assert _demo_processes(demo) == []
    assert ns not in _netns_list().split()
    for sock in (demo / "run" / "control.sock", demo / "cloud" / "ovs" / "db.sock"):
        assert not _accepts(sock), f"{sock} still accepts"
    assert "stopped (rc=0)" in out.read_text()


def test_demo_config_error_stops_ovs_and_rabbitmq(short_tmp):
    """The supervisor cannot start (a broken override snippet): nothing is left either."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    demo = short_tmp / "demo"
    out = short_tmp / "demo.out"
    bad = demo / "override" / "hvsupervisor.conf.d" / "99-broken.conf"
    bad.parent.mkdir(parents=True)
    bad.write_text("[agent:nova-compute]\nready = sometimes\n")
    before = set(_netns_list().split())
    proc, _ = _start_demo(demo, out)
    try:
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    text = out.read_text()
    assert rc == 78, text[-3000:]  # EX_CONFIG, with the file named in one line
    assert "99-broken.conf" in text and "Traceback" not in text
    assert _demo_processes(demo) == []
    assert not {n for n in set(_netns_list().split()) - before if n.startswith("hvsup-demo")}
    assert not _accepts(demo / "cloud" / "ovs" / "db.sock")
