#!/usr/bin/env python3
"""Health probes: READY of 6 RPC stand-ins, the cost of a probe, idle wakeups with probes.

Six oslo.messaging RPC stand-ins (tests/rpc_standin.py) on a real RabbitMQ
(Debian's, on private loopback ports: tests/fixtures/rabbit.py), each with
``ready = rpc:standin/<topic>@1.0``, under hvsupervisor. Three figures:

* ``health_ready``: supervisor start to READY=1 (every stand-in answered
  on its own queue); the stand-ins' own start (importing oslo.messaging on
  a shared 2-core box) is most of it;
* ``health_probe_cost``: with ``health_interval = 1`` for a window, the CPU
  (utime+stime ticks) of the supervisor and of the prober per probe, and
  both RSS;
* ``health_idle``: with the default ``health_interval = 60``, wakeups per
  second of the supervisor and the prober over a window (the goal: nothing
  besides the configured probes, i.e. a handful of wakeups per probe).

Needs Debian's rabbitmq-server (run_tests installs it).
JSON lines: health_ready, health_probe_cost, health_idle.
"""

from __future__ import annotations

import re
import time

import _common as c

from tests.rabbit import Rabbit

RPC_STANDIN = c.REPO / "tests" / "rpc_standin.py"


class RpcAgent(c.AgentDef):
    def argv(self) -> list[str]:
        return [c.PYTHON, str(RPC_STANDIN), "--topic", f"bench_{self.name}",
                "--endpoint-version", "1.0"]


def _supervisor(ws: c.Workspace, name: str, rabbit: Rabbit, agents: list[c.AgentDef],
                notify: str, interval: float) -> c.HvSupervisor:
    hv = ws.track(c.HvSupervisor(ws.sub(name), agents, notify=notify,
                                 supervisor_opts={"health_interval": str(interval)}))
    (hv.defaults / "svc" / "s.conf").write_text(
        f"[DEFAULT]\ntransport_url = {rabbit.url}\nhost = bench\n")
    catalog = hv.defaults / "hvsupervisor.conf"
    text = catalog.read_text()
    text = re.sub(r"\[agent:(\S+)\]\n(command = .*\n)(config_files = .*\n)ready = notify",
                  lambda m: f"[agent:{m[1]}]\n{m[2]}{m[3]}ready = rpc:standin/bench_{m[1]}@1.0",
                  text)
    catalog.write_text(text)
    return hv


def _prober_pid(hv: c.HvSupervisor) -> int:
    return next(pid for pid, cmd in c.children(hv.pid).items() if "health.prober" in cmd)


def _probes(hv: c.HvSupervisor) -> int:
    st = hv.control({"cmd": "status"})
    return sum((a.get("health") or {}).get("probes", 0) for a in st["agents"])


def main() -> int:
    c.parse_args(__doc__)
    window = 10.0 if c.quick() else 20.0
    idle_window = 30.0 if c.quick() else 120.0
    agents = [RpcAgent(f"agent{i:03d}") for i in range(6)]
    with c.Workspace("health") as ws:
        rabbit = Rabbit(ws.sub("rabbit"))
        try:
            rabbit.start()
            # READY and probe cost, probing every second.
            notify = c.NotifyRecorder(str(ws.path / "notify.sock"))
            hv = _supervisor(ws, "hv", rabbit, agents, notify.path, 1.0)
            hv.start()
            notify.wait_for("READY", "1", 120)
            ready_s = (time.monotonic_ns() - hv.start_ns) / 1e9
            c.emit("health_ready", agents=len(agents), kind="rpc",
                   results={"hvsupervisor": {"ready_s": round(ready_s, 2)}})
            time.sleep(2.0)
            prober = _prober_pid(hv)
            p0, s0, r0 = _probes(hv), c.sample(hv.pid), c.sample(prober)
            time.sleep(window)
            p1, s1, r1 = _probes(hv), c.sample(hv.pid), c.sample(prober)
            probes = max(1, p1 - p0)
            c.emit("health_probe_cost", agents=len(agents), interval_s=1.0,
                   window_s=round(s1.t - s0.t, 1), probes=probes, clk_tck=c.CLK_TCK,
                   results={"hvsupervisor": {
                       "supervisor_ms_cpu_per_probe": round(
                           (s1.ticks - s0.ticks) * 1000 / c.CLK_TCK / probes, 3),
                       "prober_ms_cpu_per_probe": round(
                           (r1.ticks - r0.ticks) * 1000 / c.CLK_TCK / probes, 3),
                       "supervisor_rss_mib": round(s1.rss_kib / 1024, 1),
                       "prober_rss_mib": round(r1.rss_kib / 1024, 1)}},
                   goal={"supervisor_rss_mib_max": 40,
                         "met": s1.rss_kib / 1024 <= 40})
            hv.stop()
            notify.close()

            # Idle at the default interval.
            notify = c.NotifyRecorder(str(ws.path / "notify2.sock"))
            hv = _supervisor(ws, "hv-idle", rabbit, agents, notify.path, 60.0)
            hv.start()
            notify.wait_for("READY", "1", 120)
            time.sleep(2.0)
            prober = _prober_pid(hv)
            p0, s0, r0 = _probes(hv), c.sample(hv.pid), c.sample(prober)
            time.sleep(idle_window)
            p1, s1, r1 = _probes(hv), c.sample(hv.pid), c.sample(prober)
            c.emit("health_idle", agents=len(agents), interval_s=60.0,
                   probes_in_window=p1 - p0, clk_tck=c.CLK_TCK, results={"hvsupervisor": {
                       "supervisor": c.idle_figures(s0, s1),
                       "prober": c.idle_figures(r0, r1),
                       "supervisor_wakeups_per_probe": round(
                           (s1.ctxsw - s0.ctxsw) / max(1, p1 - p0), 1)}})
            hv.stop()
            notify.close()
        finally:
            rabbit.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
