"""Where an agent's start goes: the six real daemons started directly and under hvsupervisor.

Issue 24 part 1, the floor the start, restart and reload goals are held against.
Needs root and the e2e venv (run it with that venv's python:
``sudo .tox/e2e/bin/python benchmarks/agent_start.py [--modes direct,hvsupervisor]``),
brings up the e2e control plane (tests/e2e/controlplane.py) once and, per mode,
a fresh node with the same config files (tests/fixtures/controlplane.py make_node):

* ``direct``: a plain loop spawns each agent's plan (argv, env, config files) in
  the supervisor's start order without waiting for anything, as root (nothing
  but the supervisor can drop to the agents' users: the 50-root opt-out).
* ``hvsupervisor``: ``hvsupervisor run`` with the shipped catalog, agents as
  nova and neutron, every agent ``start = exec``; ``hvsupervisor-preload`` is the shipped
  catalog as it is: the OVS, DHCP and L3 agents ``start = preload`` (the warm preloaders of
  issue 24 part 2).

For each agent and each of cold start, ``restart neutron-openvswitch-agent``
(direct: SIGKILL and spawn again) and a neutron reload (a snippet all four
neutron agents read; direct: stop the four with their stop signals, spawn them
again in order), the seconds from the operation's start to:

* ``spawn``: the agent's process created (/proc/PID/stat starttime, 10 ms ticks);
* ``first_log``: its first log line (oslo.log's timestamp, ms). oslo.log is set
  up right after the console script's imports and the config parse, so this is
  "exec to the end of its imports" plus the parse;
* ``rpc``: its RPC server's topic first answers a prober call (DHCP, L3,
  nova-compute: benchmarks/_rpc_first.py; the OVS agent's consumers are
  fanout queues, the metadata daemons have none);
* ``heartbeat``: its first state report at the control plane (neutron's
  ``started_at``, nova's service ``updated_at``; both 1 s resolution);
* ``ready``: the supervisor's status says ready for this pid (hvsupervisor modes).

Plus the six agents' memory (each with its descendants: the DHCP and L3 agents
fork a cotyledon worker) when settled: the sum of Pss (and of Rss) from
/proc/PID/smaps_rollup, with the preloaders' own Pss added to the sum
(``pss_sum_mib``; ``pss_six_mib`` without them). One JSON line per mode and one ``agent_start``
line with the modes side by side. Nothing here asserts: people read it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "testcloud")]  # hvsupervisor, hvtestcloud

from hvtestcloud.cloud import NEUTRON_TYPES  # noqa: E402

RPC_TOPICS = {
    "neutron-dhcp-agent": "neutron/dhcp_agent@1.0",
    "neutron-l3-agent": "neutron/l3_agent@1.0",
    "nova-compute": "nova/compute@6.0",
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\d+) ")


def boot_epoch() -> float:
    """Wall-clock time of boot, to turn /proc starttime (ticks since boot) into epoch."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def started(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return boot_epoch() + int(fields[19]) / CLK_TCK  # proc(5) field 22


def pss_kib(pid: int) -> tuple[int, int]:
    """(Pss, Rss) of one process in KiB, from smaps_rollup; (0, 0) if gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith(b"Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def first_log(path: Path, pid: int) -> float | None:
    """Epoch of the first oslo.log line written by ``pid`` in ``path`` (local time)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if m and int(m.group(2)) == pid:
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return None


def utc(ts: str) -> float:
    from tests.e2e.controlplane import utc as _utc

    return _utc(ts.replace("T", " ").rstrip("Z"))


