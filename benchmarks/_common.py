"""Shared plumbing for the benchmarks: the three supervisors, kernel events, /proc.

Every benchmark runs hvsupervisor, supervisord and circus on the same box, in
the same run, with the same stand-in agent (tests/standin.py), and measures
them the same way:

* "a new process is running" is the kernel's own record of it: the proc
  connector (netlink, root only) reports fork/exec/exit events with a
  CLOCK_MONOTONIC timestamp taken in the kernel. A new agent is running at
  the first exec() by a process that the supervisor forked. No polling, so
  the measurement neither adds load nor quantises the result, and it does not
  depend on how fast the stand-in's own Python starts (a pidfile written by
  the agent would add its ~30 ms interpreter start to all three).
* CPU (utime+stime ticks), context switches (voluntary + involuntary, summed
  over every thread: each one is a wakeup) and RSS come from /proc/PID.

Daemons are started in a temp dir with private sockets and stopped by pid.
Nothing here asserts a timing: scripts print JSON, people read it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "tests" / "standin.py"
PYTHON = sys.executable
BINDIR = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

for _path in (REPO, REPO / "testcloud"):  # hvsupervisor and hvtestcloud from this checkout
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from hvtestcloud.waiting import wait_until  # noqa: E402

from hvsupervisor import process  # noqa: E402  (after the path fix)

# ---------------------------------------------------------------- output


def emit(figure: str, **data: object) -> None:
    """One JSON object per figure, one line."""
    print(json.dumps({"figure": figure, **data}, sort_keys=False), flush=True)


def parse_args(doc: str | None) -> argparse.Namespace:
    """The options every benchmark script takes (``--quick``), with ``--help`` from ``doc``."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions, shorter windows (also BENCH_QUICK=1)")
    return parser.parse_args()


def quick() -> bool:
    return "--quick" in sys.argv[1:] or os.environ.get("BENCH_QUICK") == "1"


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (p an integer in 1..99), as statistics.quantiles computes it
    (method "inclusive": interpolated between the closest ranks; one value is its own)."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[int(p) - 1]


def summary_ms(values_ns: Sequence[int]) -> dict:
    ms = [v / 1e6 for v in values_ns]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3),
            "p95_ms": round(pct(ms, 95), 3), "min_ms": round(min(ms), 3),
            "max_ms": round(max(ms), 3)}


# ------------------------------------------------------------------ /proc


@dataclass
class ProcSample:
    ticks: int  # utime + stime, all threads
    ctxsw: int  # voluntary + nonvoluntary context switches, all threads
    rss_kib: int
    hwm_kib: int
    t: float


def sample(pid: int) -> ProcSample:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (proc(5) fields 14, 15)
    ctxsw = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status", "rb") as f:
                for line in f:
                    if line.startswith((b"voluntary_ctxt_switches", b"nonvoluntary_ctxt")):
                        ctxsw += int(line.split()[1])
        except OSError:
            continue
    rss = hwm = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith(b"VmHWM:"):
                hwm = int(line.split()[1])
    return ProcSample(ticks, ctxsw, rss, hwm, time.monotonic())


def idle_figures(before: ProcSample, after: ProcSample) -> dict:
    dt = after.t - before.t
    return {"window_s": round(dt, 1),
            "wakeups_per_s": round((after.ctxsw - before.ctxsw) / dt, 2),
            "cpu_ticks": after.ticks - before.ticks,
            "rss_mib": round(after.rss_kib / 1024, 1)}


def children(ppid: int) -> dict[int, str]:
    """Live children of ``ppid`` (pid -> cmdline)."""
    return {pid: process.cmdline(pid) for pid, parent in process.proc_ppids().items()
            if parent == ppid}


# ------------------------------------------------------- kernel proc events


