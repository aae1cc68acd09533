"""Stops and restarts of the six real daemons (nova 34, neutron 29) on a warm node.

Real-daemon figures, next to the stand-in ones: it needs root and the
upstream venv (the e2e tier's: run it with that venv's python, repo root on
PYTHONPATH), and brings up the e2e control plane (RabbitMQ, Placement,
nova-conductor, neutron RPC + API) in a private netns.

Two parts, one JSON line each:

* ``signals``: each daemon started directly (its plan's argv and env), left
  to settle (neutron agents: a heartbeat in neutron's API; nova-compute: its
  service heartbeat; the metadata API: its port accepts), then sent one
  signal; the time to exit and its exit status, or "ignored" after
  ``--patience`` seconds (then SIGKILL). This is how the catalog's
  ``stop_signal`` values were chosen.
* ``supervisor``: the six under ``hvsupervisor run`` with the shipped
  catalog: ``hvsupervisor restart neutron-openvswitch-agent`` to ready, a
  neutron snippet reload until every agent is ready again, and the full stop
  (SIGTERM to the supervisor until it has exited).

Nothing here asserts a timing: it prints JSON, people read it.
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

from hvtestcloud.cloud import NEUTRON_TYPES  # noqa: E402
from hvtestcloud.waiting import wait_until  # noqa: E402

ORDER = ["neutron-metadata-agent", "neutron-l3-agent", "neutron-dhcp-agent",
         "nova-api-metadata", "nova-compute", "neutron-openvswitch-agent"]


def _settled(cp, node, name: str, since: float):
    from tests.e2e.controlplane import NODE_HOST, utc

    if name == "nova-compute":
        return cp.compute_service_up(NODE_HOST, since)
    if name == "nova-api-metadata":
        return cp.ns.tcp_open(8775)
    for agent in cp.neutron_agents():
        if (agent.get("agent_type") == NEUTRON_TYPES[name] and agent.get("alive")
                and utc(agent["heartbeat_timestamp"]) >= since - 1):
            return agent
    return None


def _spawn(cp, node, name: str):
    from tests.e2e import controlplane as cpmod

    plan = node.plans[name]
    node.started[name] = time.time()
    node.procs[name] = cp.ns.spawn(name, list(plan.argv), node.log_dir / f"{name}.log",
                                   cpmod.scrubbed_env(plan.env), cwd=node.run_dir)


def measure_signals(cp, node, signals: list[str], patience: float) -> dict:
    from tests.fixtures.controlplane import spawn_agents

    spawn_agents(cp, node)
    results: dict[str, dict] = {}
    try:
        for name in ORDER:
            results[name] = {}
            for signame in signals:
                if not node.procs[name].alive():
                    _spawn(cp, node, name)
                since = node.started[name]
                wait_until(lambda n=name, s=since: _settled(cp, node, n, s), 240,
                           f"{name} settled", interval=0.5)
                proc = node.procs[name]
                t0 = time.monotonic()
                os.kill(proc.pid, signal.Signals[signame])  # the main pid, as the supervisor
                try:
                    rc = proc.popen.wait(patience)
                    results[name][signame] = {"exit_s": round(time.monotonic() - t0, 2),
                                              "rc": rc}
                except subprocess.TimeoutExpired:
                    results[name][signame] = {"exit_s": None, "rc": "ignored",
                                              "patience_s": patience}
                proc.stop(timeout=1)  # SIGKILL the group: workers, privsep daemons
                print(json.dumps({"agent": name, "signal": signame, **results[name][signame]}),
                      file=sys.stderr, flush=True)
    finally:
        for proc in node.procs.values():
            proc.stop(timeout=5)
        node.procs.clear()
    return results


def _cli(node, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hvsupervisor", *node.cli_dirs(), *args],
                          capture_output=True, text=True, timeout=timeout)


def _all_ready(node, timeout: float = 300) -> dict:
    def ready():
        st = _status(node)
        return st if st and all(a["ready"] for a in st.values()) else None

    return wait_until(ready, timeout, "every agent ready", interval=0.1)


def _status(node) -> dict | None:
    try:
        return node.status()
    except OSError:
        return None


def _helpers(cp) -> dict[str, int]:
    """Data-plane helpers running in the node's netns: "pid" -> program."""
    from hvsupervisor.config import opts
    from hvsupervisor.core import dataplane
    from hvsupervisor.process import children

    names = next(o.default for o in opts.supervisor_opts if o.name == "dataplane_helpers")
    found = {}
    for pid in cp.ns.pids():
        progs = set(dataplane.program_names(children.cmdline(pid))) & set(names)
        if progs:
            found[str(pid)] = progs.pop()
    return found


