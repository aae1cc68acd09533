"""An agent stand-in for the broker tests: reports who it is, then acts.

``privsep_agent.py whoami``: one JSON line with its own uid, CapEff, CapBnd,
NoNewPrivs, then the privsep daemon's answer (through helper_command, from
the environment, like an agent the supervisor runs as its own user).
``privsep_agent.py run ARGV...``: runs ARGV (the broker client) as a child
and prints {"rc": N}: the client is then in the agent's process tree.
"""

from __future__ import annotations

import json
import subprocess
import sys


def status() -> dict:
    wanted = {"Uid", "Gid", "Groups", "CapEff", "CapBnd", "CapPrm", "NoNewPrivs"}
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in wanted:
                found[key] = value.split()
    return found


def main() -> int:
    if sys.argv[1] == "whoami":
        from oslo_config import cfg

        from tests import privsep_ctx

        cfg.CONF(args=[], project="hvsup-test", default_config_files=[],
                 default_config_dirs=[])
        me = status()
        print(json.dumps({"self": me, "daemon": privsep_ctx.whoami()}), flush=True)
        return 0
    proc = subprocess.run(sys.argv[2:])
    print(json.dumps({"rc": proc.returncode}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
