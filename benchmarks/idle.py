#!/usr/bin/env python3
"""Idle cost: wakeups per second, CPU ticks and RSS over 30 s, six idle stand-ins.

All three supervisors run side by side in one window (10 s with --quick),
once every agent runs; hvsupervisor with its watchdog off (no WATCHDOG_USEC
in its environment) and a fake notify socket. A wakeup is a context switch
(voluntary + involuntary, summed over all threads of the supervisor:
/proc/PID/task/*/status); CPU is utime+stime from /proc/PID/stat in ticks
of 1/SC_CLK_TCK s. supervisord polls once a second, circus runs a periodic
check every check_delay (1 s here): that is the point of the comparison.
JSON line: idle.
"""

from __future__ import annotations

import time

import _common as c


def main() -> int:
    c.parse_args(__doc__)
    window = 10.0 if c.quick() else 30.0
    agents = c.standins(6)
    events = c.ProcEvents()
    with c.Workspace("idle") as ws:
        notify = c.NotifyRecorder(str(ws.path / "notify.sock"))
        daemons: list[c.Daemon] = [
            ws.track(c.HvSupervisor(ws.sub("hv"), agents, notify=notify.path)),
            ws.track(c.Supervisord(ws.sub("supervisord"), agents)),
            ws.track(c.Circus(ws.sub("circus"), agents)),
        ]
        for d in daemons:
            d.start(events)
        for d in daemons:
            events.wait_execs(d.pid, d.start_ns, len(agents), 60)
        notify.wait_for("READY", "1", 60)
        daemons[1].wait_running(60)  # type: ignore[attr-defined]
        time.sleep(1.0)  # let start-up log writes and the last READY settle
        before = {d.name: c.sample(d.pid) for d in daemons}
        notes_before = len(notify.messages)
        time.sleep(window)
        results = {d.name: c.idle_figures(before[d.name], c.sample(d.pid)) for d in daemons}
        results["hvsupervisor"]["notify_messages_in_window"] = len(notify.messages) - notes_before
        notify.close()
    events.close()
    ours = results["hvsupervisor"]
    c.emit("idle", agents=len(agents), watchdog="off", clk_tck=c.CLK_TCK, results=results,
           goal={"wakeups_per_s_max": 0, "rss_mib_max": 40,
                 "met": ours["wakeups_per_s"] == 0 and ours["rss_mib"] <= 40})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
