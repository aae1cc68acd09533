"""``hvsupervisor run``: the supervisor's main process.

Order matters here: config is resolved and validated first (exit 78 before
anything starts), then the run-dir lock makes a second supervisor refuse to
start, then ``--daemon`` detaches (python-daemon; the lock's open file
survives the fork), and only then the asyncio loop starts.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from oslo_log import log as oslo_log

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.plan import build_plans
from hvsupervisor.config.settings import Settings

LOCK_NAME = "hvsupervisor.pid"  # the pidfile is also the single-instance lock
CONTROL_NAME = "control.sock"


SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes with its NUL


class AlreadyRunning(Exception):
    pass


def socket_path_problem(run_dir: Path, agents: Iterable[str]) -> str | None:
    """Why the run dir cannot hold our unix sockets (too long a path), or None."""
    paths = [run_dir / CONTROL_NAME] + [run_dir / "notify" / f"{a}.sock" for a in agents]
    longest = max(paths, key=lambda p: len(str(p).encode()))
    if len(str(longest).encode()) > SUN_PATH_MAX:
        return (f"run_dir {run_dir} is too long a path: the unix socket {longest} exceeds "
                f"{SUN_PATH_MAX} bytes; choose a shorter run_dir (--run-dir)")
    return None


def make_dirs(settings: Settings) -> None:
    """Create our directories, never world-accessible."""
    # state_dir 0711: traversable (qemu as libvirt-qemu reaches instance disks
    # below it), not listable.
    for path, mode in ((settings.state_dir, 0o711), (settings.log_dir, 0o750),
                       (settings.run_dir, 0o750)):
        path.mkdir(mode=mode, parents=True, exist_ok=True)


def prepare_own_log(settings: Settings) -> None:
    """Create our own log file 0640 before oslo.log opens it (it would be 0644 by the
    umask), like the agents' logs: a log may quote config paths and agent output."""
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


def take_lock(run_dir: Path) -> int:
    """flock the run dir's lock file; AlreadyRunning names the holder."""
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(
            f"another hvsupervisor (pid {holder}) is already running with run dir "
            f"{run_dir}") from None
    return fd


def write_pid(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


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


def plans_for_run(settings: Settings) -> dict:
    """Every check ``run`` makes before anything starts; ``config validate`` calls
    this same function, so what validates is what runs. Raises ConfigError."""
    from hvsupervisor.host.wiring import gate_settings

    plans = build_plans(settings)
    gate_settings(settings, plans)  # what the host gates read from the agents' files
    problem = socket_path_problem(settings.run_dir, plans)
    if problem:
        raise ConfigError(problem)
    return plans


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
    prepare_own_log(settings)
    oslo_log.setup(settings.conf, "hvsupervisor")
    log = oslo_log.getLogger("hvsupervisor.config")
    for warning in settings.warnings:  # what `config validate` warns about, in the journal
        log.warning("%s", warning)
    return asyncio.run(_serve(settings, plans))
