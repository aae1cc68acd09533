"""``hvsupervisor config diff [AGENT]`` and ``hvsupervisor reload --dry-run``.

Both ask the running supervisor for each agent's running plan (a secret-free
snapshot, over the control socket), build the plans from the files on disk
now, and show what differs at the option level and which agents a reload
would restart, start or stop, and why. Nothing is applied. A config on disk
that does not resolve is reported as the reload would report it (one line,
file:line, exit 78): that reload would be refused whole.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hvsupervisor.cmd.common import load, run_dir
from hvsupervisor.cmd.render import print_json, table
from hvsupervisor.config import plan_diff
from hvsupervisor.config.settings import Settings
from hvsupervisor.control.client import ControlError, call
from hvsupervisor.control.rundir import CONTROL_NAME
from hvsupervisor.host.facts import plans_for


def running_plans(run_dir: Path) -> dict:
    """{agent: {"state", "pid", "snapshot"}} from the running supervisor (ControlError)."""
    reply = call(run_dir / CONTROL_NAME, {"cmd": "plans"})
    if not reply.get("ok"):
        raise ControlError(reply.get("error") or "plans refused")
    return reply["agents"]


def compute(settings: Settings, running: dict, only: str | None = None) -> list:
    """Every agent's AgentDiff (ConfigError if the disk config does not resolve)."""
    disk = {n: plan_diff.snapshot(p) for n, p in plans_for(settings).items()}
    names = list(dict.fromkeys([*running, *disk]))
    if only is not None:
        if only not in names:
            from hvsupervisor.config.errors import ConfigError

            raise ConfigError(f"unknown agent {only!r} (known: {', '.join(names) or 'none'})")
        names = [only]
    out = []
    for name in names:
        run = running.get(name)
        out.append(plan_diff.diff(name, run["snapshot"] if run else None, disk.get(name),
                                    run["state"] if run else "stopped"))
    return out


def render(diffs: list, fmt: str, dry_run: bool) -> None:
    would = {a: [d.agent for d in diffs if d.action == a] for a in ("restart", "start", "stop")}
    if fmt == "json":
        print_json({"dry_run": dry_run, "restarted": would["restart"], "started": would["start"],
                    "stopped": would["stop"], "agents": [d.to_json() for d in diffs]})
        return
    changed = [d for d in diffs if d.action != "none"]
    if not changed:
        print("no change: every agent runs the plan on disk")
    rows = []
    for d in changed:
        for c in d.options:
            rows.append((d.agent, f"[{c.section}] {c.option}",
                         _show(c.old), _show(c.new), c.where))
    if rows:
        print(table(["agent", "option", "old", "new", "new value at"], rows))
        print()
    for d in changed:
        print(f"{d.agent}: {d.action} ({'; '.join(d.reasons)})")
    if dry_run:
        for key, verb in (("restart", "restart"), ("start", "start"), ("stop", "stop")):
            print(f"a reload would {verb}: {', '.join(would[key]) or '-'}")


def _show(value: str | None) -> str:
    if value is None:
        return "(unset)"
    return value.replace("\n", " | ")


def run(args: argparse.Namespace, settings: Settings, rdir: Path, dry_run: bool) -> int:
    try:
        running = running_plans(rdir)
    except ControlError as exc:
        print(f"hvsupervisor: {exc}", file=sys.stderr)
        return 1
    diffs = compute(settings, running, getattr(args, "agent", None))
    render(diffs, args.format, dry_run)
    return 0


def main(args: argparse.Namespace) -> int:
    dry_run = args.verb == "reload"
    return run(args, load(args), run_dir(args), dry_run)
