#!/usr/bin/env python3
"""Scale: 50 and 200 stand-in agents, from exec of the supervisor to all running.

For each supervisor: time to the exec of the last agent (kernel timestamps),
for hvsupervisor also to READY=1 (all agents ready), for supervisord to all
RUNNING as seen over XML-RPC (50 ms polling), and the supervisor's RSS once
everything runs. --quick runs 50 only. JSON lines: scale_50, scale_200.
"""

from __future__ import annotations

import _common as c


def main() -> int:
    c.parse_args(__doc__)
    sizes = [50] if c.quick() else [50, 200]
    events = c.ProcEvents()
    with c.Workspace("scale") as ws:
        for n in sizes:
            agents = c.standins(n)
            results = {kind: c.startup(kind, ws.sub(f"{kind}-{n}"), agents, events)
                       for kind in ("hvsupervisor", "supervisord", "circus")}
            rss = results["hvsupervisor"]["rss_mib"]
            c.emit(f"scale_{n}", unit="ms", agents=n, results=results,
                   goal={"rss_mib_max": 40, "met": rss <= 40})
    events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
