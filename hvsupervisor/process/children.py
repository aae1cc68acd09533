"""Process I/O shell: spawn agents, reap them, find what they left behind.

Everything here is a thin, event-driven wrapper over the kernel so that the
supervisor loop (asyncio, single thread) stays in charge of decisions:

* ``child_env`` builds the environment an agent sees (pure).
* ``spawn`` execs an argv list in a new session with only fds 0-2 open.
* ``set_child_subreaper`` makes orphaned grandchildren (dnsmasq, haproxy,
  keepalived, setsid'd workers) reparent to us instead of PID 1, so a full
  stop can still find and account for them.
* ``Reaper`` turns SIGCHLD into ``on_exit(pid, returncode, signal)`` calls.
* ``descendants`` / ``signal_all`` walk /proc ppid links: process groups are
  no containment boundary (the DHCP/L3 masters call setsid()).
* ``wait_gone`` waits on processes that are not our children (pidfds).

Why over 400 lines: each of these is small, and all of them are the one
place that touches the kernel's process API (fork/exec, waitpid, pidfd,
prctl, /proc); the rest of the package stays free of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

LOG = logging.getLogger(__name__)

# Variables that talk to *our* service manager or describe *our* fds. A child
# that inherits them would send READY=1/STOPPING=1 for the whole unit, ping
# our watchdog, adopt our socket-activated fds, or "upgrade" to native journal
# logging under our identity (doc/upstream-behaviour.md section 10;
# sd_notify(3), sd_listen_fds(3), sd_watchdog_enabled(3)).
# FDSTORE (v254) is the size of our fd store: only meaningful with our socket.
#
# INVOCATION_ID is deliberately *kept*: it names the unit invocation, and the
# agents really are part of it (same cgroup, same journal
# _SYSTEMD_INVOCATION_ID). Nothing uses it to talk to systemd, and keeping it
# lets a child tag its own logs with the invocation it belongs to.
# SYSTEMD_EXEC_PID is kept for the same reason: it lets a child see that it
# was not exec'd by systemd directly (its pid differs).
SCRUBBED_EXACT = frozenset({
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
    "FDSTORE",
})

# oslo.config reads OS_<GROUP>__<OPT> from the environment with precedence over
# every config file (oslo.config sources/_environment.py), so a stray one in
# the operator's shell or the unit would silently override the plan.
OSLO_ENV_RE = re.compile(r"^OS_[A-Za-z0-9_]+__[A-Za-z0-9_]+$")

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


class SpawnError(Exception):
    """An agent could not be started: the binary is missing or not runnable."""

    def __init__(self, argv0: str, reason: str) -> None:
        super().__init__(f"cannot start {argv0}: {reason}")
        self.argv0 = argv0
        self.reason = reason


def child_env(base: Mapping[str, str], plan_env: Mapping[str, str]) -> dict[str, str]:
    """Return the environment for an agent: ``base`` scrubbed, ``plan_env`` on top.

    Scrubbed: our systemd plumbing (``SCRUBBED_EXACT``) and every oslo.config
    override variable ``OS_<GROUP>__<OPT>``, unless the plan sets it itself.
    """
    env = {
        k: v for k, v in base.items()
        if k not in SCRUBBED_EXACT and not OSLO_ENV_RE.match(k)
    }
    env.update(plan_env)
    return env


def resolve_executable(argv0: str, env: Mapping[str, str]) -> str:
    """The path execvp would run for ``argv0`` with the child's PATH; SpawnError if none."""
    return _resolve(argv0, env)


def _resolve(argv0: str, env: Mapping[str, str]) -> str:
    """Find the executable the way execvp would, but with the child's PATH."""
    if "/" in argv0:
        path = argv0
    else:
        found = shutil.which(argv0, path=env.get("PATH", os.defpath))
        if found is None:
            raise SpawnError(argv0, "not found in PATH "
                             f"{env.get('PATH', os.defpath)!r}")
        path = found
    if not os.path.exists(path):
        raise SpawnError(argv0, "no such file")
    if os.path.isdir(path):
        raise SpawnError(argv0, "is a directory")
    if not os.access(path, os.X_OK):
        raise SpawnError(argv0, "not executable")
    return path