class ProcEvents:
    """fork/exec/exit events from the kernel's proc connector, timestamped by it.

    The kernel stamps each event with ktime_get_ns() (CLOCK_MONOTONIC), the
    clock behind time.monotonic_ns(), so "kill sent" (ours) and "new process
    exec'd" (the kernel's) are on one time line.
    """

    _NETLINK_CONNECTOR = 11
    _CN_IDX_PROC = 1
    _FORK, _EXEC, _EXIT = 0x1, 0x2, 0x80000000

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM,
                                   self._NETLINK_CONNECTOR)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind((0, self._CN_IDX_PROC))
        op = struct.pack("I", 1)  # PROC_CN_MCAST_LISTEN
        cn = struct.pack("IIIIHH", self._CN_IDX_PROC, 1, 0, 0, len(op), 0) + op
        self._sock.send(struct.pack("IHHII", 16 + len(cn), 3, 0, 0, 0) + cn)
        self._cond = threading.Condition()
        self.parent: dict[int, int] = {}  # child tgid -> parent tgid
        self.execs: list[tuple[int, int, int]] = []  # (ts_ns, pid, parent)
        self.exits: dict[int, int] = {}  # pid -> ts_ns
        self.watch: set[int] = set()  # parents whose children we record
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="procevents")
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            off = 0
            while off + 16 <= len(data):
                length = struct.unpack_from("I", data, off)[0]
                if length < 16:
                    break
                self._event(data, off + 36)
                off += (length + 3) & ~3

    def _event(self, data: bytes, at: int) -> None:
        if at + 16 > len(data):
            return
        what, _cpu, ts = struct.unpack_from("IIQ", data, at)
        body = at + 16
        if what == self._FORK:
            _ppid, ptgid, cpid, ctgid = struct.unpack_from("IIII", data, body)
            if cpid == ctgid and ptgid in self.watch:
                with self._cond:
                    self.parent[ctgid] = ptgid
        elif what == self._EXEC:
            pid, tgid = struct.unpack_from("II", data, body)
            parent = self.parent.get(tgid)
            if parent is not None:
                with self._cond:
                    self.execs.append((ts, tgid, parent))
                    self._cond.notify_all()
        elif what == self._EXIT:
            pid, tgid = struct.unpack_from("II", data, body)
            if pid == tgid and tgid in self.parent:
                with self._cond:
                    self.exits[tgid] = ts
                    self._cond.notify_all()

    def wait_exec(self, parent: int, after_ns: int, timeout: float) -> tuple[int, int]:
        """The first exec (ts_ns, pid) by a child of ``parent`` after ``after_ns``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ts, pid, par in self.execs:
                    if par == parent and ts > after_ns:
                        return ts, pid
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no exec by a child of {parent} within {timeout}s")
                self._cond.wait(left)

    def wait_execs(self, parent: int, after_ns: int, count: int, timeout: float) -> list[int]:
        """Timestamps of the first ``count`` execs by children of ``parent``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [ts for ts, _, par in self.execs if par == parent and ts > after_ns]
                if len(got) >= count:
                    return sorted(got)[:count]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(got)}/{count} execs by children of {parent} "
                                       f"within {timeout}s")
                self._cond.wait(left)

    def close(self) -> None:
        self._closed = True
        self._sock.close()


# ------------------------------------------------------- fake notify socket


