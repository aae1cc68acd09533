"""Wait until the cloud's RPC servers consume their topics: ``python -m`` this in its netns.

RabbitMQ drops a message published to a topic no server has declared a queue
for yet, and the agent that sent it waits out ``rpc_response_timeout`` (60 s;
neutron's L3 agent then doubles it and sleeps up to 60 s more): measured in the
demo, where the node started while neutron-rpc-server was still loading its
plugins and the L3 agent became ready 93 s later instead of about 5 s
(doc/upstream-behaviour.md section 14). An answering API says nothing about
the RPC server, a separate process. So the demo cloud counts as up only when
every topic here answers.

Each check is the health prober's call (hvsupervisor/health/prober.py: a
method that does not exist, published with the mandatory flag, answered by
NoSuchMethod without side effects; "no consumer" comes back at once). It runs
as a child inside the cloud's network namespace, where RabbitMQ listens on
loopback. Prints one JSON line: the seconds each topic took, or what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from hvsupervisor.config.ready import ReadyRule
from hvsupervisor.health.protocol import RpcRequest
from hvtestcloud.waiting import WaitTimeout, wait_until

CALL_TIMEOUT = 5.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hvtestcloud.rpcwait")
    ap.add_argument("url", help="transport_url")
    ap.add_argument("targets", nargs="+", help="EXCHANGE/TOPIC@VERSION (as rpc: ready rules)")
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args(argv)
    from hvsupervisor.health.prober import Bus

    bus = Bus(args.url)
    rules = [ReadyRule.parse(f"rpc:{t}") for t in args.targets]
    start = time.monotonic()
    took: dict[str, float] = {}
    last: dict[str, str] = {}

    def all_answer() -> bool:
        for rule in rules:
            name = str(rule)[len("rpc:"):]
            if name in took:
                continue
            res = bus.call(RpcRequest(args.url, rule.exchange or "", rule.topic or "", "",
                                      rule.version or "1.0", CALL_TIMEOUT))
            if res.ok:
                took[name] = round(time.monotonic() - start, 2)
            else:
                last[name] = res.detail
        return len(took) == len(rules)

    try:
        wait_until(all_answer, args.timeout, "the RPC servers", interval=0.2)
    except WaitTimeout:
        missing = {k: v for k, v in last.items() if k not in took}
        print(json.dumps({"answered": took, "missing": missing}))
        return 1
    print(json.dumps({"answered": took}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