class Run:
    """One node in one mode: start, restart, reload, each timed per agent."""

    def __init__(self, cp, root: Path, mode: str) -> None:
        from tests.fixtures.controlplane import make_node

        self.cp, self.mode = cp, mode
        root.mkdir(parents=True)
        root.chmod(0o711)
        if mode == "direct":
            conf_d = root / "override" / "hvsupervisor.conf.d"
            conf_d.mkdir(parents=True)
            shutil.copyfile(REPO / "etc" / "examples" / "hvsupervisor.conf.d" /
                            "50-root.conf.example", conf_d / "50-root.conf")
        if mode == "hvsupervisor":  # every agent exec'd (the shipped catalog preloads three)
            conf_d = root / "override" / "hvsupervisor.conf.d"
            conf_d.mkdir(parents=True)
            (conf_d / "70-exec.conf").write_text("".join(
                f"[agent:{n}]\nstart = exec\n" for n in NEUTRON_TYPES))
        self.node = make_node(cp, root)
        from hvsupervisor.core.deps import start_order

        self.order = start_order({n: p.after for n, p in self.node.plans.items()})
        self.pids: dict[str, int] = {}

    # -- the two ways of running ----------------------------------------------
    def _spawn_direct(self, name: str) -> None:
        from tests.e2e import controlplane as cpmod

        plan = self.node.plans[name]
        proc = self.cp.ns.spawn(name, list(plan.argv), self.node.log_dir / f"{name}.log",
                                cpmod.scrubbed_env(plan.env), cwd=self.node.run_dir)
        self.node.procs[name] = proc

    def _stop_direct(self, name: str) -> None:
        proc = self.node.procs.pop(name, None)
        if proc is None:
            return
        plan = self.node.plans[name]
        try:
            os.kill(proc.pid, plan.stop_signal)
            proc.popen.wait(plan.stop_timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        proc.stop(timeout=1)  # the group: workers, privsep daemons

    def _cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hvsupervisor", *self.node.cli_dirs(),
                               *args], capture_output=True, text=True, timeout=300)

    def _status(self) -> dict:
        try:
            return self.node.status()
        except OSError:
            return {}

    # -- the watcher ------------------------------------------------------------
    def _watch(self, names: list[str], t0: float, old: dict[str, int],
               timeout: float = 180) -> dict:
        """Per agent: seconds from ``t0`` to spawn, first_log, rpc, heartbeat, ready."""
        topics = [RPC_TOPICS[n] for n in names if n in RPC_TOPICS]
        rpc_proc = None
        if topics:
            rpc_proc = self.cp.ns.spawn("rpc-first", [sys.executable,
                                                      str(REPO / "benchmarks" / "_rpc_first.py"),
                                                      self.cp.transport_url, str(timeout),
                                                      *topics], self.node.root / "rpc-first.out")
        pids: dict[str, int] = {}
        ready: dict[str, float] = {}
        beat: dict[str, float] = {}
        deadline = time.monotonic() + timeout

        def new_pid(name: str) -> int | None:
            if self.mode == "direct":
                proc = self.node.procs.get(name)
                pid = proc.pid if proc and proc.alive() else None
            else:
                pid = self._status().get(name, {}).get("pid")
            return pid if pid and pid != old.get(name) else None

        next_api = 0.0
        while time.monotonic() < deadline:
            st = self._status() if self.mode != "direct" else {}
            for name in names:
                if name not in pids:
                    pid = new_pid(name)
                    if pid:
                        pids[name] = pid
                if (name in pids and name not in ready and st.get(name, {}).get("ready")
                        and st[name].get("pid") == pids[name]):
                    ready[name] = time.time()
            if time.monotonic() >= next_api:  # the control plane's view: every 0.5 s
                next_api = time.monotonic() + 0.5
                for agent in self.cp.neutron_agents():
                    for name, kind in NEUTRON_TYPES.items():
                        if (name in names and name not in beat
                                and agent.get("agent_type") == kind and agent.get("started_at")
                                and utc(agent["started_at"]) >= t0 - 0.5):
                            beat[name] = utc(agent["started_at"])
                if "nova-compute" in names and "nova-compute" not in beat:
                    svc = self.cp.compute_service_up("e2e-node", t0)
                    if svc:
                        beat["nova-compute"] = utc(svc["updated_at"] or svc["created_at"])
            want_ready = self.mode != "direct"
            if (all(n in beat for n in names if n in NEUTRON_TYPES or n == "nova-compute")
                    and len(pids) == len(names)
                    and (not want_ready or all(n in ready for n in names))):
                break
            time.sleep(0.1)  # a poll of /proc, the control socket and the API
        rpc: dict[str, float | None] = {}
        if rpc_proc is not None:
            rpc_proc.popen.wait(timeout + 30)
            lines = (self.node.root / "rpc-first.out").read_text().splitlines()
            rpc = json.loads(lines[-1])
        out = {}
        for name in names:
            pid = pids.get(name)
            row = {"spawn": started(pid) if pid else None,
                   "first_log": first_log(self.node.log_dir / f"{name}.log", pid) if pid else None,
                   "rpc": rpc.get(RPC_TOPICS.get(name, "")),
                   "heartbeat": beat.get(name),
                   "ready": ready.get(name)}
            out[name] = {k: (round(v - t0, 2) if v else None) for k, v in row.items()}
            self.pids[name] = pid or 0
        return out

    def preloaders(self) -> list[int]:
        """The supervisor's preloader children (they hold the shared pages: counted too)."""
        from hvsupervisor.process import children

        if self.node.supervisor is None:
            return []
        sup = self.node.supervisor.pid
        return [pid for pid, ppid in children.proc_ppids().items()
                if ppid == sup and "hvsupervisor.agents.preloader" in children.cmdline(pid)]

    def memory(self) -> dict:
        from hvsupervisor.process import children

        def tree(pid: int) -> tuple[int, int]:  # the agent and its workers (cotyledon forks)
            rows = [pss_kib(p) for p in (pid, *children.descendants(pid))]
            return sum(r[0] for r in rows), sum(r[1] for r in rows)

        per = {n: tree(p) for n, p in self.pids.items()}
        pre = [pss_kib(p) for p in self.preloaders()]
        six = sum(v[0] for v in per.values())
        return {"pss_sum_mib": round((six + sum(v[0] for v in pre)) / 1024, 1),
                "pss_six_mib": round(six / 1024, 1),
                "pss_preloaders_mib": [round(v[0] / 1024, 1) for v in pre],
                "rss_sum_mib": round(sum(v[1] for v in per.values()) / 1024, 1),
                "pss_mib": {n: round(v[0] / 1024, 1) for n, v in per.items()}}

    # -- the three operations -------------------------------------------------
    def start(self) -> dict:
        from tests.fixtures.controlplane import spawn_supervisor

        t0 = time.time()
        if self.mode == "direct":
            for name in self.order:
                self._spawn_direct(name)
        else:
            spawn_supervisor(self.cp, self.node)
        return self._watch(self.order, t0, {})

    def restart_ovs(self) -> dict:
        name = "neutron-openvswitch-agent"
        old = dict(self.pids)
        t0 = time.time()
        if self.mode == "direct":
            self._stop_direct(name)
            self._spawn_direct(name)
        else:
            r = self._cli("restart", name)
            assert r.returncode == 0, r.stderr
        return self._watch([name], t0, old)

    def reload_neutron(self) -> dict:
        names = [n for n in self.order if n in NEUTRON_TYPES]
        old = dict(self.pids)
        snippet = self.node.override / "neutron" / "neutron.conf.d" / "60-bench.conf"
        snippet.write_text("[DEFAULT]\ndebug = true\n")
        t0 = time.time()
        if self.mode == "direct":
            for name in names:
                self._stop_direct(name)
            for name in names:
                self._spawn_direct(name)
        else:
            r = self._cli("reload", "--format", "json")
            assert r.returncode in (0, 3), r.stderr
        return self._watch(names, t0, old)

    def stop(self) -> None:
        if self.node.supervisor is not None and self.node.supervisor.alive():
            self.node.supervisor.stop(timeout=200)
        for name in list(self.node.procs):
            self._stop_direct(name)