class NotifyRecorder:
    """A fake $NOTIFY_SOCKET: records (monotonic_ns, fields) of each datagram."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.messages: list[tuple[int, dict[str, str]]] = []
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._thread = threading.Thread(target=self._run, daemon=True, name="notify")
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            now = time.monotonic_ns()
            fields = dict(line.partition("=")[::2] for line in data.decode().split("\n") if line)
            with self._cond:
                self.messages.append((now, fields))
                self._cond.notify_all()

    def wait_for(self, key: str, value: str | None = None, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ts, f in self.messages:
                    if key in f and (value is None or f[key] == value):
                        return ts
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {key}={value} on the notify socket in {timeout}s")
                self._cond.wait(left)

    def count(self, key: str) -> int:
        with self._cond:
            return sum(1 for _, f in self.messages if key in f)

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


# --------------------------------------------------------------- harnesses


@dataclass
class AgentDef:
    """One stand-in agent, described once and given to all three supervisors."""

    name: str
    args: list[str] = field(default_factory=lambda: ["--ready-after", "0"])

    def argv(self) -> list[str]:
        return [PYTHON, str(STANDIN), *self.args, "--print", f"bench-{self.name}"]


def standins(count: int, prefix: str = "agent") -> list[AgentDef]:
    return [AgentDef(f"{prefix}{i:03d}") for i in range(count)]


class Daemon:
    """A supervisor under test: started in ``root``, stopped by pid."""

    name = "?"
    # Stop with SIGTERM and wait? supervisord takes ~4 s and circusd more than
    # 20 s to stop six agents; their stop is not what we measure, so they get
    # SIGKILL, and their agents too (by pid, collected first).
    graceful = False

    def __init__(self, root: Path, agents: list[AgentDef]) -> None:
        self.root = root
        self.agents = agents
        self.proc: subprocess.Popen | None = None
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start_ns = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env["PYTHONPATH"] = str(REPO)
        return env

    def start(self, events: ProcEvents | None = None) -> None:
        out = open(self.root / "daemon.out", "ab")
        self.start_ns = time.monotonic_ns()
        self.proc = subprocess.Popen(self.command(), env=self.env(), stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT, cwd=self.root,
                                     start_new_session=True)
        out.close()
        if events is not None:
            events.watch.add(self.proc.pid)

    def agent_log(self, agent: str) -> Path:
        return self.logs / f"{agent}.log"

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = children(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM if self.graceful else signal.SIGKILL)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in kids:  # anything the daemon failed to stop (by pid, never by name)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class HvSupervisor(Daemon):
    name = "hvsupervisor"
    graceful = True

    def __init__(self, root: Path, agents: list[AgentDef], notify: str | None = None,
                 supervisor_opts: dict[str, str] | None = None,
                 config_dirs: str | None = None) -> None:
        super().__init__(root, agents)
        self.notify = notify
        self.defaults = root / "defaults"
        self.override = root / "override"
        self.run_dir = root / "run"
        (self.defaults / "svc").mkdir(parents=True, exist_ok=True)
        self.override.mkdir(exist_ok=True)
        (self.defaults / "svc" / "s.conf").write_text("[DEFAULT]\ndebug = false\n")
        opts = {
            # Goal figures are detection + respawn: no deliberate delay, no giving up.
            "restart_sec": "0", "restart_max_delay": "0", "flap_max": "1000",
            "journal_socket": str(root / "no-journal"), "ready_timeout": "300",
            "metrics_textfile": str(root / "hvsupervisor.prom"),
        }
        opts.update(supervisor_opts or {})
        lines = ["[DEFAULT]", "enabled_agents = " + ",".join(a.name for a in agents),
                 f"state_dir = {root}/state", f"log_dir = {self.logs}",
                 f"run_dir = {self.run_dir}", "[supervisor]"]
        lines += [f"{k} = {v}" for k, v in opts.items()]
        for a in agents:
            lines += [f"[agent:{a.name}]", "command = " + shlex.join(a.argv()),
                      "config_files = svc/s.conf", "ready = notify", "stop_timeout = 5"]
            if config_dirs:
                lines.append(f"config_dirs = {config_dirs}")
        (self.defaults / "hvsupervisor.conf").write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [PYTHON, "-m", "hvsupervisor", "--defaults-dir", str(self.defaults),
                "--override-dir", str(self.override), "run"]

    def env(self) -> dict[str, str]:
        env = super().env()
        if self.notify:
            env["NOTIFY_SOCKET"] = self.notify
        return env

    def control(self, request: dict, timeout: float = 60) -> dict:
        from hvsupervisor.control.client import call

        return call(self.run_dir / "control.sock", request, timeout)

    def wait_ready(self, timeout: float = 60) -> dict:
        def ready():
            try:
                st = self.control({"cmd": "status"}, 5)
            except Exception:
                return None
            return st if st["agents"] and all(a["ready"] for a in st["agents"]) else None

        return wait_until(ready, timeout, "all hvsupervisor agents ready", 0.05)


class Supervisord(Daemon):
    name = "supervisord"

    def __init__(self, root: Path, agents: list[AgentDef], include_glob: str | None = None):
        super().__init__(root, agents)
        self.sock = root / "supervisor.sock"
        lines = [
            "[unix_http_server]", f"file = {self.sock}", "chmod = 0700",
            "[supervisord]", "nodaemon = true", f"logfile = {root}/supervisord.log",
            f"pidfile = {root}/supervisord.pid", f"childlogdir = {self.logs}",
            "loglevel = warn",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        ]
        for a in agents:
            lines += [
                f"[program:{a.name}]", "command = " + shlex.join(a.argv()),
                # startsecs=0: RUNNING at once, so a quick kill is never a failed
                # start (BACKOFF/FATAL); it does not change when it respawns.
                "autorestart = true", "startsecs = 0", "startretries = 1000000",
                "stopwaitsecs = 5", "redirect_stderr = true",
                f"stdout_logfile = {self.agent_log(a.name)}",
                "stdout_logfile_maxbytes = 0",  # no rotation: count every byte
            ]
        if include_glob:
            lines += ["[include]", f"files = {include_glob}"]
        self.conf = root / "supervisord.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [str(BINDIR / "supervisord"), "-c", str(self.conf)]

    def rpc(self):
        from supervisor.xmlrpc import SupervisorTransport

        return xmlrpc.client.ServerProxy(
            "http://127.0.0.1", transport=SupervisorTransport(None, None, f"unix://{self.sock}"))

    def wait_running(self, timeout: float = 60) -> None:
        def running():
            try:
                info = self.rpc().supervisor.getAllProcessInfo()
            except (OSError, xmlrpc.client.Error):
                return False
            return info and all(p["statename"] == "RUNNING" for p in info)

        wait_until(running, timeout, "all supervisord programs RUNNING", 0.05)


class Circus(Daemon):
    name = "circus"

    def __init__(self, root: Path, agents: list[AgentDef], check_delay: float = 1.0):
        super().__init__(root, agents)
        self.endpoint = f"ipc://{root}/circus.ctl"
        lines = [
            "[circus]", f"check_delay = {check_delay}", f"endpoint = {self.endpoint}",
            f"pubsub_endpoint = ipc://{root}/circus.pub",
            f"stats_endpoint = ipc://{root}/circus.stats", "statsd = false",
            "loglevel = warning", f"logoutput = {root}/circusd.log",
        ]
        for a in agents:
            argv = a.argv()
            lines += [
                f"[watcher:{a.name}]", f"cmd = {argv[0]}", "args = " + shlex.join(argv[1:]),
                "numprocesses = 1", "copy_env = true", "graceful_timeout = 5",
                "stdout_stream.class = FileStream",
                f"stdout_stream.filename = {self.agent_log(a.name)}",
                "stderr_stream.class = FileStream",
                f"stderr_stream.filename = {self.agent_log(a.name)}",
            ]
        self.conf = root / "circus.ini"
        self.conf.write_text("\n".join(lines) + "\n")

    def command(self) -> list[str]:
        return [str(BINDIR / "circusd"), str(self.conf)]

    def call(self, command: dict, timeout: float = 10) -> dict:
        from circus.client import CircusClient

        client = CircusClient(endpoint=self.endpoint, timeout=timeout)
        try:
            return client.call(command)
        finally:
            client.stop()


def tool_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in ("supervisor", "circus", "pyzmq", "tornado"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def have(name: str) -> bool:
    return (BINDIR / name).exists() or shutil.which(name) is not None


class Workspace:
    """A temp dir removed at exit (unless BENCH_KEEP=1), and daemons stopped."""

    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"hvbench-{prefix}-"))
        self.daemons: list[Daemon] = []

    def __enter__(self) -> Workspace:
        return self

    def sub(self, name: str) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def track(self, d: Daemon) -> Daemon:
        self.daemons.append(d)
        return d

    def __exit__(self, *exc: object) -> None:
        for d in self.daemons:
            try:
                d.stop()
            except Exception as e:  # keep cleaning up the others
                print(f"cleanup of {d.name} failed: {e}", file=sys.stderr)
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(self.path, ignore_errors=True)


# ------------------------------------------------------------------ startup


def startup(kind: str, root: Path, agents: list[AgentDef], events: ProcEvents,
            timeout: float = 180) -> dict:
    """Start one supervisor with ``agents``; time exec -> every agent exec'd (all three)
    and exec -> READY=1 on the fake notify socket (hvsupervisor only: the others
    have no sd_notify). Then RSS, and stop it."""
    notify = None
    if kind == "hvsupervisor":
        notify = NotifyRecorder(str(root / "notify.sock"))
        d: Daemon = HvSupervisor(root, agents, notify=notify.path)
    elif kind == "supervisord":
        d = Supervisord(root, agents)
    else:
        d = Circus(root, agents)
    try:
        d.start(events)
        execs = events.wait_execs(d.pid, d.start_ns, len(agents), timeout)
        out = {"agents": len(agents),
               "all_exec_ms": round((execs[-1] - d.start_ns) / 1e6, 1),
               "first_exec_ms": round((execs[0] - d.start_ns) / 1e6, 1)}
        if notify is not None:
            ready = notify.wait_for("READY", "1", timeout)
            out["ready_ms"] = round((ready - d.start_ns) / 1e6, 1)
        elif isinstance(d, Supervisord):
            d.wait_running(timeout)
            out["all_running_seen_ms"] = round((time.monotonic_ns() - d.start_ns) / 1e6, 1)
        s = sample(d.pid)
        out["rss_mib"] = round(s.rss_kib / 1024, 1)
        out["cpu_ticks"] = s.ticks
        return out
    finally:
        d.stop()
        if notify is not None:
            notify.close()
