"""An agent stand-in for the broker tests: reports who it is, then acts.

``privsep_agent.py whoami``: one JSON line with its own uid, CapEff, CapBnd,
NoNewPrivs, then the privsep daemon's answer (through helper_command, from
the environment, like an agent the supervisor runs as its own user).
``privsep_agent.py serve REPORT``: the same, written to REPORT, then it
stays up until signalled (an agent under ``hvsupervisor run``).
``privsep_agent.py run ARGV...``: runs ARGV (the broker client) as a child
and prints {"rc": N}: the client is then in the agent's process tree.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def status() -> dict:
    wanted = {"Uid", "Gid", "Groups", "CapEff", "CapBnd", "CapPrm", "NoNewPrivs"}
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in wanted:
                found[key] = value.split()
    return found


def report() -> str:
    from oslo_config import cfg

    from tests import privsep_ctx

    cfg.CONF(args=[], project="hvsup-test", default_config_files=[], default_config_dirs=[])
    t0 = time.monotonic()
    daemon = privsep_ctx.whoami()  # the first call starts the privsep daemon
    started = time.monotonic() - t0
    return json.dumps({"self": status(), "daemon": daemon, "start_s": started})


def main() -> int:
    if sys.argv[1] == "whoami":
        print(report(), flush=True)
        return 0
    if sys.argv[1] == "serve":
        text = report()
        with open(sys.argv[2] + ".tmp", "w") as f:
            f.write(text)
        os.rename(sys.argv[2] + ".tmp", sys.argv[2])
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        while True:
            signal.pause()
    proc = subprocess.run(sys.argv[2:])
    print(json.dumps({"rc": proc.returncode}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
