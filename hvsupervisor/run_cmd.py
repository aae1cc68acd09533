"""``hvsupervisor run``: the supervisor's main process.

Order matters here: the signal handlers come first (cli.py installs
startsignals before anything slow), then config is resolved and validated
(exit 78 before anything starts), then two locks make a second supervisor
refuse to start: the run dir's (its sockets) and the state dir's (the node:
nova's compute_id and the agent record live there, so two supervisors with
different run dirs over one state dir would run every agent twice). Then
``--daemon`` detaches (python-daemon; the locks' open files survive the
fork), what a dead predecessor left running is stopped (agentrecord.py),
and only then the asyncio loop starts.
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
STATE_LOCK = Path("supervisor") / "lock"  # under the state dir: one supervisor per node
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


def take_state_lock(state_dir: Path, run_dir: Path) -> int:
    """flock ``<state_dir>/supervisor/lock``: one supervisor per node, whatever its run dir.

    The file holds "PID RUN_DIR" of the holder, rewritten after --daemon
    forks (``write_pid``), so the refusal can say where the other one runs.
    """
    path = state_dir / STATE_LOCK
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        pid, _, other = os.pread(fd, 4096, 0).decode(errors="replace").strip().partition(" ")
        os.close(fd)
        raise AlreadyRunning(
            f"another hvsupervisor (pid {pid or '?'}, run dir {other or '?'}) is already "
            f"running for state dir {state_dir}; one node has one supervisor") from None
    return fd


def write_pid(fd: int, extra: str = "") -> None:
    line = f"{os.getpid()} {extra}".strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{line}\n".encode(), 0)


def stop_leftovers(settings: Settings):
    """Stop the agents a dead supervisor left running; return the record for this run."""
    from hvsupervisor.agentrecord import AgentRecord
    from hvsupervisor.agentrecord import stop_leftovers as stop

    record = AgentRecord.for_state_dir(settings.state_dir)
    record.ensure()
    left = record.leftovers()
    if left:
        default = max((a.stop_timeout for a in settings.agents.values()), default=30.0)
        alive = stop(left, lambda name: settings.agents[name].stop_timeout
                     if name in settings.agents else default)
        for entry in left:
            if entry.pid not in alive:
                record.remove(entry.pid)
    return record


async def _serve(settings: Settings, plans, record, dir_overrides) -> int:
    from hvsupervisor.control.server import ControlServer
    from hvsupervisor.host.wiring import make_gates
    from hvsupervisor.supervisor import Supervisor
    from hvsupervisor.systemd.notify import SystemdNotifier

    sup = Supervisor(settings, plans, notifier=SystemdNotifier(), gate_factory=make_gates,
                     record=record, dir_overrides=dir_overrides)
    control = ControlServer(sup, settings.run_dir / CONTROL_NAME)
    await control.start()
    try:
        return await sup.run()
    finally:
        await control.close()


def run(settings: Settings, daemonize: bool = False,
        dir_overrides: tuple[str | None, str | None, str | None] | None = None) -> int:
    """``dir_overrides``: the command line's (state, log, run) dirs, so a reload
    re-resolves the dirs exactly as this start did and can tell a changed one."""
    from hvsupervisor.host.wiring import gate_settings
    from hvsupervisor.startsignals import PENDING

    plans = build_plans(settings)  # ConfigError -> exit 78 before anything starts
    gate_settings(settings, plans)  # likewise for what the host gates read
    problem = socket_path_problem(settings.run_dir, plans)
    if problem:
        raise ConfigError(problem)
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
    oslo_log.setup(settings.conf, "hvsupervisor")
    record = stop_leftovers(settings)
    if PENDING.stop is not None:  # asked to stop before anything started
        return 0
    if dir_overrides is None:
        dir_overrides = (str(settings.state_dir), str(settings.log_dir), str(settings.run_dir))
    return asyncio.run(_serve(settings, plans, record, dir_overrides))
