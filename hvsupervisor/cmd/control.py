"""CLI verbs that talk to a running supervisor: status, restart, start, stop, reload."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from hvsupervisor.cmd.common import run_dir as _run_dir
from hvsupervisor.cmd.render import print_json, status_table
from hvsupervisor.control.client import ControlError, call
from hvsupervisor.control.rundir import CONTROL_NAME
from hvsupervisor.core.agent_status import NodeStatus


def _config_pending(args: argparse.Namespace, node: NodeStatus) -> tuple[NodeStatus, str]:
    """``node`` with "config changed on disk" added to ``restart_pending``; and a note.

    The supervisor reports the code side itself; the config side is the
    digest of the plan built from disk now against the running one, done
    here so that the supervisor need not re-read every file on each status.
    """
    from hvsupervisor.cmd.common import load
    from hvsupervisor.config.errors import ConfigError
    from hvsupervisor.host.facts import plans_for

    try:
        disk = plans_for(load(args))
    except ConfigError as exc:
        return node, f"config on disk does not resolve (a reload would be refused): {exc}"
    agents = []
    for a in node.agents:
        plan = disk.get(a.name)
        reason = ""
        if a.pid and plan is None:
            reason = "no longer enabled on disk"
        elif a.pid and a.digest and plan.digest != a.digest:
            reason = "config changed on disk (hvsupervisor config diff)"
        if reason:
            reason = "; ".join(r for r in (a.restart_pending, reason) if r)
            a = dataclasses.replace(a, restart_pending=reason)
        agents.append(a)
    return dataclasses.replace(node, agents=tuple(agents)), ""


def _status(args: argparse.Namespace, reply: dict, fmt: str) -> int:
    node, note = _config_pending(args, NodeStatus.from_primitive(reply))
    if fmt == "json":
        print_json(node.to_primitive())
    else:
        print(status_table(node))
        if note:
            print(note)
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
        return _status(args, reply, args.format)
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
