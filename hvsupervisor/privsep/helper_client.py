"""``hvsupervisor-privsep``: the agent's side of the privsep broker.

Used as oslo.privsep's ``helper_command`` and neutron's ``[agent]
root_helper`` (the plan sets both when an agent runs as its own user)::

    hvsupervisor-privsep --broker <run_dir>/privsep/<agent>.sock privsep-helper \
        --privsep_context CTX --privsep_sock_path PATH     (appended by oslo.privsep)
    hvsupervisor-privsep --broker ... root-helper ip netns exec NS dnsmasq ...

It sends the request and its own stdin/stdout/stderr (SCM_RIGHTS) in one
message, waits for the exit code and exits with it. A refusal prints the
broker's reason to stderr and exits 126. Deliberately tiny: no oslo imports,
it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import array
import json
import socket
import sys

REFUSED = 126


def request(broker: str, verb: str, args: list[str]) -> tuple[int, str | None]:
    """Send one request; return (exit code, refusal reason or None)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    with sock:
        sock.connect(broker)
        body = json.dumps({"verb": verb, "args": args}).encode()
        fds = array.array("i", [0, 1, 2]).tobytes()
        sock.sendmsg([body], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        reply = sock.recv(65536)
    if not reply:
        return REFUSED, "the broker closed the connection (supervisor stopping?)"
    answer = json.loads(reply)
    return int(answer["rc"]), answer.get("error")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hvsupervisor-privsep",
                                     description="run a helper through the privsep broker")
    parser.add_argument("--broker", required=True, help="the agent's broker socket")
    parser.add_argument("verb", choices=["privsep-helper", "root-helper"])
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    try:
        rc, error = request(ns.broker, ns.verb, ns.args)
    except OSError as exc:
        print(f"hvsupervisor-privsep: cannot reach the broker at {ns.broker}: {exc.strerror}",
              file=sys.stderr)
        return REFUSED
    if error:
        print(f"hvsupervisor-privsep: refused: {error}", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
