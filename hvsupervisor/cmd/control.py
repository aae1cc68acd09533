"""CLI verbs that talk to a running supervisor: status, restart, start, stop, reload."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hvsupervisor.cmd.common import run_dir as _run_dir
from hvsupervisor.control.client import ControlError, call
from hvsupervisor.objects.status import NodeStatus
from hvsupervisor.render import print_json, status_table
from hvsupervisor.rundir import CONTROL_NAME


def _status(reply: dict, fmt: str) -> int:
    node = NodeStatus.from_primitive(reply)
    if fmt == "json":
        print_json(node.to_primitive())
    else:
        print(status_table(node))
    return 0


RELOAD_NOT_SETTLED = 3


def reload_exit_code(reply: dict) -> int:
    """0: applied, and every agent it touched is ready (or stopped, if removed).
    RELOAD_NOT_SETTLED: applied, but an agent failed or did not settle in
    reload_timeout (the reply names it). A refused reload exits 1 earlier."""
    bad = [o for o in reply.get("agents", {}).values() if o not in ("ready", "stopped")]
    return RELOAD_NOT_SETTLED if bad else 0


def run(args: argparse.Namespace, run_dir: Path) -> int:
    path = run_dir / CONTROL_NAME
    request: dict = {"cmd": args.verb}
    if args.verb in ("restart", "start", "stop"):
        request["agents"] = args.agents
    try:
        reply = call(path, request)
    except ControlError as exc:
        print(f"hvsupervisor: {exc}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"hvsupervisor: {args.verb} failed: {reply.get('error')}", file=sys.stderr)
        return 1
    if args.verb == "status":
        return _status(reply, args.format)
    if args.verb == "reload":
        if args.format == "json":
            print_json(reply)
        else:
            for key in ("restarted", "started", "stopped"):
                print(f"{key}: {', '.join(reply[key]) or '-'}")
            for name, outcome in reply.get("agents", {}).items():
                print(f"  {name}: {outcome}")
        return reload_exit_code(reply)
    print(f"{args.verb}: {', '.join(reply['agents'])}")
    return 0


def main(args: argparse.Namespace) -> int:
    return run(args, _run_dir(args))