@contextlib.contextmanager
def _ignored_signals_caught() -> Iterator[None]:
    """Turn SIG_IGN dispositions into no-op handlers around an exec.

    SIG_IGN survives exec, a caught signal does not (it becomes SIG_DFL).
    subprocess' restore_signals only resets SIGPIPE and SIGXFSZ; a supervisor
    started under nohup also ignores SIGHUP, and the agent must not inherit
    that. A no-op handler has the same effect as SIG_IGN for us in the
    meantime, so no signal is lost or fatal during the swap. Main thread
    only (signal.signal); elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    swapped = []
    for sig in _kernel_ignored_signals() - _RESTORED_BY_SUBPROCESS:
        try:
            if signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, _noop_handler)
                swapped.append(sig)
        except (ValueError, OSError):
            continue
    try:
        yield
    finally:
        for sig in swapped:
            signal.signal(sig, signal.SIG_IGN)


_RESTORED_BY_SUBPROCESS = frozenset({signal.SIGPIPE, signal.SIGXFSZ})


def _kernel_ignored_signals() -> set[int]:
    """Signals whose disposition is SIG_IGN, from /proc/self/status SigIgn.

    One read (~10 us) instead of signal.getsignal() on every signal (~170 us).
    """
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"SigIgn:"):
                mask = int(line.split()[1], 16)
                return {n + 1 for n in range(mask.bit_length()) if mask >> n & 1}
    return set()


def _noop_handler(signum: int, frame: object) -> None:
    """Stands in for SIG_IGN while spawning; see _ignored_signals_caught."""


def spawn(argv: Sequence[str], env: Mapping[str, str], stdout_fd: int, stderr_fd: int,
          cwd: str | None = None, pass_fds: Sequence[int] = ()) -> int:
    """Start ``argv`` (never through a shell) and return its pid.

    The child gets a new session (setsid: a Ctrl-C on the operator's terminal
    never reaches the agents, and its pgid is its own), stdin from /dev/null,
    ``stdout_fd``/``stderr_fd`` as 1/2, ``pass_fds`` kept at their numbers (the
    preloader's socket, process/preload.py), every other fd closed (close_range,
    so inheritable fds such as socket-activation fds from systemd do not leak
    either), default signal dispositions and an empty signal mask.

    Implementation: ``subprocess.Popen`` (CPython's vfork path, taken because
    we use no preexec_fn/user/group), not ``os.posix_spawn``. Measured on this
    2-core box (glibc 2.36, Python 3.11), /bin/true, 300 spawns each,
    parent-side cost of the call:

    * ``os.posix_spawn`` (setsid, /dev/null open, dup2s): median 108-120 us,
      p90 145-152 us. Resetting *every* signal via setsigdef costs ~180 us
      more (one sigaction per signal in the vfork child).
    * ``subprocess.Popen`` (close_fds, start_new_session, DEVNULL):
      median 147-196 us, p90 165-281 us.

    posix_spawn is ~50 us faster but **not correct** here: glibc's
    posix_spawn child leaves its internal signals 32/33 (SIGCANCEL,
    SIGSETXID) set to SIG_IGN, which survives exec (seen as SigIgn
    0x180000000 in the child's /proc status), and Python cannot list them in
    setsigdef (sigaddset refuses internal signals). 50 us is nothing next to
    an agent's multi-second start, so Popen it is. This function as a whole
    (path check, SIG_IGN swap, Popen): median 183-225 us, p90 204-271 us.

    The Popen object is dropped at once with ``returncode`` set: otherwise it
    would sit in subprocess._active and a later Popen() would waitpid() it,
    stealing the exit status from ``Reaper``.

    Raises ``SpawnError`` for a missing / non-executable binary (checked
    before the fork, and again from the exec error Popen reports).
    """
    if not argv:
        raise SpawnError("<empty>", "empty command")
    path = _resolve(argv[0], env)
    if cwd is not None and not os.path.isdir(cwd):
        raise SpawnError(argv[0], f"working directory {cwd} does not exist")
    with _ignored_signals_caught():
        try:
            proc = subprocess.Popen(
                list(argv), executable=path, env=dict(env), cwd=cwd,
                stdin=subprocess.DEVNULL, stdout=stdout_fd, stderr=stderr_fd,
                close_fds=True, start_new_session=True, restore_signals=True,
                pass_fds=tuple(pass_fds))
        except OSError as exc:
            raise SpawnError(argv[0], exc.strerror or str(exc)) from exc
    proc.returncode = 0  # the Reaper owns waitpid() for this pid
    return proc.pid


def set_child_subreaper(enable: bool = True) -> None:
    """prctl(PR_SET_CHILD_SUBREAPER): orphans below us reparent to us, not PID 1.

    That is how a full stop finds setsid()'d grandchildren (neutron's
    dnsmasq/haproxy/keepalived) after their parent agent died. The caller must
    then reap them too (``Reaper`` does: waitpid(-1)).
    """
    # CDLL(None): the C library already linked into this process; no
    # ctypes.util.find_library, which forks ldconfig (2-11 ms at start).
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(enable), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(err)}")


def release_memory() -> None:
    """Give the heap freed by a reload back to the kernel (glibc malloc_trim).

    Resolving a thousand snippets allocates a few MiB that are garbage once
    the new plans are applied; CPython keeps freed arenas' pages in malloc's
    free lists, so without this the RSS of a long-running supervisor only
    ever grows to its largest reload.
    """
    import gc

    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(returncode, signal) from a waitpid() status; one of them is None."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None


ExitCallback = Callable[[int, "int | None", "int | None"], None]


class Reaper:
    """SIGCHLD-driven reaping on the running asyncio loop.

    Each SIGCHLD (delivered through asyncio's self-pipe, so the callback runs
    in the loop, never in signal context) drains ``waitpid(-1, WNOHANG)`` and
    calls ``on_exit(pid, returncode, signal)`` for every pid reaped: agents and
    orphans inherited as subreaper alike; the caller sorts them out.

    Signals coalesce, so one SIGCHLD may stand for many exits: hence the loop.
    Do not use asyncio subprocesses (or any per-pid waitpid, e.g.
    subprocess.run in a thread) next to this: whoever calls waitpid first
    gets the status and the other side sees ECHILD.
    """

    def __init__(self, on_exit: ExitCallback,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._on_exit = on_exit
        self._loop = loop or asyncio.get_running_loop()
        self._installed = False

    def install(self) -> None:
        """Register the handler, then reap anything that exited before it."""
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self._installed = True
        self.reap()

    def close(self) -> None:
        if self._installed:
            self._loop.remove_signal_handler(signal.SIGCHLD)
            self._installed = False

    def reap(self) -> list[int]:
        """Reap every exited child now; return their pids."""
        reaped = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                break
            reaped.append(pid)
            rc, sig = decode_wait_status(status)
            try:
                self._on_exit(pid, rc, sig)
            except Exception:  # one bad callback must not stop reaping
                LOG.exception("exit callback failed for pid %d", pid)
        return reaped


def proc_ppids() -> dict[int, int]:
    """pid -> ppid for every process visible in /proc."""
    ppids = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # comm may contain spaces and ')': the fields after the *last* ')'
        # are "state ppid ..." (proc(5)).
        fields = stat.rsplit(b")", 1)[-1].split()
        if len(fields) >= 2:
            ppids[int(name)] = int(fields[1])
    return ppids


def cmdline(pid: int) -> str:
    """The command line of ``pid`` with spaces, ``[comm]`` when it has none, "" if gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    if raw:
        return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    try:  # zombie or kernel thread: no cmdline, show [comm]
        with open(f"/proc/{pid}/comm", "rb") as f:
            return "[" + f.read().strip().decode("utf-8", "replace") + "]"
    except OSError:
        return ""


