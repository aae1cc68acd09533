#!/usr/bin/env python3
"""Stand-in agent for functional tests and benchmarks (stdlib only).

It behaves like an upstream agent in the ways the supervisor cares about:
readiness (READY=1 on $NOTIFY_SOCKET, a listening socket), crashes, SIGTERM
handling (graceful, ignored, hung), setsid()'d grandchildren that outlive it
(like dnsmasq under the DHCP agent), and output (floods, huge lines).

It prints ``standin: started pid=N`` at start and ``standin: stopping ...``
when it exits. All waiting is select()/pause()-based: no busy loops.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import sys
import time


def say(text: str) -> None:
    """One line on stdout, written with a single write() so it is never torn."""
    data = (text + "\n").encode()
    while data:
        n = os.write(1, data)
        data = data[n:]


def write_atomic(path: str, text: str) -> None:
    """Write via rename so a waiting test never reads a half-written file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def notify(*assignments: str) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.send("\n".join(assignments).encode())


def sleep_forever() -> None:
    while True:
        signal.pause()


def helper_grandchild(spec: str) -> None:
    """Like setsid_grandchild, but the grandchild execs ``sleep`` named NAME.

    ``NAME:PIDFILE``: a data-plane helper stand-in (``dnsmasq``, ``haproxy``):
    its argv[0] is what the supervisor recognises a helper by.
    """
    name, _, pidfile = spec.partition(":")
    try:  # adopt a running one, as neutron's agents do with their pid files
        pid = int(open(pidfile).read().strip())
        if open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0] == name.encode():
            return
    except (OSError, ValueError):
        pass
    mid = os.fork()
    if mid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                devnull = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(devnull, fd)
                write_atomic(pidfile, str(os.getpid()))
                os.execv("/bin/sleep", [name, "infinity"])
        finally:
            os._exit(0)
    os.waitpid(mid, 0)


def setsid_grandchild(pidfile: str) -> None:
    """Double-fork a session leader's child that sleeps forever.

    The middle process exits at once, so the grandchild is reparented to the
    nearest subreaper (the supervisor) while we are still alive: exactly what
    the DHCP agent does with dnsmasq.
    """
    mid = os.fork()
    if mid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_DFL)
                write_atomic(pidfile, str(os.getpid()))
                sleep_forever()
        finally:
            os._exit(0)
    os.waitpid(mid, 0)


def grandchild_notify() -> None:
    """A forked helper sends READY=1: the supervisor must not believe it."""
    pid = os.fork()
    if pid == 0:
        try:
            notify("READY=1", f"X_PID={os.getpid()}", "X_ROLE=grandchild")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def flood(seconds: float) -> None:
    line = b"flood " + b"x" * 100 + b"\n"
    chunk = line * 64
    end = time.monotonic() + seconds
    written = 0
    while time.monotonic() < end:
        written += os.write(1, chunk)
    say(f"standin: flood done bytes={written}")


def big_line(size: int) -> None:
    data = memoryview(b"B" * size + b"\n")
    while data:
        n = os.write(1, data)
        data = data[n:]


def listen_tcp(spec: str) -> socket.socket:
    host, _, port = spec.rpartition(":")
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host.strip("[]"), int(port)))
    s.listen(64)
    return s


def listen_unix(path: str) -> socket.socket:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(64)
    return s


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ready-after", type=float, default=None, metavar="S")
    p.add_argument("--status", default=None, metavar="TEXT")
    p.add_argument("--crash-after", type=float, default=None, metavar="S")
    p.add_argument("--exit-code", type=int, default=1)
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--hang", action="store_true")
    p.add_argument("--setsid-grandchild", default=None, metavar="PIDFILE")
    p.add_argument("--helper-grandchild", action="append", default=[], metavar="NAME:PIDFILE")
    p.add_argument("--grandchild-notify", action="store_true")
    p.add_argument("--early-ready", action="store_true",
                   help="send READY=1 at once, before any socket listens (as oslo.service "
                   "does): the supervisor must still wait for its configured probe")
    p.add_argument("--listen-tcp", default=None, metavar="HOST:PORT")
    p.add_argument("--listen-unix", default=None, metavar="PATH")
    p.add_argument("--flood", type=float, default=None, metavar="SECONDS")
    p.add_argument("--big-line", type=int, default=None, metavar="BYTES")
    p.add_argument("--dump-env", default=None, metavar="FILE")
    p.add_argument("--print", dest="print_text", default=None, metavar="TEXT")
    p.add_argument("--pidfile", default=None, metavar="FILE")
    p.add_argument("--config-file", action="append", default=[],
                   help="accepted and ignored: every plan passes its files this way")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    def on_term(signum: int, frame: object) -> None:
        say(f"standin: stopping on {signal.Signals(signum).name}")
        sys.exit(0)

    if args.hang:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_IGN)
    elif args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN if args.hang else on_term)

    say(f"standin: started pid={os.getpid()}")
    if args.pidfile:
        write_atomic(args.pidfile, str(os.getpid()))
    if args.dump_env:
        write_atomic(args.dump_env, json.dumps(dict(os.environ), sort_keys=True))
    if args.print_text is not None:
        say(args.print_text)
    if args.status is not None:
        notify(f"STATUS={args.status}")
    if args.setsid_grandchild:
        setsid_grandchild(args.setsid_grandchild)
    for spec in args.helper_grandchild:
        helper_grandchild(spec)
    if args.grandchild_notify:
        grandchild_notify()
    if args.early_ready:
        notify("READY=1", f"X_PID={os.getpid()}", "X_ROLE=early")
        say("standin: early READY=1 sent")
    if args.big_line is not None:
        big_line(args.big_line)
    if args.flood is not None:
        flood(args.flood)

    if args.hang:
        say("standin: hanging (only SIGKILL works)")
        sleep_forever()

    start = time.monotonic()
    listeners: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    ready_at = start + args.ready_after if args.ready_after is not None else None
    crash_at = start + args.crash_after if args.crash_after is not None else None
    if ready_at is None and (args.listen_tcp or args.listen_unix):
        ready_at = start

    while True:
        now = time.monotonic()
        if ready_at is not None and now >= ready_at:
            ready_at = None
            if args.early_ready:  # before listening: whoever sees it listen sees this line
                say("standin: listening now")
            if args.listen_tcp:
                listeners.append(listen_tcp(args.listen_tcp))
            if args.listen_unix:
                listeners.append(listen_unix(args.listen_unix))
            for s in listeners:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            if args.ready_after is not None:
                notify("READY=1", f"X_PID={os.getpid()}", "X_ROLE=main")
            say("standin: ready")
        if crash_at is not None and now >= crash_at:
            say(f"standin: crashing with exit code {args.exit_code}")
            return args.exit_code
        deadlines = [t for t in (ready_at, crash_at) if t is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        if not listeners and timeout is None:
            sleep_forever()
        for key, _ in sel.select(timeout):
            try:
                conn, _ = key.fileobj.accept()  # type: ignore[union-attr]
                conn.close()
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
