"""sd_notify both ways: per-agent notify sockets in, our own status out.

* ``NotifyListener``: one AF_UNIX datagram socket per agent, given to the
  agent as its ``NOTIFY_SOCKET``. Each datagram is attributed with the
  kernel's SCM_CREDENTIALS, so the caller can accept READY=1 only from the
  agent's main pid (a forked worker or helper cannot mark the agent ready).
* ``SystemdNotifier``: our own messages to systemd (READY, STATUS, RELOADING
  with MONOTONIC_USEC, STOPPING, WATCHDOG), a no-op without ``NOTIFY_SOCKET``.

Field semantics: sd_notify(3) (systemd ``man/sd_notify.xml``); see
doc/upstream-behaviour.md section 10.
"""

from __future__ import annotations

import array
import asyncio
import logging
import os
import socket
import struct
import time
import unicodedata
from collections.abc import Callable, MutableMapping

import sdnotify

LOG = logging.getLogger(__name__)

# systemd reads notify datagrams into a buffer of NOTIFY_BUFFER_MAX = PIPE_BUF
# (src/core/manager.c); a longer one is not a valid notification either.
MAX_DATAGRAM = 4096
_UCRED = struct.Struct("iII")  # struct ucred {pid_t pid; uid_t uid; gid_t gid;}
_MAX_FDS = 16  # room for stray SCM_RIGHTS (FDSTORE=1) so we can close them
_ANC_SIZE = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_MAX_FDS * 4)

MessageCallback = Callable[[int, dict[str, str]], None]


def parse_notify(data: bytes) -> dict[str, str]:
    """Parse a notify datagram: newline-separated ``KEY=VALUE`` assignments.

    Lines without ``=``, with an empty key or a key that is not an
    environment-style name are ignored (garbage from a confused child must not
    crash or confuse the supervisor). A later assignment wins, as in systemd.
    """
    fields: dict[str, str] = {}
    text = data.decode("utf-8", "replace")
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if not sep or not key or not _valid_key(key):
            continue
        fields[key] = value
    return fields


def _valid_key(key: str) -> bool:
    return (key[0].isascii() and (key[0].isalpha() or key[0] == "_")
            and all(c.isascii() and (c.isalnum() or c == "_") for c in key))