def descendants(root: int | None = None) -> dict[int, str]:
    """Every live descendant of ``root`` (default: us) as pid -> cmdline.

    Walks ppid links in /proc, so it finds setsid()'d and reparented
    grandchildren (as long as we are their subreaper), whatever their
    session or process group. ``root`` itself is not included.
    """
    if root is None:
        root = os.getpid()
    children: dict[int, list[int]] = {}
    for pid, ppid in proc_ppids().items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    stack = list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found[pid] = cmdline(pid)
        stack.extend(children.get(pid, ()))
    return found


def signal_all(pids: Iterable[int], sig: int) -> list[int]:
    """Send ``sig`` to each pid; return those that received it.

    A pid that is already gone is skipped silently. Pids should come from a
    fresh ``descendants()`` scan. Those whose parent is us (children, and
    orphans we inherited as subreaper) stay zombies until *we* reap them, so
    their pid cannot be reused in between; one whose parent is still a live
    agent could in theory be reaped and its pid reused in the microseconds
    between scan and kill (a pidfd would close that gap; not worth it for a
    stop path that follows up with a rescan).
    """
    sent = []
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
        except PermissionError as exc:  # not ours after all: say so, go on
            LOG.warning("cannot signal pid %d: %s", pid, os.strerror(exc.errno or errno.EPERM))
            continue
        sent.append(pid)
    return sent


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until ``pids`` exited or ``timeout`` passed; return the ones still running.

    For processes that are not our children (a dead supervisor's agents, a
    crashed predecessor's leftovers, now reparented): waitpid cannot see them
    and no SIGCHLD comes, but a pidfd turns readable when its process exits,
    so this polls without a busy loop.
    """
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except OSError:  # ProcessLookupError included: already gone
            continue
    try:
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                os.close(fd)
                fds.pop(fd)
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)
