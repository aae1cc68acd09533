"""CLI verbs that talk to a running supervisor: status, restart, start, stop, reload."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hvsupervisor.cli import print_json
from hvsupervisor.control.client import ControlError, call
from hvsupervisor.render import table
from hvsupervisor.run_cmd import CONTROL_NAME


def _health_cells(a: dict) -> tuple[str, str, str]:
    """(health, last probe, last error) for the table; "-" where it does not apply."""
    h = a.get("health")
    if not h or a.get("ready_rule", "").split(":")[0] not in ("rpc", "http"):
        return "-", "-", "-"
    probe = "-"
    if h.get("last_probe") is not None:
        ago = max(0.0, time.time() - h["last_probe"])
        probe = f"{ago:.0f}s ago ({(h.get('last_duration') or 0) * 1000:.0f} ms)"
    return h["label"], probe, h.get("last_error") or "-"


def _status(reply: dict, fmt: str) -> int:
    if fmt == "json":
        print_json({"ready": reply["ready"], "control_plane": reply.get("control_plane"),
                    "agents": [
            {k: a.get(k) for k in ("name", "state", "pid", "ready", "restarts", "last_exit",
                                   "health")}
            for a in reply["agents"]]})
        return 0
    print(reply.get("status") or "")
    print(f"control_plane: {reply.get('control_plane', 'unknown')}")
    rows = []
    for a in reply["agents"]:
        health, probe, error = _health_cells(a)
        rows.append((a["name"], a["state"] + (" (degraded)" if a.get("degraded") else ""),
                     a["pid"], "yes" if a["ready"] else "no", health, probe, a["restarts"],
                     a["last_exit"], a.get("reason") or "", error))
    print(table(["agent", "state", "pid", "ready", "health", "last probe", "restarts",
                 "last exit", "reason", "last probe error"], rows))
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
        return _status(reply, args.format)
    if args.verb == "reload":
        if args.format == "json":
            print_json(reply)
        else:
            for key in ("restarted", "started", "stopped"):
                print(f"{key}: {', '.join(reply[key]) or '-'}")
        return 0
    print(f"{args.verb}: {', '.join(reply['agents'])}")
    return 0