def settle(seconds: float) -> None:
    """Let the agents' first resyncs pass before the next operation (not a synchronisation:
    the next operation times its own events)."""
    time.sleep(seconds)


def measure(cp, root: Path, mode: str, hold: float, every: float = 300.0) -> dict:
    run = Run(cp, root / mode, mode)
    out: dict = {"mode": mode}
    try:
        out["start"] = run.start()
        settle(10)
        out["memory_at_start"] = run.memory()
        out["restart_ovs_agent"] = run.restart_ovs()
        settle(10)
        out["reload_neutron"] = run.reload_neutron()
        series = []  # the six's Pss over the hold: do copy-on-write pages stay shared?
        t_hold = time.monotonic()
        while time.monotonic() - t_hold < hold:
            settle(min(every, hold - (time.monotonic() - t_hold)))
            mem = run.memory()
            series.append({"after_s": round(time.monotonic() - t_hold),
                           "pss_sum_mib": mem["pss_sum_mib"],
                           "pss_preloaders_mib": mem["pss_preloaders_mib"]})
            print(json.dumps({"figure": f"agent_pss_{mode}", "unit": "MiB", **series[-1]}),
                  flush=True)
        out["memory_settled"] = {"after_s": hold, **run.memory(), "series": series}
    finally:
        run.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="direct,hvsupervisor,hvsupervisor-preload",
                    help="comma list of direct, hvsupervisor, hvsupervisor-preload")
    ap.add_argument("--hold", type=float, default=0.0,
                    help="seconds to keep the agents running before the settled memory figure")
    ap.add_argument("--every", type=float, default=300.0,
                    help="during --hold, sample the Pss sum this often (a JSON line each)")
    ap.add_argument("--quick", action="store_true",
                    help="benchmarks/run's flag: the same three operations (each is one run)")
    args = ap.parse_args()
    import pwd

    from tests.e2e import controlplane as cpmod
    from tests.fixtures.controlplane import ready_for_users
    subprocess.run(["systemd-sysusers", str(REPO / "units" / "sysusers.d" / "hvsupervisor.conf")],
                   check=True, capture_output=True)
    results = {}
    base = Path(tempfile.mkdtemp(prefix="hvbench-start-"))
    base.chmod(0o711)
    try:
        cp = cpmod.start_control_plane(base / "cp")
        try:
            ready_for_users(cp, pwd.getpwnam("nova").pw_gid)
            for mode in args.modes.split(","):
                results[mode] = measure(cp, base, mode, args.hold, args.every)
                print(json.dumps({"figure": f"agent_start_{mode}", "unit": "s",
                                  "results": results[mode]}), flush=True)
        finally:
            cp.stop()
            left = cp.ns.destroy()
            if left:
                print(f"processes left in {cp.ns.name}: {left}", file=sys.stderr)
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(base, ignore_errors=True)

    def last(res: dict, op: str, key: str) -> float | None:
        vals = [row[key] for row in res.get(op, {}).values() if row.get(key) is not None]
        return max(vals) if vals else None

    side = {m: {"start_to_all_ready_s": last(r, "start", "ready"),
                "start_to_last_heartbeat_s": last(r, "start", "heartbeat"),
                "restart_ovs_to_ready_s": last(r, "restart_ovs_agent", "ready"),
                "restart_ovs_to_heartbeat_s": last(r, "restart_ovs_agent", "heartbeat"),
                "reload_to_all_ready_s": last(r, "reload_neutron", "ready"),
                "reload_to_last_heartbeat_s": last(r, "reload_neutron", "heartbeat"),
                "pss_sum_mib_start": r.get("memory_at_start", {}).get("pss_sum_mib"),
                "pss_sum_mib_settled": r.get("memory_settled", {}).get("pss_sum_mib")}
            for m, r in results.items()}
    direct_pss = side.get("direct", {}).get("pss_sum_mib_settled")
    goal = {m: {"start_to_all_ready_s<=6": (v["start_to_all_ready_s"] or 99) <= 6,
                "reload_to_all_ready_s<=4": (v["reload_to_all_ready_s"] or 99) <= 4,
                "restart_ovs_to_ready_s<=3": (v["restart_ovs_to_ready_s"] or 99) <= 3,
                "pss_30pct_below_direct": (None if not direct_pss else
                                           (v["pss_sum_mib_settled"] or 1e9)
                                           <= 0.7 * direct_pss)}
            for m, v in side.items() if m != "direct"}
    print(json.dumps({"figure": "agent_start", "unit": "s", "results": side, "goal": goal}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
