"""CLI verbs that talk to a running supervisor: status, restart, start, stop, reload."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hvsupervisor.cli import print_json
from hvsupervisor.control.client import ControlError, call
from hvsupervisor.render import table
from hvsupervisor.run_cmd import CONTROL_NAME


def _config_pending(args: argparse.Namespace, reply: dict) -> tuple[dict[str, str], str]:
    """{agent: reason} for running agents whose plan on disk differs; and a note.

    The supervisor reports the code side itself (restart_pending); the
    config side is the digest of the plan built from disk now against the
    running one, so the supervisor need not re-read every file on each status.
    """
    from hvsupervisor.cli import load
    from hvsupervisor.config.errors import ConfigError
    from hvsupervisor.config.plan import build_plans

    try:
        disk = build_plans(load(args))
    except ConfigError as exc:
        return {}, f"config on disk does not resolve (a reload would be refused): {exc}"
    out = {}
    for a in reply["agents"]:
        plan = disk.get(a["name"])
        if a.get("pid") and (plan is None or plan.digest != a.get("digest")):
            out[a["name"]] = ("config changed on disk (hvsupervisor config diff)" if plan
                              else "no longer enabled on disk")
    return out, ""


def _pending(a: dict, config: dict[str, str]) -> str:
    return "; ".join(r for r in (a.get("restart_pending"), config.get(a["name"])) if r)


def _status(args: argparse.Namespace, reply: dict, fmt: str) -> int:
    config, note = _config_pending(args, reply)
    if fmt == "json":
        print_json({"ready": reply["ready"], "agents": [
            {**{k: a[k] for k in ("name", "state", "pid", "ready", "restarts", "last_exit")},
             "restart_pending": _pending(a, config) or None}
            for a in reply["agents"]], **({"note": note} if note else {})})
        return 0
    print(reply.get("status") or "")
    rows = []
    for a in reply["agents"]:
        pending = _pending(a, config)
        reason = "; ".join(r for r in (a.get("reason"),
                                       f"restart pending: {pending}" if pending else "") if r)
        rows.append((a["name"], a["state"] + (" (degraded)" if a.get("degraded") else ""),
                     a["pid"], "yes" if a["ready"] else "no", a["restarts"], a["last_exit"],
                     reason))
    print(table(["agent", "state", "pid", "ready", "restarts", "last exit", "reason"], rows))
    if note:
        print(note)
    return 0


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
        return 0
    print(f"{args.verb}: {', '.join(reply['agents'])}")
    return 0