class NotifyListener:
    """A bound AF_UNIX SOCK_DGRAM socket at ``path``, read on the asyncio loop.

    ``on_message(sender_pid, fields)`` is called for every well-formed
    datagram; ``sender_pid`` comes from SCM_CREDENTIALS (SO_PASSCRED), i.e.
    from the kernel, not from the message. Datagrams without credentials or
    longer than ``MAX_DATAGRAM`` are dropped; fds passed along (FDSTORE=1)
    are closed.

    The socket file is mode 0600 and owned by us (root): only root can send.
    When an agent later runs as another user, the caller must chown the
    socket to that uid (or chmod 0620 + chgrp) after construction; sending
    needs write permission on the socket file. The directory holding it (the
    run dir) must not be writable by others, or the path could be swapped.
    """

    def __init__(self, path: str, on_message: MessageCallback,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.path = path
        self._on_message = on_message
        self._loop = loop or asyncio.get_running_loop()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            self._sock.setblocking(False)
            try:
                os.unlink(path)  # stale socket from a previous run
            except FileNotFoundError:
                pass
            self._sock.bind(path)
            os.chmod(path, 0o600)
            self._loop.add_reader(self._sock.fileno(), self._on_readable)
        except BaseException:
            self._sock.close()
            raise
        self._closed = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def _on_readable(self) -> None:
        # Drain: one wakeup may stand for several datagrams.
        while True:
            try:
                data, anc, flags, _ = self._sock.recvmsg(MAX_DATAGRAM, _ANC_SIZE,
                                                         socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                LOG.warning("notify socket %s: %s", self.path, exc)
                return
            pid = self._creds_pid(anc)
            if flags & socket.MSG_TRUNC:
                LOG.warning("notify socket %s: dropped oversized message from pid %s",
                            self.path, pid)
                continue
            if pid is None:
                LOG.warning("notify socket %s: dropped message without credentials",
                            self.path)
                continue
            fields = parse_notify(data)
            if not fields:
                continue
            try:
                self._on_message(pid, fields)
            except Exception:
                LOG.exception("notify callback failed for pid %d", pid)

    @staticmethod
    def _creds_pid(anc: list[tuple[int, int, bytes]]) -> int | None:
        pid = None
        for level, ctype, cdata in anc:
            if level != socket.SOL_SOCKET:
                continue
            if ctype == socket.SCM_CREDENTIALS and len(cdata) >= _UCRED.size:
                pid = _UCRED.unpack_from(cdata)[0]
            elif ctype == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
                for fd in fds:
                    os.close(fd)
        return pid

    def close(self) -> None:
        """Stop reading, close and unlink the socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.remove_reader(self._sock.fileno())
        except (ValueError, RuntimeError):  # loop already closed
            pass
        self._sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def sanitize_status(text: str, limit: int = 1024) -> str:
    """Make STATUS text safe for sdnotify: one line of printable ASCII.

    sdnotify encodes latin-1 and swallows errors, so a non-latin-1 character
    would drop the whole message silently; a newline would start a new
    assignment. Accents are folded (NFKD), anything else becomes '?'.
    """
    text = " ".join(text.splitlines())
    folded = unicodedata.normalize("NFKD", text)
    out = []
    for ch in folded:
        if unicodedata.combining(ch):
            continue
        if " " <= ch <= "~":
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        else:
            out.append("?")
    result = "".join(out).strip()
    if len(result) > limit:
        result = result[: limit - 3] + "..."
    return result


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotifier:
    """Our own notifications to systemd, via the ``sdnotify`` package.

    Reads ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``/``WATCHDOG_PID`` once, at
    construction, then removes them from ``environ`` (os.environ by default)
    so that nothing we spawn can inherit them, even by accident.
    ``enabled`` is False without ``NOTIFY_SOCKET``: every method is a no-op.

    sdnotify swallows send errors unless debug=True; we use debug=True and
    log a warning instead, so a broken socket is visible but never fatal.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = _watchdog_usec(env.get("WATCHDOG_USEC"),
                                             env.get("WATCHDOG_PID"))
        self._sd: sdnotify.SystemdNotifier | None = None
        if self.address:
            saved = os.environ.get("NOTIFY_SOCKET")
            os.environ["NOTIFY_SOCKET"] = self.address  # sdnotify reads os.environ
            try:
                self._sd = sdnotify.SystemdNotifier(debug=True)
            except OSError as exc:
                LOG.warning("cannot connect to NOTIFY_SOCKET %s: %s", self.address, exc)
            finally:
                if saved is None:
                    os.environ.pop("NOTIFY_SOCKET", None)
                else:
                    os.environ["NOTIFY_SOCKET"] = saved
        # Kept for a re-exec of this same process (release switch: cmd/run.py),
        # which must find them again; never passed to a child.
        self.own_env = {k: env[k] for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
                        if k in env}
        for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(key, None)

    @property
    def enabled(self) -> bool:
        return self._sd is not None

    def notify(self, *assignments: str) -> bool:
        """Send raw ``KEY=VALUE`` assignments in one datagram; True if sent."""
        if self._sd is None:
            return False
        try:
            self._sd.notify("\n".join(assignments))
        except (OSError, UnicodeError) as exc:
            LOG.warning("sd_notify %s failed: %s", assignments[0].split("=")[0], exc)
            return False
        return True

    def ready(self) -> bool:
        return self.notify("READY=1")

    def status(self, text: str) -> bool:
        return self.notify("STATUS=" + sanitize_status(text))

    def ready_with_status(self, text: str) -> bool:
        return self.notify("READY=1", "STATUS=" + sanitize_status(text))

    def reloading(self, text: str | None = None) -> bool:
        """RELOADING=1 + MONOTONIC_USEC (v253, needed by Type=notify-reload).

        Must be followed by ``ready()`` when the reload is done.
        """
        msg = ["RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}"]
        if text is not None:
            msg.append("STATUS=" + sanitize_status(text))
        return self.notify(*msg)

    def stopping(self, text: str | None = None) -> bool:
        """STOPPING=1: final since systemd v259, send once, on the way out."""
        msg = ["STOPPING=1"]
        if text is not None:
            msg.append("STATUS=" + sanitize_status(text))
        return self.notify(*msg)

    def extend_timeout(self, seconds: float) -> bool:
        """EXTEND_TIMEOUT_USEC while draining agents slower than TimeoutStopSec."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """The watchdog timeout in seconds, or None if there is none for us.

        This is the full ``WatchdogSec``; ping at least every half of it
        (sd_watchdog_enabled(3)).
        """
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000


def _watchdog_usec(usec: str | None, pid: str | None) -> int | None:
    """WATCHDOG_USEC applies only if WATCHDOG_PID is unset or our pid."""
    if not usec:
        return None
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value if value > 0 else None
