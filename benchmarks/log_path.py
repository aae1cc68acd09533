#!/usr/bin/env python3
"""Log path: one stand-in writing to stdout as fast as it can, and one 10 MB line.

Each supervisor sends the agent's output to a file (hvsupervisor: its
file-log mode, ``journal_socket`` pointing nowhere; supervisord:
stdout_logfile without rotation; circus: FileStream). Figures per
supervisor: bytes the agent wrote, bytes that reached the log file, MB/s,
the supervisor's CPU ticks (utime+stime, 1/100 s) and peak RSS while it
lasted. hvsupervisor hands the file (or journald stream) to the agent as its
fd 1/2, so it is not in the data path at all; supervisord and circus read a
pipe and write the file themselves.

Flood: 10 s (3 s with --quick). JSON lines: log_flood, log_big_line.
"""

from __future__ import annotations

import os
import re
import time

import _common as c

BIG = 10_000_000


def tail(path: os.PathLike, size: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - size))
            return f.read()
    except OSError:
        return b""


def make(kind: str, root, agent: c.AgentDef) -> c.Daemon:
    if kind == "hvsupervisor":
        return c.HvSupervisor(root, [agent])
    if kind == "supervisord":
        return c.Supervisord(root, [agent])
    return c.Circus(root, [agent])


def run_one(kind: str, agent: c.AgentDef, events: c.ProcEvents, done, timeout: float) -> dict:
    with c.Workspace(f"log-{kind}") as ws:
        d = ws.track(make(kind, ws.sub(kind), agent))
        d.start(events)
        events.wait_exec(d.pid, d.start_ns, 60)
        log = d.agent_log(agent.name)
        first = c.sample(d.pid)
        peak = first.rss_kib
        t0 = time.monotonic()
        finished = None
        while time.monotonic() - t0 < timeout:
            s = c.sample(d.pid)
            peak = max(peak, s.rss_kib)
            finished = done(log)
            if finished is not None:
                break
            time.sleep(0.1)
        last = c.sample(d.pid)
        size = log.stat().st_size if log.exists() else 0
        out = {"delivered_bytes": size, "complete": finished is not None,
               "seconds_to_complete": round(time.monotonic() - t0, 1),
               "cpu_ticks": last.ticks - first.ticks,
               "rss_mib_start": round(first.rss_kib / 1024, 1),
               "rss_mib_peak": round(max(peak, last.rss_kib) / 1024, 1)}
        out["hwm_mib"] = round(last.hwm_kib / 1024, 1)  # peak RSS since start, kernel's
        if type(finished) is int:
            out["written_bytes"] = finished
        try:
            log.unlink()  # gigabytes: free them before the next supervisor
        except OSError:
            pass
        return out


def flood_done(log) -> int | None:
    m = re.search(rb"flood done bytes=(\d+)", tail(log))
    return int(m.group(1)) if m else None


def big_done(log) -> bool | None:
    try:
        return True if log.stat().st_size > BIG else None
    except OSError:
        return None


def main() -> int:
    c.parse_args(__doc__)
    seconds = 3.0 if c.quick() else 10.0
    events = c.ProcEvents()
    kinds = ("hvsupervisor", "supervisord", "circus")
    flood = c.AgentDef("flood", ["--flood", str(seconds)])
    res = {k: run_one(k, flood, events, flood_done, seconds + 30) for k in kinds}
    for r in res.values():
        r["mb_per_s"] = round(r["delivered_bytes"] / seconds / 1e6, 1)
    c.emit("log_flood", seconds=seconds, sink="file", results=res)
    big = c.AgentDef("bigline", ["--big-line", str(BIG)])
    res = {k: run_one(k, big, events, big_done, 30) for k in kinds}
    c.emit("log_big_line", line_bytes=BIG, sink="file", results=res)
    events.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
