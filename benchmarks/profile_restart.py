#!/usr/bin/env python3
"""Where hvsupervisor's restart time goes: a timeline of one SIGKILL -> exec.

Not part of ``run``: a tool for when ``restart_latency`` misses its goal.
It runs hvsupervisor with the functions on the restart path wrapped in
timers (in the supervisor process: see ``--child``), kills an agent n times
and, per kill, puts the supervisor's own timestamps on one line with the
kernel's exit and exec events:

    kill -> exit (kernel) -> reap() entered (loop wakeup) -> _spawn entered
    -> Popen returned -> exec (kernel)

and prints the median of each step and the median time spent inside each
wrapped function per restart, as JSON.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import sys
import time

import _common as c

WRAPPED = [
    ("hvsupervisor.process.children", "Reaper", "reap"),
    ("hvsupervisor.supervisor", "Supervisor", "_on_exit"),
    ("hvsupervisor.supervisor.loop", None, "last_line"),
    ("hvsupervisor.supervisor", "Supervisor", "_drain"),
    ("hvsupervisor.supervisor", "Supervisor", "_refresh_conditions"),
    ("hvsupervisor.supervisor", "Supervisor", "_report"),
    ("hvsupervisor.supervisor", "Supervisor", "_spawn"),
    ("hvsupervisor.supervisor", "Supervisor", "_output_fds"),
    ("hvsupervisor.core.lifecycle", "AgentLifecycle", "handle"),
    ("hvsupervisor.process.children", None, "spawn"),
    ("hvsupervisor.process.children", None, "child_env"),
    ("hvsupervisor.process.children", None, "_resolve"),
    ("hvsupervisor.process.children", None, "_kernel_ignored_signals"),
    ("subprocess", "Popen", "__init__"),
    ("logging", "Logger", "_log"),
]


def child(out: str, argv: list[str]) -> int:
    """Inside the supervisor process: wrap, run, dump the records at exit."""
    import functools
    import importlib

    records: list[tuple[str, int, int]] = []

    def wrap(name, fn):
        @functools.wraps(fn)
        def timed(*a, **kw):
            t = time.monotonic_ns()
            try:
                return fn(*a, **kw)
            finally:
                records.append((name, t, time.monotonic_ns() - t))
        return timed

    for mod, cls, fn in WRAPPED:
        m = importlib.import_module(mod)
        owner = getattr(m, cls) if cls else m
        setattr(owner, fn, wrap(f"{cls + '.' if cls else ''}{fn}", getattr(owner, fn)))
    from hvsupervisor.cmd import cli

    try:
        return cli.main(argv)
    finally:
        with open(out, "w") as f:
            json.dump(records, f)


def main() -> int:
    c.parse_args(__doc__)
    n = 10 if c.quick() else 30
    events = c.ProcEvents()
    with c.Workspace("profile") as ws:
        out = str(ws.path / "records.json")
        hv = c.HvSupervisor(ws.sub("hv"), c.standins(6))
        base = hv.command()
        hv.command = lambda: [c.PYTHON, __file__, "--child", out, *base[3:]]  # type: ignore
        ws.track(hv).start(events)
        hv.wait_ready(60)
        kills = []
        for _ in range(n):
            hv.wait_ready(30)
            time.sleep(random.uniform(0.1, 0.3))
            pids = [p for p, cmd in c.children(hv.pid).items() if "bench-" in cmd]
            victim = random.choice(pids)
            t0 = time.monotonic_ns()
            os.kill(victim, signal.SIGKILL)
            ts, _ = events.wait_exec(hv.pid, t0, 10)
            kills.append((t0, events.exits.get(victim), ts))
        hv.stop()
        with open(out) as f:
            records = json.load(f)
    events.close()
    steps: dict[str, list[float]] = {}
    inside: dict[str, list[float]] = {}
    for t0, died, execd in kills:
        win = [r for r in records if t0 <= r[1] <= execd]
        first = {}
        for name, t, dur in sorted(win, key=lambda r: r[1]):
            first.setdefault(name, (t, dur))
        per: dict[str, float] = {}
        for name, _t, dur in win:
            per[name] = per.get(name, 0) + dur / 1e6
        for name, ms in per.items():
            inside.setdefault(name, []).append(ms)
        if died and "Reaper.reap" in first and "Supervisor._spawn" in first:
            reap_t = first["Reaper.reap"][0]
            spawn_t = first["Supervisor._spawn"][0]
            popen_t, popen_d = first.get("Popen.__init__", (spawn_t, 0))
            for key, val in (("kill_to_exit", died - t0), ("exit_to_reap", reap_t - died),
                             ("reap_to_spawn", spawn_t - reap_t),
                             ("spawn_to_popen_return", popen_t + popen_d - spawn_t),
                             ("popen_return_to_exec", execd - popen_t - popen_d),
                             ("total", execd - t0)):
                steps.setdefault(key, []).append(val / 1e6)
    med = {k: round(statistics.median(v), 3) for k, v in steps.items()}
    ins = {k: round(statistics.median(v), 3) for k, v in sorted(inside.items())}
    c.emit("restart_profile", n=n, step_median_ms=med, inside_median_ms_per_restart=ins)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        raise SystemExit(child(sys.argv[2], sys.argv[3:]))
    raise SystemExit(main())
