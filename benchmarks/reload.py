#!/usr/bin/env python3
"""Reload: plan + digest of 1,000 conf.d snippets, and a no-op reload.

Six stand-in agents share one conf.d dir of 1,000 snippets (as the neutron
agents share neutron.conf.d). Figures:

* plan_ms: ``load_settings`` + ``build_plans`` in-process (first call, then
  the median of the next ones): resolve layers, read, parse and digest every
  file; the work a reload does before deciding anything;
* validate_cli_ms: ``hvsupervisor config validate`` as a command (includes
  the interpreter start);
* noop_reload_ms: ``{"cmd":"reload"}`` through the control socket of a
  running supervisor, reply included; restarts must be 0, checked by the
  agents' pids (before/after, from /proc) and the reply's ``restarted``.

For reference, the no-op reload of supervisord (XML-RPC reloadConfig, i.e.
``supervisorctl reread``, plus ``update`` semantics: nothing changed) and
circus (``reloadconfig``) over their own six-program config; they have no
conf.d of agent config files to digest, so this is not the same work.
JSON line: reload.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import _common as c

SNIPPETS = 1000


def write_snippets(d: c.HvSupervisor, count: int) -> None:
    confd = d.defaults / "svc" / "conf.d"
    confd.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (confd / f"{i:04d}-snippet.conf").write_text(
            f"[DEFAULT]\nbench_opt_{i} = value-{i}\n[section_{i % 20}]\nkey_{i} = {i}\n")


def plan_times(d: c.HvSupervisor, reps: int) -> dict:
    from hvsupervisor.config.settings import load_settings
    from hvsupervisor.host.facts import plans_for

    times = []
    for _ in range(reps):
        t = time.perf_counter()
        plans = plans_for(load_settings(d.defaults, d.override))
        times.append((time.perf_counter() - t) * 1000)
    files = len(next(iter(plans.values())).files)
    return {"first_ms": round(times[0], 1), "median_ms": round(statistics.median(times[1:]), 1),
            "files_per_agent": files, "agents": len(plans)}


def validate_cli(d: c.HvSupervisor) -> float:
    t = time.perf_counter()
    subprocess.run([c.PYTHON, "-m", "hvsupervisor", "--defaults-dir", str(d.defaults),
                    "--override-dir", str(d.override), "config", "validate"],
                   env=d.env(), check=True, stdout=subprocess.DEVNULL)
    return round((time.perf_counter() - t) * 1000, 1)


def agent_pids(d: c.Daemon) -> set[int]:
    return {p for p, cmd in c.children(d.pid).items() if "bench-" in cmd}


def hv_noop(d: c.HvSupervisor, reps: int) -> dict:
    d.wait_ready(120)
    before = agent_pids(d)
    times, restarted = [], []
    for _ in range(reps):
        t = time.perf_counter()
        reply = d.control({"cmd": "reload"}, 120)
        times.append((time.perf_counter() - t) * 1000)
        restarted += reply.get("restarted", [])
    after = agent_pids(d)
    return {"first_ms": round(times[0], 1), "median_ms": round(statistics.median(times), 1),
            "reloads": reps, "restarted": restarted, "pids_unchanged": before == after,
            "rss_mib": round(c.sample(d.pid).rss_kib / 1024, 1)}


def supervisord_noop(d: c.Supervisord, reps: int) -> dict:
    d.wait_running(60)
    before = agent_pids(d)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        added, changed, removed = d.rpc().supervisor.reloadConfig()[0]
        times.append((time.perf_counter() - t) * 1000)
    after = agent_pids(d)
    return {"median_ms": round(statistics.median(times), 1), "changed": changed + added + removed,
            "pids_unchanged": before == after}


def circus_noop(d: c.Circus, events: c.ProcEvents, reps: int) -> dict:
    events.wait_execs(d.pid, d.start_ns, len(d.agents), 60)
    before = agent_pids(d)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        d.call({"command": "reloadconfig", "properties": {"waiting": True}}, 60)
        times.append((time.perf_counter() - t) * 1000)
    after = agent_pids(d)
    return {"median_ms": round(statistics.median(times), 1), "pids_unchanged": before == after}


def main() -> int:
    c.parse_args(__doc__)
    reps = 3 if c.quick() else 5
    agents = c.standins(6)
    events = c.ProcEvents()
    with c.Workspace("reload") as ws:
        hv = c.HvSupervisor(ws.sub("hv"), agents, config_dirs="svc/conf.d")
        write_snippets(hv, SNIPPETS)
        plan = plan_times(hv, reps + 1)
        cli_ms = validate_cli(hv)
        ws.track(hv).start(events)
        noop = hv_noop(hv, reps)
        sd = ws.track(c.Supervisord(ws.sub("supervisord"), agents))
        ci = ws.track(c.Circus(ws.sub("circus"), agents))
        sd.start(events)
        ci.start(events)
        others = {"supervisord": supervisord_noop(sd, reps),
                  "circus": circus_noop(ci, events, reps)}
    events.close()
    ok = noop["median_ms"] <= 300 and not noop["restarted"] and noop["pids_unchanged"]
    c.emit("reload", snippets=SNIPPETS, plan=plan, validate_cli_ms=cli_ms,
           results={"hvsupervisor": noop, **others},
           goal={"noop_reload_ms_max": 300, "restarts": 0, "met": ok})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
