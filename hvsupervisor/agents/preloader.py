"""The warm preloader: import an agent's console-script module once, fork one child per start.

Run by the supervisor (process/preload.py) as ``python -m hvsupervisor.agents.preloader
--fd N MODULE...``, already dropped to the agents' user by setpriv like any
user-run agent, with fd N one end of a SOCK_SEQPACKET socketpair. Standard library
only, and nothing of its own before the fork beyond that socket: it parses no
config, opens no other socket, starts no thread (a thread would not survive
the fork; a forked config would not be the child's). Importing the modules
runs whatever the console script's own import runs, in the same order: for
neutron 29 that is ``neutron.cmd.agents`` choosing oslo.service's threading
backend (doc/upstream-behaviour.md section 19), the place where eventlet-era
neutron monkey patched.

Protocol, one JSON object per datagram:

* preloader -> supervisor, once: ``{"ready": true, "pid": N}`` after the imports
  and ``gc.freeze()`` (copy-on-write pages stay shared: the collector no
  longer writes to the frozen objects' headers), or ``{"error": "..."}`` and exit 2;
* supervisor -> preloader: ``{"argv", "env", "cwd", "entry": "MOD:FUNC", "title",
  "comm"}`` with SCM_RIGHTS [stdout, stderr];
* preloader -> supervisor: ``{"pid": N}`` of the agent, or ``{"error": "..."}``.

The agent is a grandchild: an intermediate child forks it and exits, so it is
reparented to the nearest subreaper, the supervisor, which reaps it as it
reaps an exec'd agent; its pid is sent once that has happened. The child
becomes the agent as exec would make it: its own session, stdin /dev/null and
the given fds as 1/2, default signal
dispositions and an empty mask, the plan's environment (replacing ours), its
cwd, ``sys.argv`` and ``sys.path[0]`` of the console script, the process title
(``ps``) and ``/proc/PID/comm`` of the script; then ``sys.exit(FUNC())``.
"""

from __future__ import annotations

import _socket
import array
import ctypes
import gc
import importlib
import json
import os
import posix
import signal
import sys
import threading

MAX_REQUEST = 1 << 20
PR_SET_NAME = 15  # <linux/prctl.h>


def _send(sock: _socket.socket, obj: dict) -> None:
    sock.send(json.dumps(obj).encode())


def _recv(sock: _socket.socket) -> tuple[dict | None, list[int]]:
    fds = array.array("i")
    msg, anc, _flags, _addr = sock.recvmsg(MAX_REQUEST, _socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    if not msg:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(msg), list(fds)


def prepare_title() -> None:
    """Let setproctitle find our argv and environ area now, while environ is still the
    one exec gave us (the supervisor pads it with HVSUP_PRELOAD_ROOM: the agent's title
    is longer than our command line); a child that cleared environ first could not."""
    try:
        import setproctitle  # a dependency (setup.cfg); absent only in a --no-deps install
    except ImportError:
        return
    setproctitle.getproctitle()


def set_title(title: str, comm: str) -> None:
    """``ps`` shows ``title`` (setproctitle, if installed), /proc/PID/comm ``comm``."""
    try:
        import setproctitle
    except ImportError:
        pass
    else:
        setproctitle.setproctitle(title)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(comm.encode()[:15]), 0, 0, 0)


def become(req: dict, fds: list[int], sock: _socket.socket):
    """In the forked child: turn into the agent; returns its entry function."""
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in {devnull, *fds} - {0, 1, 2}:
        os.close(fd)
    sock.close()
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["cwd"])
    argv = list(req["argv"])
    sys.argv = argv
    sys.path[0] = os.path.dirname(argv[0])  # as when the script runs: its own dir
    set_title(req["title"], req["comm"])
    module, _, func = req["entry"].partition(":")
    return getattr(importlib.import_module(module), func)


def fork_agent(req: dict, fds: list[int], sock: _socket.socket):
    """Fork the intermediate; in the agent child return its entry, else None.

    The pid is sent only after the intermediate has exited, i.e. once the agent
    is the supervisor's child: the supervisor can waitpid() it the moment it
    knows it, and a SIGCHLD of an agent that died at once reaches the supervisor.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    rfd, wfd = os.pipe()
    mid = posix.fork()
    if mid == 0:
        os.close(rfd)
        pid = -1
        try:
            pid = posix.fork()
            if pid > 0:
                os.write(wfd, str(pid).encode())
        finally:
            if pid != 0:
                os._exit(0)  # the intermediate never returns, whatever happened
        os.close(wfd)
        return become(req, fds, sock)
    os.close(wfd)
    for fd in fds:
        os.close(fd)
    posix.waitpid(mid, 0)
    text = b""
    while chunk := posix.read(rfd, 64):
        text += chunk
    posix.close(rfd)
    if text:
        _send(sock, {"pid": int(text)})
    else:
        _send(sock, {"error": "fork failed"})
    return None


def serve(sock: _socket.socket):
    """Answer requests until the supervisor closes its end; in a child, its entry."""
    while True:
        try:
            req, fds = _recv(sock)
        except OSError:
            return None
        if req is None:
            return None
        if threading.active_count() > 1 or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            _send(sock, {"error": f"cannot fork: {threading.active_count()} threads, "
                                  f"{len(fds)} fds"})
            continue
        entry = fork_agent(req, fds, sock)
        if entry is not None:
            return entry


def main(args: list[str]) -> int:
    if len(args) < 2 or args[0] != "--fd":
        print("usage: python -m hvsupervisor.agents.preloader --fd N MODULE...", file=sys.stderr)
        return 2
    modules = args[2:]
    sock = _socket.socket(fileno=int(args[1]))  # before any import: never a patched socket
    prepare_title()
    os.environ.pop("HVSUP_PRELOAD_ROOM", None)
    try:
        for name in modules:
            importlib.import_module(name)
        if threading.active_count() > 1:
            raise RuntimeError(f"importing {modules} started {threading.active_count() - 1} "
                               "thread(s)")
    except BaseException as exc:  # any import failure: say what, the supervisor execs
        _send(sock, {"error": f"preload of {' '.join(modules)} failed: "
                              f"{type(exc).__name__}: {exc}"})
        return 2
    gc.collect()
    gc.freeze()
    _send(sock, {"ready": True, "pid": os.getpid()})
    entry = serve(sock)
    if entry is None:
        return 0
    sys.exit(entry())  # the agent, exactly as its console script's last line


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
