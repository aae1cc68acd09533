"""The supervisor's side of a warm preloader (hvsupervisor/agents/preloader.py).

``Preloader.start`` spawns the preloader like an agent (children.spawn; for a
user-run group through the same setpriv drop) with one end of a SOCK_SEQPACKET
socketpair (``--fd N``); its imports then run while the supervisor goes on.
``fork`` asks it for one agent: the request and the agent's stdout/stderr fds
(SCM_RIGHTS) go down the socket, the agent's pid comes back. It is used only
once the preloader said it is ready: ``fork`` never waits for imports, so a
start that comes too early (the first agent of a cold start) is simply an exec.
Every problem (not ready, dead, a refused or failed fork, a stale preloader)
is a ``PreloadError``: the caller execs the agent instead.

The forked agent is reparented to the supervisor only if the supervisor is a
child subreaper (process/children.py set_child_subreaper, done by ``run``);
``fork`` refuses otherwise, so an agent is never lost to PID 1.
"""

from __future__ import annotations

import array
import ctypes
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from hvsupervisor.core.preload_groups import Entry, Group, stale
from hvsupervisor.process import children, codechange

LOG = logging.getLogger(__name__)

FORK_TIMEOUT = 5.0  # a fork answers in milliseconds; this only bounds a wedged preloader
PR_GET_CHILD_SUBREAPER = 37
TITLE_ROOM = 4096  # bytes: an agent's argv with its --config-file list fits


class PreloadError(Exception):
    """This start cannot use the preloader; the agent is exec'd instead."""


def is_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    val = ctypes.c_int(0)
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(val), 0, 0, 0)
    return bool(val.value)


def read_entry(script: str) -> Entry | None:
    """The console script's entry point, or None (not readable, not a console script)."""
    from hvsupervisor.core.preload_groups import entry_point

    try:
        with open(script, encoding="utf-8", errors="replace") as fh:
            return entry_point(fh.read(8192))
    except OSError:
        return None


class Preloader:
    """One running preloader of a ``Group``; not thread-safe (the loop's thread only)."""

    def __init__(self, group: Group, code_argv: Sequence[str]) -> None:
        self.group = group
        self.code_argv = list(code_argv)  # a console script of the group, for the code check
        self.pid: int | None = None
        self.started = 0.0  # wall clock, the code check's reference
        self.ready = False
        self.was_ready = False  # it served once: losing it now means it died
        self.error = ""
        self._sock: socket.socket | None = None

    def start(self, prefix: Sequence[str], env: Mapping[str, str], out: int, err: int,
              cwd: str | None = None) -> int:
        """Spawn it (``prefix``: the setpriv drop, or empty); returns its pid."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [*prefix, self.group.interpreter, "-m", "hvsupervisor.agents.preloader",
                "--fd", str(theirs.fileno()), *self.group.modules]
        try:
            # Room for the agents' process titles (agents/preloader.py prepare_title).
            env = {**env, "HVSUP_PRELOAD_ROOM": " " * TITLE_ROOM}
            self.pid = children.spawn(argv, env, out, err, cwd=cwd, pass_fds=(theirs.fileno(),))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self.started = time.time()
        return self.pid

    def poll(self) -> bool:
        """Read its hello if it has arrived; True once ready. Never blocks."""
        if self.ready or self._sock is None:
            return self.ready
        try:
            msg = self._sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._fail(f"preloader socket: {exc}")
            return False
        reply = json.loads(msg) if msg else {"error": "preloader exited before it was ready"}
        if reply.get("ready"):
            self.ready = self.was_ready = True
        else:
            self._fail(str(reply.get("error", reply)))
        return self.ready

    def stale_reason(self) -> str | None:
        """Why its code is older than what is on disk (a package upgrade), or None."""
        mtimes = []
        for f in codechange.code_files(self.code_argv):
            try:
                mtimes.append(f.stat().st_mtime)
            except OSError:
                continue
        return "code changed after the preloader started" if stale(self.started, mtimes) \
            else None

    def fork(self, argv: Sequence[str], env: Mapping[str, str], out: int, err: int,
             cwd: str, entry: Entry) -> int:
        """One agent from the preloader: its pid (a child of ours once reparented)."""
        if not self.poll():
            raise PreloadError(self.error or "preloader not ready yet")
        if not is_subreaper():
            raise PreloadError("the supervisor is no child subreaper: a forked agent "
                               "would be reparented to PID 1")
        assert self._sock is not None
        req = {"argv": list(argv), "env": dict(env), "cwd": cwd, "entry": entry.text(),
               "title": " ".join([entry.interpreter, *argv]),
               "comm": os.path.basename(argv[0])}
        try:
            self._sock.sendmsg([json.dumps(req).encode()],
                               [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array("i", [out, err]))])
            ready, _, _ = select.select([self._sock], [], [], FORK_TIMEOUT)
            if not ready:
                raise PreloadError(f"no answer from the preloader in {FORK_TIMEOUT:.0f}s")
            msg = self._sock.recv(65536)
        except OSError as exc:
            self._fail(f"preloader socket: {exc}")
            raise PreloadError(self.error) from exc
        if not msg:
            self._fail("preloader exited")
            raise PreloadError(self.error)
        reply = json.loads(msg)
        if "pid" not in reply:
            raise PreloadError(str(reply.get("error", reply)))
        return int(reply["pid"])

    def _fail(self, error: str) -> None:
        self.error = error
        self.ready = False
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def stop(self) -> None:
        """Close our end (it exits on EOF) and SIGTERM it; the Reaper reaps it."""
        self._fail(self.error or "stopped")
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    @property
    def alive(self) -> bool:
        return self._sock is not None


def interpreter_ok(entry: Entry) -> bool:
    """The script's interpreter exists (a venv moved away: exec reports it better)."""
    return os.access(entry.interpreter, os.X_OK) or entry.interpreter == sys.executable
