"""What several verbs share: settings from the global options, the run dir."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hvsupervisor.config.plan import Plan
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


def plans_for_run(settings: Settings) -> dict[str, Plan]:
    """Every check ``run`` makes before anything starts; ``config validate`` and
    ``check`` call this same function, so what validates is what runs.
    Raises ConfigError."""
    from hvsupervisor.config.errors import ConfigError
    from hvsupervisor.control.rundir import socket_path_problem
    from hvsupervisor.host.facts import plans_for
    from hvsupervisor.host.wiring import gate_settings

    plans = plans_for(settings)
    gate_settings(settings, plans)  # what the host gates read from the agents' files
    problem = socket_path_problem(settings.run_dir, plans)
    if problem:
        raise ConfigError(problem)
    return plans


def prepare_own_log(settings: Settings) -> None:
    """Create our own log file 0640 before oslo.log opens it (it would be 0644 by the
    umask), like the agents' logs: a log may quote config paths and agent output."""
    import os

    conf = settings.conf
    name = conf.log_file if conf is not None else None
    if not name:
        return
    path = Path(name) if os.path.isabs(name) else Path(conf.log_dir or settings.log_dir) / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
    try:
        os.fchmod(fd, os.fstat(fd).st_mode & 0o640)  # also tighten one left 0644 before
    finally:
        os.close(fd)
