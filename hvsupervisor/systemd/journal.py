"""Where an agent's stdout/stderr go: a journal stream, or a file.

Either way the returned fd is handed to the child as fd 1 and 2 and the
supervisor closes its copy: the child writes straight to journald or the
file, so the supervisor is never in the data path (no pipe to drain, a 10 MB
line costs it nothing, and logs keep flowing while the supervisor restarts).

Decision: **one stream for both stdout and stderr, priority 6 (info)**.
oslo.log sends every level to one of them (stderr with use_stderr=True,
stdout when no log file is set), so a fixed "stderr = priority 3" would mark
each INFO line an error, and two connections would lose the ordering between
a log line and the traceback that follows it. One connection per agent is
also one fd instead of two.
"""

from __future__ import annotations

import os
import socket
import stat

JOURNAL_STDOUT = "/run/systemd/journal/stdout"
_SNDBUF = 8 * 1024 * 1024  # what sd_journal_stream_fd asks for (SNDBUF_SIZE)


def stream_header(identifier: str, priority: int = 6, level_prefix: bool = False) -> bytes:
    """The journald stdout-stream header: seven newline-terminated lines.

    identifier, unit id (empty: only systemd itself sets it), priority 0-7,
    level_prefix 0/1, forward_to_syslog, forward_to_kmsg, forward_to_console
    (0 0 0: the journald.conf defaults decide). Checked against systemd's
    ``sd_journal_stream_fd()`` (src/libsystemd/sd-journal/journal-send.c,
    systemd/systemd @004e3ed) and the parser states in
    src/journal/journald-stream.h (STDOUT_STREAM_IDENTIFIER .. _CONSOLE).
    """
    if "\n" in identifier or "\0" in identifier:
        raise ValueError(f"journal identifier must be one line: {identifier!r}")
    if not 0 <= priority <= 7:
        raise ValueError(f"journal priority must be 0-7, not {priority}")
    lines = [identifier, "", str(priority), "1" if level_prefix else "0", "0", "0", "0"]
    return ("\n".join(lines) + "\n").encode("utf-8")


def journal_stream(identifier: str, priority: int = 6, path: str = JOURNAL_STDOUT,
                   level_prefix: bool = False) -> int:
    """Open a journald stdout stream for ``identifier``; return a blocking fd.

    Every newline-terminated line written to it becomes a journal entry with
    ``SYSLOG_IDENTIFIER=identifier`` and ``PRIORITY=priority``. Note that
    journald takes _PID/_COMM of the stream from the *connecting* process
    (SO_PEERCRED at connect), i.e. the supervisor; the identifier is what
    tells agents apart (``journalctl -t neutron-l3-agent``).

    The fd is close-on-exec in our process; ``spawn`` dup2()s it onto the
    child's 1/2. Close ours after the spawn. Raises OSError if journald is
    not listening.
    """
    header = stream_header(identifier, priority, level_prefix)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        sock.shutdown(socket.SHUT_RD)  # we never read; journald never writes
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
        except OSError:
            pass  # best effort, as in sd_journal_stream_fd
        sock.sendall(header)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(True)
    return sock.detach()


def journal_available(path: str = JOURNAL_STDOUT) -> bool:
    """True if a journald stdout socket exists at ``path``."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def log_file_fd(path: str) -> int:
    """Open ``path`` for the child's stdout/stderr on hosts without a journal.

    O_APPEND so concurrent writers (stdout and stderr, a restarted agent)
    never overwrite each other; mode 0640 (group may read, nobody else, and
    never world-writable). Close-on-exec in our process like every fd.
    """
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
