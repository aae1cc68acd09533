#!/usr/bin/env python3
"""Time from exec of the supervisor to READY=1, six instant-ready stand-ins.

hvsupervisor runs with NOTIFY_SOCKET pointing at a fake notify socket; the
stand-ins send READY=1 on their own per-agent sockets as soon as they run
(--ready-after 0), and hvsupervisor sends READY=1 when all six are ready.
supervisord and circus have no sd_notify: for all three we also print the
time from exec of the supervisor to the exec of its sixth agent (kernel
proc-connector timestamps), which is comparable.

Repeated (5 times, 3 with --quick); prints median and max. JSON line: ready_time.
"""

from __future__ import annotations

import statistics

import _common as c


def main() -> int:
    c.parse_args(__doc__)
    reps = 3 if c.quick() else 5
    agents = c.standins(6)
    events = c.ProcEvents()
    runs: dict[str, list[dict]] = {"hvsupervisor": [], "supervisord": [], "circus": []}
    with c.Workspace("ready") as ws:
        for i in range(reps):
            for kind in runs:
                runs[kind].append(c.startup(kind, ws.sub(f"{kind}-{i}"), agents, events))
    events.close()
    results = {}
    for kind, rs in runs.items():
        res = {}
        for key in ("ready_ms", "all_exec_ms", "first_exec_ms", "all_running_seen_ms"):
            vals = [r[key] for r in rs if key in r]
            if vals:
                res[key] = {"median": round(statistics.median(vals), 1), "max": max(vals)}
        res["rss_mib"] = max(r["rss_mib"] for r in rs)
        results[kind] = res
    ready = results["hvsupervisor"]["ready_ms"]["median"]
    c.emit("ready_time", unit="ms", agents=len(agents), repetitions=reps, results=results,
           goal={"ready_ms_max": 500, "met": ready <= 500})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
