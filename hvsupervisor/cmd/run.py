"""``hvsupervisor run``: the supervisor's main process.

Order matters here: config is resolved and validated first (exit 78 before
anything starts), then the run-dir lock makes a second supervisor refuse to
start, then ``--daemon`` detaches (python-daemon; the lock's open file
survives the fork), and only then the asyncio loop starts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from hvsupervisor.cmd.common import load, plans_for_run, prepare_own_log
from hvsupervisor.config.settings import Settings
from hvsupervisor.rundir import CONTROL_NAME, AlreadyRunning, make_dirs, take_lock, write_pid


async def _serve(settings: Settings, plans) -> int:
    from hvsupervisor.control.server import ControlServer
    from hvsupervisor.host.wiring import make_gates
    from hvsupervisor.supervisor import Supervisor
    from hvsupervisor.systemd.notify import SystemdNotifier

    sup = Supervisor(settings, plans, notifier=SystemdNotifier(), gate_factory=make_gates)
    control = ControlServer(sup, settings.run_dir / CONTROL_NAME)
    await control.start()
    try:
        return await sup.run()
    finally:
        await control.close()


def main(args: argparse.Namespace) -> int:
    return run(load(args), daemonize=args.daemon)


def run(settings: Settings, daemonize: bool = False) -> int:
    plans = plans_for_run(settings)  # ConfigError -> exit 78 before anything starts
    make_dirs(settings)
    try:
        lock_fd = take_lock(settings.run_dir)
    except AlreadyRunning as exc:
        print(f"hvsupervisor: {exc}", file=sys.stderr)
        return 1
    if daemonize:
        import daemon

        ctx = daemon.DaemonContext(working_directory="/", umask=0o027,
                                   files_preserve=[lock_fd], detach_process=True)
        ctx.open()
    write_pid(lock_fd)
    assert settings.conf is not None
    from oslo_log import log as oslo_log  # only the run path pays for oslo.log

    prepare_own_log(settings)
    oslo_log.setup(settings.conf, "hvsupervisor")
    log = oslo_log.getLogger("hvsupervisor.config")
    for warning in settings.warnings:  # what `config validate` warns about, in the journal
        log.warning("%s", warning)
    return asyncio.run(_serve(settings, plans))