def measure_supervisor(cp, node) -> dict:
    from tests.fixtures.controlplane import spawn_supervisor

    out: dict = {}
    spawn_supervisor(cp, node)
    try:
        before = _all_ready(node)
        # Let the neutron agents reach neutron-server: a warm node.
        for name in NEUTRON_TYPES:
            wait_until(lambda n=name: _settled(cp, node, n, node.started[n]), 240,
                       f"{name} settled", interval=0.5)
        wait_until(lambda: _settled(cp, node, "nova-compute", node.started["nova-compute"]),
                   240, "nova-compute up", interval=0.5)

        t0 = time.monotonic()
        cp_ = _cli(node, "restart", "neutron-openvswitch-agent")
        assert cp_.returncode == 0, cp_.stderr
        old = before["neutron-openvswitch-agent"]["pid"]
        wait_until(lambda: (lambda st: st and st["neutron-openvswitch-agent"]["ready"]
                            and st["neutron-openvswitch-agent"]["pid"] != old)(_status(node)),
                   120, "OVS agent ready again", interval=0.05)
        out["restart_ovs_agent_to_ready_s"] = round(time.monotonic() - t0, 2)
        # A second, independent view: neutron-server got a state report from the new process.
        t_wall = time.time() - (time.monotonic() - t0)
        wait_until(lambda: _settled(cp, node, "neutron-openvswitch-agent", t_wall + 1), 120,
                   "OVS agent heartbeat after the restart", interval=0.2)
        out["restart_ovs_agent_to_heartbeat_s"] = round(time.monotonic() - t0, 2)

        snippet = node.override / "neutron" / "neutron.conf.d" / "60-bench.conf"
        snippet.write_text("[DEFAULT]\ndebug = true\n")
        before = _all_ready(node)
        t0 = time.monotonic()
        rl = _cli(node, "reload", "--format", "json")
        assert rl.returncode == 0, rl.stderr
        restarted = json.loads(rl.stdout)["restarted"]
        out["reload_returned_s"] = round(time.monotonic() - t0, 2)
        wait_until(lambda: (lambda st: st and all(
            a["ready"] and (n not in restarted or a["pid"] != before[n]["pid"])
            for n, a in st.items()))(_status(node)), 300, "reload settled", interval=0.05)
        out["reload_settled_s"] = round(time.monotonic() - t0, 2)
        out["reload_restarted"] = sorted(restarted)

        wait_until(lambda: all(_settled(cp, node, n, time.time() - 60)
                               for n in NEUTRON_TYPES), 240, "neutron agents settled", interval=0.5)
        # A restart of the supervisor itself (what `systemctl restart` does to its main
        # process under KillMode=process): stop, start, every agent ready again. The
        # data-plane helpers (none here without networks) are listed before and after.
        helpers_before = _helpers(cp)
        t0 = time.monotonic()
        node.supervisor.stop(timeout=200)
        spawn_supervisor(cp, node)
        _all_ready(node)
        out["supervisor_restart_to_ready_s"] = round(time.monotonic() - t0, 2)
        out["helper_pids_before"], out["helper_pids_after"] = helpers_before, _helpers(cp)

        wait_until(lambda: all(_settled(cp, node, n, time.time() - 60)
                               for n in NEUTRON_TYPES), 240, "neutron agents settled", interval=0.5)
        t0 = time.monotonic()
        rc = node.supervisor.stop(timeout=200)
        out["full_stop_s"] = round(time.monotonic() - t0, 2)
        out["full_stop_rc"] = rc
    finally:
        if node.supervisor is not None and node.supervisor.alive():
            node.supervisor.stop(timeout=200)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["signals", "supervisor", "all"], default="all")
    ap.add_argument("--signals", default="SIGTERM,SIGINT")
    ap.add_argument("--patience", type=float, default=20.0)
    args = ap.parse_args()
    import pwd

    from tests.e2e import controlplane as cpmod
    from tests.fixtures.controlplane import make_node, ready_for_users

    # The shipped catalog runs the agents as nova and neutron: the users exist, and
    # they reach the node's dirs (0711, not TemporaryDirectory's 0700) and the rig's.
    subprocess.run(["systemd-sysusers", str(REPO / "units" / "sysusers.d" / "hvsupervisor.conf")],
                   check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="hvbench-upstream-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)
        cp = cpmod.start_control_plane(root / "cp")
        try:
            ready_for_users(cp, pwd.getpwnam("nova").pw_gid)
            if args.part in ("signals", "all"):
                node = make_node(cp, root / "node-direct")
                res = measure_signals(cp, node, args.signals.split(","), args.patience)
                print(json.dumps({"figure": "upstream_stop_signals", "unit": "s",
                                  "results": res}), flush=True)
            if args.part in ("supervisor", "all"):
                node = make_node(cp, root / "node-supervised")
                res = measure_supervisor(cp, node)
                print(json.dumps({"figure": "upstream_supervisor_stops", "unit": "s",
                                  "results": res,
                                  "goal": {"full_stop_s<=3": res.get("full_stop_s", 99) <= 3,
                                           "restart_ovs_agent_to_ready_s<=5":
                                           res.get("restart_ovs_agent_to_ready_s", 99) <= 5,
                                           "reload_settled_s<=6":
                                           res.get("reload_settled_s", 99) <= 6,
                                           "helper_pids_unchanged":
                                           res.get("helper_pids_before")
                                           == res.get("helper_pids_after")}}),
                      flush=True)
        finally:
            cp.stop()
            left = cp.ns.destroy()
            if left:
                print(f"processes left in {cp.ns.name}: {left}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
