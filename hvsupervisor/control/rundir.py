"""The run dir's fixed names, its single-instance lock and its directories.

Shared by ``hvsupervisor run``, the control-socket client verbs and the demo
(which locks its own root the same way), so none of them imports another's
command module.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the status verb reads CONTROL_NAME: keep oslo.config out of it
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
    fd, holder = _flock(run_dir / LOCK_NAME)
    if fd is None:
        raise AlreadyRunning(
            f"another hvsupervisor (pid {holder.split(' ')[0] or '?'}) is already running "
            f"with run dir {run_dir}")
    return fd


def _flock(path: Path) -> tuple[int | None, str]:
    """(fd, "") with ``path`` flocked, or (None, what the holder wrote in it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            os.close(fd)
            raise
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        os.close(fd)
        return None, holder
    return fd, ""


def take_state_lock(state_dir: Path, run_dir: Path) -> int:
    """flock ``<state_dir>/supervisor/lock``: one supervisor per node, whatever its run dir.

    The state dir is the node (nova's compute_id and the agent record live
    there), so two supervisors over one state dir with different run dirs
    would run every agent twice. The file holds "PID RUN_DIR" of the holder,
    rewritten after --daemon forks (``write_pid``), so the refusal can say
    where the other one runs.
    """
    path = state_dir / STATE_LOCK
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, holder = _flock(path)
    if fd is None:
        pid, _, other = holder.partition(" ")
        raise AlreadyRunning(
            f"another hvsupervisor (pid {pid or '?'}, run dir {other or '?'}) is already "
            f"running for state dir {state_dir}; one node has one supervisor")
    return fd


def write_pid(fd: int, extra: str = "") -> None:
    line = f"{os.getpid()} {extra}".strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{line}\n".encode(), 0)
