"""``hvsupervisor cleanup ovs|netns`` and the ``hvsupervisor-*-cleanup`` scripts.

The commands themselves are built (purely) in hvsupervisor/host/boot_cleanup.py; this
module reads the node's settings, parses the options and runs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hvsupervisor.cmd.common import dir_flags
from hvsupervisor.config import paths
from hvsupervisor.config.errors import EX_CONFIG, ConfigError
from hvsupervisor.host.boot_cleanup import (
    NETNS_AGENTS,
    OVS_AGENT,
    build_netns_cleanup,
    build_ovs_cleanup,
    run,
)


def main(args: argparse.Namespace) -> int:
    """``hvsupervisor [DIRS] cleanup ovs|netns [TOOL_ARGS]``."""
    entry = main_ovs if args.what == "ovs" else main_netns
    return entry(dir_flags(args) + args.tool_args)


def _catalog_plans(
    args: argparse.Namespace, names: Sequence[str]
) -> tuple[dict[str, object], Path]:
    """Plans of the named catalog agents (enabled or not: their files describe the node)."""
    from hvsupervisor.config.plan import FileCache, build_plan
    from hvsupervisor.config.settings import load_settings
    from hvsupervisor.host.facts import gather

    settings = load_settings(args.defaults_dir, args.override_dir, args.state_dir,
                             args.log_dir, args.run_dir)
    cache = FileCache()
    facts = gather(settings)
    plans = {n: build_plan(settings, settings.agents[n], facts, cache)
             for n in names if n in settings.agents}
    return plans, settings.log_dir


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description="Run the neutron cleanup with the node's resolved config; "
        "unknown options (e.g. --force) are passed to the tool.")
    p.add_argument("--defaults-dir", type=Path, default=None)
    p.add_argument("--override-dir", type=Path, default=None)
    p.add_argument("--state-dir", default=None)
    p.add_argument("--log-dir", default=None)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--dry-run", action="store_true", help="print the argv, run nothing")
    return p


def _main(prog: str, argv: Sequence[str] | None, names: Sequence[str], builder) -> int:
    args, extra = _parser(prog).parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        plans, log_dir = _catalog_plans(args, names)
        cmd = builder(plans, paths.bindir(), log_dir, extra)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.dry_run:
        print(" ".join(cmd.argv))
        return 0
    return run(cmd)


def main_ovs(argv: Sequence[str] | None = None) -> int:
    """``hvsupervisor cleanup ovs`` / ``hvsupervisor-ovs-cleanup``."""
    return _main("hvsupervisor-ovs-cleanup", argv, [OVS_AGENT], build_ovs_cleanup)


def main_netns(argv: Sequence[str] | None = None) -> int:
    """``hvsupervisor cleanup netns`` / ``hvsupervisor-netns-cleanup``."""
    return _main("hvsupervisor-netns-cleanup", argv, NETNS_AGENTS, build_netns_cleanup)
