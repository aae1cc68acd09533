#!/usr/bin/env python3
"""What the privsep broker costs: context start time, user vs root, and RSS.

Needs root, oslo.privsep (tox -e functional's env) and useradd. For each
mode, an agent stand-in (tests/privsep_agent.py) makes its first oslo.privsep
call, which starts the privsep daemon; the figure is that call's duration as
the agent sees it (median of N):

* ``root``: the agent runs as root and helper_command is privsep-helper
  itself (today's shipped configuration);
* ``user``: the agent runs as a user with no capabilities and helper_command
  is the broker client; the broker (on this process's loop, as in the
  supervisor) authenticates it and starts privsep-helper.

RSS: this process's VmRSS before importing the broker modules and after
configuring one agent's socket, as the broker's share of a supervisor.
Prints one JSON line per figure.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    before = rss_kib()
    import shutil
    import tempfile

    from tests.functional import privsep_rig as rig_mod  # imports the broker

    scratch = tempfile.mkdtemp(prefix="hvsp-bench-")
    user = "hvspbench"
    ident = rig_mod.make_user(user)
    try:
        async def run():
            out = {"root": [], "user": []}
            async with rig_mod.Rig(Path(scratch)) as rig:
                rig.broker.configure({"bench": rig_mod.grant("bench", ident)})
                after = rss_kib()
                for _ in range(n):
                    rc, text = await rig.agent("bench", ident, "whoami")
                    out["user"].append(json.loads(text.splitlines()[-1])["start_s"])
                    rc, text = await _root_agent(rig)
                    out["root"].append(json.loads(text.splitlines()[-1])["start_s"])
            return out, after

        async def _root_agent(rig):
            env = rig.env("bench")
            env[rig_mod.SECTION_ENV] = f"{rig_mod.BINDIR}/privsep-helper"
            import os

            from hvsupervisor.process import children
            from hvsupervisor.systemd.journal import log_file_fd

            outp = Path(rig.run_dir) / "root.out"
            fd = log_file_fd(str(outp))
            try:
                pid = children.spawn([rig_mod.PY, rig_mod.AGENT, "whoami"], env, fd, fd)
            finally:
                os.close(fd)
            fut = asyncio.get_running_loop().create_future()
            rig.waiters[pid] = fut
            rc = await asyncio.wait_for(fut, 60)
            text = outp.read_text()
            outp.unlink()
            return rc, text

        figures, after = asyncio.run(run())
    finally:
        rig_mod.remove_user(user)
        shutil.rmtree(scratch, ignore_errors=True)
    for mode in ("root", "user"):
        print(json.dumps({"benchmark": "privsep_context_start", "mode": mode, "n": n,
                          "median_ms": round(statistics.median(figures[mode]) * 1000, 1),
                          "max_ms": round(max(figures[mode]) * 1000, 1)}))
    print(json.dumps({"benchmark": "privsep_broker_rss", "rss_before_kib": before,
                      "rss_with_broker_kib": after, "delta_kib": after - before,
                      "note": "delta includes the test rig's imports (asyncio, oslo-free)"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
