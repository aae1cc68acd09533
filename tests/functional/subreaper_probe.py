"""Run as a separate process: be a child subreaper, like the supervisor.

Kept out of the pytest process on purpose: a subreaper pytest would inherit
every orphan of every other fixture (ovsdb-server --detach, libvirtd
helpers) for the rest of the session, and those would linger as zombies,
making "process is gone" checks in other tests lie. Here the subreaper's
life is one short process that reaps what it inherits with ``Reaper``.

Usage: python -m tests.functional.subreaper_probe STANDIN PIDFILE
Prints one JSON object describing what it saw.
"""

import asyncio
import json
import os
import signal
import sys
import time

from hvsupervisor.process.children import (
    Reaper,
    descendants,
    set_child_subreaper,
    signal_all,
    spawn,
)


async def probe(standin: str, pidfile: str) -> dict:
    loop = asyncio.get_running_loop()
    exits: dict[int, tuple] = {}
    changed = asyncio.Event()

    def on_exit(pid, rc, sig):
        exits[pid] = (rc, sig)
        changed.set()

    async def wait_exit(pid, timeout=10.0):
        deadline = loop.time() + timeout
        while pid not in exits:
            changed.clear()
            await asyncio.wait_for(changed.wait(), max(0.0, deadline - loop.time()))
        return exits[pid]

    set_child_subreaper()
    reaper = Reaper(on_exit)
    reaper.install()
    devnull = os.open(os.devnull, os.O_WRONLY)
    pid = spawn([sys.executable, standin, "--setsid-grandchild", pidfile,
                 "--crash-after", "0", "--exit-code", "3"], dict(os.environ), devnull, devnull)
    os.close(devnull)
    agent_exit = await wait_exit(pid)
    with open(pidfile) as f:
        grandchild = int(f.read())
    found = descendants()
    sid = os.getsid(grandchild)
    with open(f"/proc/{grandchild}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    t0 = time.monotonic()
    sent = signal_all(list(found), signal.SIGTERM)
    gc_exit = await wait_exit(grandchild)
    reap_ms = (time.monotonic() - t0) * 1000
    reaper.close()
    return {
        "me": os.getpid(), "agent": pid, "agent_exit": agent_exit,
        "grandchild": grandchild, "grandchild_ppid": ppid, "grandchild_sid": sid,
        "descendants": {str(k): v for k, v in found.items()}, "sent": sent,
        "grandchild_exit": gc_exit, "grandchild_in_proc": os.path.exists(f"/proc/{grandchild}"),
        "left": list(descendants()), "reap_ms": reap_ms,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(asyncio.wait_for(probe(sys.argv[1], sys.argv[2]), 20))))
