#!/usr/bin/env python3
"""How long ``hvsupervisor status`` takes, as an operator types it, against a running node.

hvsupervisor runs six instant-ready stand-ins; once it is ready, ``python -m
hvsupervisor status`` runs N times (30, 10 with --quick) as a fresh process,
timed from fork to exit: the table and ``--format json`` with the run dir
found from the config files, and the table with ``--run-dir`` given. Also
reported: whether the status path imports oslo.log or oslo.config's option
registry (it must not: they cost ~150-250 ms and the answer needs neither),
and the bare
interpreter start (``python -c pass``) as the floor. Needs no root.
JSON line: cli_latency.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import _common as c

HEAVY = ("oslo_log", "oslo_config.cfg")  # oslo_config.iniparser alone is cheap


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.monotonic_ns()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.monotonic_ns() - t) / 1e6


def _figures(values: list[float]) -> dict:
    return {"median_ms": round(statistics.median(values), 1),
            "p95_ms": round(c.pct(values, 95), 1), "max_ms": round(max(values), 1)}


def main() -> int:
    c.parse_args(__doc__)
    n = 10 if c.quick() else 30
    agents = c.standins(6)
    with c.Workspace("cli") as ws:
        notify = c.NotifyRecorder(str(ws.path / "notify.sock"))
        hv = ws.track(c.HvSupervisor(ws.sub("hv"), agents, notify=notify.path))
        hv.start()
        notify.wait_for("READY", "1", 60)
        env = hv.env()
        env.pop("NOTIFY_SOCKET", None)
        hv_cmd = [c.PYTHON, "-m", "hvsupervisor"]
        # As an operator types it: the run dir found from the config (config/lookup.py)...
        by_config = hv_cmd + ["--defaults-dir", str(hv.defaults),
                              "--override-dir", str(hv.override), "status"]
        # ... and named on the command line.
        by_flag = hv_cmd + ["--run-dir", str(hv.run_dir), "status"]
        commands = {"python_floor": [c.PYTHON, "-c", "pass"], "status_table": by_config,
                    "status_json": by_config + ["--format", "json"],
                    "status_run_dir_flag": by_flag}
        for argv in commands.values():  # warm the page cache and .pyc files
            _timed(argv, env)
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(n):  # interleaved, so load changes hit every variant alike
            for key, argv in commands.items():
                times[key].append(_timed(argv, env))
        results = {k: _figures(v) for k, v in times.items()}
        base = by_config
        trace = subprocess.run([c.PYTHON, "-X", "importtime", *base[1:]], env=env, check=True,
                               capture_output=True, text=True).stderr
        imported = {m: any(line.rstrip().endswith(f"| {m}") for line in trace.splitlines())
                    for m in HEAVY}
        notify.close()
    median = results["status_table"]["median_ms"]
    c.emit("cli_latency", unit="ms", repetitions=n, results=results, imports=imported,
           goal={"status_median_ms_max": 100, "imports_oslo": False,
                 "met": median <= 100 and not any(imported.values())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
