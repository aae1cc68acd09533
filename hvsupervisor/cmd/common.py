"""What several verbs share: settings from the global options, the run dir."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hvsupervisor.config.settings import Settings


def dir_flags(args: argparse.Namespace) -> list[str]:
    """The global directory options given on our command line, as argv again."""
    out: list[str] = []
    for flag in ("defaults_dir", "override_dir", "state_dir", "log_dir", "run_dir"):
        if getattr(args, flag) is not None:
            out += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    return out


def load(args: argparse.Namespace) -> Settings:
    """Settings from the global options (ConfigError on bad config)."""
    from hvsupervisor.config.settings import load_settings

    return load_settings(args.defaults_dir, args.override_dir, args.state_dir,
                         args.log_dir, args.run_dir)


def run_dir(args: argparse.Namespace) -> Path:
    """The run dir of the supervisor to talk to: --run-dir, else from its config.

    The config is read by the fast path (config/lookup.py) when it can be sure
    of the answer, else loaded whole.
    """
    if args.run_dir:
        return Path(args.run_dir)
    from hvsupervisor.config import lookup

    return lookup.run_dir(args.defaults_dir, args.override_dir) or load(args).run_dir
