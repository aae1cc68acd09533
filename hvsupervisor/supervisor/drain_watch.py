"""Following a stopping agent's log for its drained line (the rule: core/stop_drain.py).

The lifecycle asks for it with ``WatchDrain`` just before it sends the stop
signal; this mixin notes the log's current end, follows what the agent
appends from there, and posts ``Drained(pid)`` when the scanner says the
line has come. The lifecycle decides what that means (one escalation, only
for the process being stopped); this only reads.

Why inotify (through libc, the standard library has no binding) and not a
poll: the supervisor waits on events only, and a stop that takes minutes must
not turn into a timer loop. If inotify or the file is not there, nothing is
watched and the stop goes on as without the rule (SIGKILL after
``stop_timeout``). A log replaced under a running stop (logrotate's create
mode) leaves the watch on the old file: the same fallback.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from hvsupervisor.core.lifecycle import Drained, WatchDrain
from hvsupervisor.core.stop_drain import DrainScanner
from hvsupervisor.supervisor.agent import Agent

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
READ_CHUNK = 1 << 20

_libc: ctypes.CDLL | None = None


def _inotify() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


class LogFollower:
    """Feeds what is appended to ``path`` after ``start()`` to ``scanner``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: Path, scanner: DrainScanner,
                 on_match: Callable[[], None]) -> None:
        self.loop, self.path, self.scanner, self.on_match = loop, path, scanner, on_match
        self._fd = -1
        self._offset = 0

    def start(self) -> None:
        """Watch from the file's current end (OSError if it cannot)."""
        self._offset = os.stat(self.path).st_size
        libc = _inotify()
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        mask = IN_MODIFY | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF
        if libc.inotify_add_watch(fd, os.fsencode(self.path), mask) < 0:
            err = ctypes.get_errno()
            self.close()
            raise OSError(err, f"inotify_add_watch {self.path}: {os.strerror(err)}")
        self.loop.add_reader(fd, self._on_event)

    def _on_event(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError:
            self.close()
            return
        self._read_appended()

    def _read_appended(self) -> None:
        try:
            with open(self.path, "rb") as f:
                if os.fstat(f.fileno()).st_size < self._offset:  # truncated (copytruncate)
                    self._offset = 0
                    self.scanner.restart()
                f.seek(self._offset)
                while chunk := f.read(READ_CHUNK):
                    self._offset += len(chunk)
                    if self.scanner.feed(chunk):
                        self.close()
                        self.on_match()
                        return
        except OSError:
            return

    def close(self) -> None:
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1


class DrainWatching:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: the WatchDrain action.

    Uses the loop's ``_loop``, ``settings``, ``_post`` and ``_drain``.
    """

    def _watch_drain(self, agent: Agent, action: WatchDrain) -> None:
        self._unwatch_drain(agent)
        path = self.settings.log_dir / f"{agent.name}.log"
        pid = action.pid

        def matched() -> None:
            agent.drain_watch = None
            LOG.info("event=drained agent=%s pid=%d (its log matched stop_drained)",
                     agent.name, pid)
            self._post(agent.name, Drained(pid))
            self._drain()

        follower = LogFollower(self._loop, path, DrainScanner(action.rule), matched)
        try:
            follower.start()
        except OSError as exc:
            LOG.warning("agent=%s: not following its log for stop_drained (%s); "
                        "SIGKILL after its stop_timeout as without the rule", agent.name, exc)
            return
        agent.drain_watch = follower

    def _unwatch_drain(self, agent: Agent) -> None:
        if agent.drain_watch is not None:
            agent.drain_watch.close()
            agent.drain_watch = None
