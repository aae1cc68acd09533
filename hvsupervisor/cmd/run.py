"""``hvsupervisor run``: the supervisor's main process.

Order matters here: the signal handlers come first (cmd/cli.py installs
startsignals before anything slow), then config is resolved and validated
(exit 78 before anything starts), then two locks make a second supervisor
refuse to start: the run dir's (its sockets) and the state dir's (the node,
rundir.take_state_lock). Then ``--daemon`` detaches (python-daemon; the
locks' open files survive the fork), what a dead predecessor left running is
stopped (process/records.py), and only then the asyncio loop starts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from hvsupervisor.cmd.common import load, plans_for_run, prepare_own_log
from hvsupervisor.config.settings import Settings
from hvsupervisor.control.rundir import (
    CONTROL_NAME,
    AlreadyRunning,
    make_dirs,
    take_lock,
    take_state_lock,
    write_pid,
)


async def _serve(settings: Settings, plans, record, dir_overrides) -> tuple[int, dict | None]:
    """Run the loop; returns its exit code and, when a release switch asked for a
    re-exec, the environment to exec with (the notify variables restored)."""
    from hvsupervisor.control.server import ControlServer
    from hvsupervisor.host.wiring import make_gates
    from hvsupervisor.supervisor import Supervisor
    from hvsupervisor.systemd.notify import SystemdNotifier

    notifier = SystemdNotifier()
    sup = Supervisor(settings, plans, notifier=notifier, gate_factory=make_gates,
                     record=record, dir_overrides=dir_overrides)
    control = ControlServer(sup, settings.run_dir / CONTROL_NAME)
    await control.start()
    try:
        rc = await sup.run()
    finally:
        await control.close()
    if getattr(sup, "reexec_requested", False):
        return rc, {**os.environ, **notifier.own_env}
    return rc, None


def _reexec_argv(settings: Settings) -> list[str]:
    """The command that comes back on the current release: the link's own script
    when this node runs releases, else this command as it was started."""
    current = Path(settings.supervisor.release_root) / "current" / "bin" / "hvsupervisor"
    if current.is_file() and os.access(current, os.X_OK):
        return [str(current), *sys.argv[1:]]
    if os.access(sys.argv[0], os.X_OK) and not sys.argv[0].endswith(".py"):
        return list(sys.argv)
    return [sys.executable, "-m", "hvsupervisor", *sys.argv[1:]]


def _exec(argv: list[str], env: dict) -> None:
    import logging

    if Path(argv[0]).name == "hvsupervisor" and "/current/bin/" in argv[0]:
        # A release's own script: its venv alone decides what it imports.
        env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    logging.shutdown()  # flush our own log lines before the image is replaced
    os.execve(argv[0], argv, env)


def _recover_release(settings: Settings) -> None:
    """An interrupted release switch (its command died) is resolved before anything
    starts (release/switch.py): if that moves the current link, come back on it."""
    from hvsupervisor.release.store import ReleaseError, ReleaseStore, running_release
    from hvsupervisor.release.switch import recover_interrupted

    if running_release() is None:
        return  # not a release install: nothing to recover
    store = ReleaseStore(settings.supervisor.release_root)
    try:
        moved = recover_interrupted(store, lambda line: print(f"hvsupervisor: {line}",
                                                                 file=sys.stderr))
    except (ReleaseError, OSError) as exc:
        print(f"hvsupervisor: release recovery: {exc}", file=sys.stderr)
        return
    if moved:
        _exec(_reexec_argv(settings), dict(os.environ))


def main(args: argparse.Namespace) -> int:
    return run(load(args), daemonize=args.daemon,
               dir_overrides=(args.state_dir, args.log_dir, args.run_dir))


def run(settings: Settings, daemonize: bool = False,
        dir_overrides: tuple[str | None, str | None, str | None] | None = None) -> int:
    """``dir_overrides``: the command line's (state, log, run) dirs, so a reload
    re-resolves the dirs exactly as this start did and can tell a changed one."""
    from hvsupervisor.process.early_signals import PENDING

    _recover_release(settings)  # before the locks: it may exec onto another release
    plans = plans_for_run(settings)  # ConfigError -> exit 78 before anything starts
    make_dirs(settings)
    try:
        lock_fd = take_lock(settings.run_dir)
        state_fd = take_state_lock(settings.state_dir, settings.run_dir)
    except AlreadyRunning as exc:
        print(f"hvsupervisor: {exc}", file=sys.stderr)
        return 1
    if daemonize:
        import signal

        import daemon

        # signal_map: python-daemon's default maps SIGTERM to a SystemExit raised
        # from the handler; keep startsignals' handlers until the loop takes over.
        ignore = {signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None}
        ctx = daemon.DaemonContext(working_directory="/", umask=0o027,
                                   files_preserve=[lock_fd, state_fd], detach_process=True,
                                   signal_map=ignore)
        ctx.open()
    write_pid(lock_fd)
    write_pid(state_fd, str(settings.run_dir))
    assert settings.conf is not None
    from oslo_log import log as oslo_log  # only the run path pays for oslo.log

    prepare_own_log(settings)
    oslo_log.setup(settings.conf, "hvsupervisor")
    log = oslo_log.getLogger("hvsupervisor.config")
    for warning in settings.warnings:  # what `config validate` warns about, in the journal
        log.warning("%s", warning)
    from hvsupervisor.process.leftovers import stop_predecessor

    # Nothing may spawn before a dead predecessor's agents are gone (no second
    # nova-compute, no two OVS agents on br-int); the data plane stays.
    record = stop_predecessor(settings.state_dir, plans,
                              settings.supervisor.dataplane_helpers)
    if PENDING.stop is not None:  # asked to stop before anything started
        return 0
    if dir_overrides is None:
        dir_overrides = (str(settings.state_dir), str(settings.log_dir), str(settings.run_dir))
    rc, reexec_env = asyncio.run(_serve(settings, plans, record, dir_overrides))
    if reexec_env is not None:
        os.close(lock_fd)
        os.close(state_fd)
        _exec(_reexec_argv(settings), reexec_env)
    return rc
