"""When does each RPC topic first answer? Run inside the control plane's netns.

A helper of agent_start.py: ``python benchmarks/_rpc_first.py URL SECONDS TOPIC...``
calls each ``EXCHANGE/TOPIC@VERSION`` the way the health prober does (a method
that does not exist, mandatory flag: "no consumer" comes back at once,
hvsupervisor/health/prober.py) until it answers, and prints one JSON line:
topic -> the wall-clock time of its first answer (null if it never did within
SECONDS). A topic answers once the agent's RPC server consumes it, which is what
"first RPC consumer" means in the benchmark.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "testcloud")]

from hvsupervisor.config.ready import ReadyRule  # noqa: E402
from hvsupervisor.health.protocol import RpcRequest  # noqa: E402


def main(argv: list[str]) -> int:
    url, seconds, targets = argv[0], float(argv[1]), argv[2:]
    from hvsupervisor.health.prober import Bus

    bus = Bus(url)
    rules = {t: ReadyRule.parse(f"rpc:{t}") for t in targets}
    first: dict[str, float | None] = dict.fromkeys(targets)
    print(json.dumps({"polling": time.time()}), flush=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and None in first.values():
        for name, rule in rules.items():
            if first[name] is not None:
                continue
            res = bus.call(RpcRequest(url, rule.exchange or "", rule.topic or "", "",
                                      rule.version or "1.0", 2.0))
            if res.ok:
                first[name] = time.time()
        time.sleep(0.05)  # between rounds of calls: a poll, not a synchronisation
    print(json.dumps(first), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
