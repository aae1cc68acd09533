"""SIGTERM to nova-compute with the real libvirt driver, idle: how long, and where it hangs.

The reproduction behind doc/upstream-behaviour.md section 18. Needs root and
the upstream venv (the e2e tier's: run it with that venv's python, repo root
on PYTHONPATH); brings up the e2e control plane in a private netns and a
private libvirtd (testcloud/hvtestcloud/libvirtd.py), starts nova-compute
alone with its plan's argv and environment (``compute_driver =
libvirt.LibvirtDriver``, ``virt_type = qemu``), waits until nova calls it up,
then sends SIGTERM to its main pid and times the exit.

``--dump-after S``: S seconds after the SIGTERM, a thread dump of the still
running process with ``py-spy dump`` (``--py-spy PATH``; py-spy from PyPI).
``--graceful N``: a ``[DEFAULT] graceful_shutdown_timeout`` snippet (unset:
nova's own 180). ``--manager N``: ``[DEFAULT] manager_shutdown_timeout``.

``--supervised``: instead, nova-compute under ``hvsupervisor run`` with the
shipped catalog (its ``stop_drained`` rule), stopped through the control
socket: the time until the supervisor reports it stopped, its last exit, and
whether the drained line or the kill timer ended it.

Prints one JSON line (exit time, rc, nova's shutdown log lines after the
signal, the dump); nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "testcloud")]  # hvsupervisor, hvtestcloud

from hvtestcloud.waiting import wait_until  # noqa: E402

HOST = "bench-libvirt"
# nova's shutdown path (nova/service.py, nova/manager.py, nova/compute/manager.py,
# nova/thread_pool_factory.py, oslo_service/backend/_threading/service.py).
MARKS = ("Graceful shutdown", "graceful shutdown", "thread pool", "in-progress",
         "Caught SIGINT", "instantaneous", "shutdown")


def _node(cp, libvirtd, root: Path, graceful: int | None, manager: int | None):
    from hvsupervisor.config.settings import load_settings
    from hvsupervisor.host.facts import plans_for
    from tests.e2e import controlplane as cpmod

    override = root / "override"
    for d in ("state", "log", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    cpmod.node_snippets(cp, override, HOST)
    default: dict = {"host": HOST, "compute_driver": "libvirt.LibvirtDriver"}
    if graceful is not None:
        default["graceful_shutdown_timeout"] = graceful
    if manager is not None:
        default["manager_shutdown_timeout"] = manager
    cpmod.write_ini(override / "nova" / "nova.conf.d" / "60-libvirt.conf", {
        "DEFAULT": default,
        "libvirt": {"virt_type": "qemu", "connection_uri": libvirtd.uri},
    })
    cpmod.write_ini(override / "hvsupervisor.conf.d" / "60-bench.conf", {
        "DEFAULT": {"enabled_agents": "nova-compute"},
        "agent:nova-compute": {"after": "", "user": "root"},
    })
    settings = load_settings(REPO / "etc", override, str(root / "state"),
                             str(root / "log"), str(root / "run"))
    return plans_for(settings)


def measure_supervised(cp, libvirtd, root: Path, args) -> dict:
    from hvsupervisor.control.client import call
    from tests.fixtures.controlplane import Node, spawn_supervisor

    plans = _node(cp, libvirtd, root, args.graceful, args.manager)
    node = Node(root=root, override=root / "override", state_dir=root / "state",
                log_dir=root / "log", run_dir=root / "run", plans=plans)
    started = time.time()
    spawn_supervisor(cp, node)
    out: dict = {"graceful_shutdown_timeout": args.graceful,
                 "manager_shutdown_timeout": args.manager,
                 "stop_timeout": plans["nova-compute"].stop_timeout}
    try:
        wait_until(lambda: node.status()["nova-compute"]["ready"], 240, "nova-compute ready")
        out["ready_s"] = round(time.time() - started, 1)
        time.sleep(args.settle)  # a fixed pause on purpose: "idle for a while", not a sync
        sup_log = root / "hvsupervisor.out"
        offset = sup_log.stat().st_size
        t0 = time.monotonic()
        call(node.control_socket, {"cmd": "stop"}, timeout=60)
        wait_until(lambda: node.status()["nova-compute"]["state"] == "stopped",
                   args.patience, "nova-compute stopped", interval=0.1)
        out["stop_s"] = round(time.monotonic() - t0, 2)
        out["last_exit"] = node.status()["nova-compute"]["last_exit"]
        with open(sup_log, errors="replace") as f:
            f.seek(offset)
            text = f.read()
        out["ended_by"] = ("stop_drained" if "event=drained agent=nova-compute" in text
                           else "SIGKILL" if "signal=SIGKILL" in text else "itself")
    finally:
        node.supervisor.stop(timeout=args.patience)
    return out


def measure(cp, libvirtd, root: Path, args) -> dict:
    from tests.e2e import controlplane as cpmod

    plan = _node(cp, libvirtd, root, args.graceful, args.manager)["nova-compute"]
    log = root / "log" / "nova-compute.log"
    for d in plan.directories:
        Path(d).mkdir(parents=True, exist_ok=True, mode=0o711)
    started = time.time()
    proc = cp.ns.spawn("nova-compute", list(plan.argv), log, cpmod.scrubbed_env(plan.env),
                       cwd=root / "run")
    out: dict = {"graceful_shutdown_timeout": args.graceful,
                 "manager_shutdown_timeout": args.manager}
    try:
        wait_until(lambda: cp.compute_service_up(HOST, started) or not proc.alive(), 240,
                   "nova-compute (libvirt) up", interval=0.5)
        assert proc.alive(), log.read_text(errors="replace")[-3000:]
        out["up_s"] = round(time.time() - started, 1)
        time.sleep(args.settle)  # a fixed pause on purpose: "idle for a while", not a sync
        offset = log.stat().st_size
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        dump = None
        deadline = t0 + args.patience
        while proc.popen.poll() is None and time.monotonic() < deadline:
            if dump is None and args.dump_after and time.monotonic() - t0 >= args.dump_after:
                res = subprocess.run([args.py_spy, "dump", "--pid", str(proc.pid)],
                                     capture_output=True, text=True, timeout=60, check=False)
                dump = res.stdout or res.stderr
                (root / "py-spy-dump.txt").write_text(dump)
            try:
                proc.popen.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        rc = proc.popen.poll()
        out["exit_s"] = round(time.monotonic() - t0, 2) if rc is not None else None
        out["rc"] = rc if rc is not None else "still running"
        with open(log, errors="replace") as f:
            f.seek(offset)
            tail = f.read().splitlines()
        out["log_after_sigterm"] = [ln[:300] for ln in tail if any(m in ln for m in MARKS)]
        out["py_spy_dump"] = dump
    finally:
        proc.stop(timeout=1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graceful", type=int, default=None)
    ap.add_argument("--manager", type=int, default=None)
    ap.add_argument("--settle", type=float, default=10.0)
    ap.add_argument("--patience", type=float, default=220.0)
    ap.add_argument("--dump-after", type=float, default=15.0)
    ap.add_argument("--py-spy", default="py-spy")
    ap.add_argument("--supervised", action="store_true")
    args = ap.parse_args()
    from hvtestcloud.libvirtd import LibvirtDaemon, fix_kvm_permissions

    from tests.e2e import controlplane as cpmod

    with tempfile.TemporaryDirectory(prefix="hvbench-libvirt-stop-") as tmp:
        root = Path(tmp)
        fix_kvm_permissions()
        libvirtd = LibvirtDaemon(root / "libvirt")
        cp = cpmod.start_control_plane(root / "cp")
        try:
            libvirtd.setup()
            libvirtd.start()
            if args.supervised:
                res = measure_supervised(cp, libvirtd, root / "node", args)
                figure = "libvirt_compute_supervised_stop_idle"
            else:
                res = measure(cp, libvirtd, root / "node", args)
                figure = "libvirt_compute_sigterm_idle"
            print(json.dumps({"figure": figure, "unit": "s", "results": res}), flush=True)
        finally:
            libvirtd.teardown()
            cp.stop()
            left = cp.ns.destroy()
            if left:
                print(f"processes left in {cp.ns.name}: {left}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
