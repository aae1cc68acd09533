"""Private daemons for a demo node (and the e2e harness): netns, OVS, RabbitMQ.

Why a network namespace: the userspace OVS datapath creates host-global tap
devices (``br-int``, ``ovs-netdev``), RabbitMQ needs epmd on 4369, and the
agents bind well-known ports (6633, 8775). Inside a fresh namespace none of
these collide with the host or a second demo, and whatever is left behind is
found by ``ip netns pids`` (doc/upstream-behaviour.md section 11: userspace datapath only,
RabbitMQ with ``ERL_EPMD_ADDRESS=127.0.0.1`` on loopback).

Every daemon runs in its own session, so a Ctrl-C on the terminal reaches
only the process that started it, which stops them in order, by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hvsupervisor.process.children import child_env
from hvtestcloud.waiting import wait_until

RABBIT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def scrubbed_env(extra: Mapping[str, str] = (), bindir: Path | None = None) -> dict[str, str]:
    """Our environment scrubbed as the supervisor scrubs an agent's, plus ``extra``.

    ``bindir`` goes first on PATH, so a venv's daemons are found before the host's.
    """
    path = f"{bindir}:{SYSTEM_PATH}" if bindir else SYSTEM_PATH
    return child_env(os.environ, {"PATH": path, **dict(extra)})


def killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Proc:
    """A daemon we started (session leader), stopped by pid and its process group."""

    name: str
    popen: subprocess.Popen
    log: Path | None
    # What "stop" sends to the group first. RabbitMQ gets SIGKILL: on SIGTERM its
    # start script runs `rabbitmqctl stop` (a second VM, seconds), or hangs while
    # the node boots; and SIGTERM to the group kills erl_child_setup under beam,
    # which then writes erl_crash.dump. A throwaway broker loses nothing.
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self, sig: int | None = None) -> None:
        """Ask it to stop: ``sig`` (default ``stop_signal``) to its process group."""
        if self.popen.poll() is None:
            killpg(self.pid, self.stop_signal if sig is None else sig)

    def stop(self, timeout: float = 10.0, sig: int | None = None) -> int | None:
        """``terminate(sig)``, SIGKILL to the group after ``timeout``; returns rc."""
        if self.popen.poll() is None:
            self.terminate(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Workers left in the group (cotyledon, gunicorn, erl_child_setup) go too.
        killpg(self.pid, signal.SIGKILL)
        return self.popen.returncode


@dataclass
class Netns:
    """A private network namespace with loopback up."""

    name: str

    @classmethod
    def create(cls, prefix: str = "hvsup") -> Netns:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        try:
            subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                           check=True)
        except BaseException:
            subprocess.run(["ip", "netns", "delete", name], check=False)
            raise
        return cls(name)

    def prefix(self) -> list[str]:
        """``nsenter --net``, not ``ip netns exec``: the latter runs the command in a
        private mount namespace, so the ``qdhcp-``/``qrouter-`` namespaces neutron's
        agents add under /run/netns would be invisible (and left behind) on the host
        (doc/upstream-behaviour.md, "Booting a VM")."""
        return ["nsenter", f"--net=/run/netns/{self.name}", "--"]

    def run(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run([*self.prefix(), *argv], check=False, **kw)

    def spawn(self, name: str, argv: Sequence[str], log: Path | None,
              env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Proc:
        """Start ``argv`` inside, in a new session; output to ``log`` (None: inherit ours)."""
        out: IO[bytes] | None = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = open(log, "ab")  # noqa: SIM115 (closed below, the child keeps its copy)
        try:
            popen = subprocess.Popen(
                [*self.prefix(), *argv], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT if out else None,
                env=dict(env if env is not None else scrubbed_env()), cwd=cwd,
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        return Proc(name, popen, log)

    def tcp_open(self, port: int, host: str = "127.0.0.1") -> bool:
        """True if something accepts on ``host:port`` inside the namespace."""
        r = self.run(["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], timeout=10)
        return r.returncode == 0

    def pids(self) -> list[int]:
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True,
                           check=False)
        return [int(p) for p in r.stdout.split()]

    def exists(self) -> bool:
        return Path("/run/netns", self.name).exists()

    def destroy(self) -> list[int]:
        """Kill whatever still runs inside (all ours), then delete the namespace."""
        left = self.pids()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "delete", self.name], check=False)
        return left


@dataclass
class Ovs:
    """A private ovsdb-server + ovs-vswitchd: sockets, db and logs under ``run_dir``."""

    run_dir: Path
    procs: list[Proc] = field(default_factory=list)

    @property
    def sock(self) -> Path:
        return self.run_dir / "db.sock"

    @property
    def connection(self) -> str:
        """What the agents' ``ovsdb_connection`` options get."""
        return f"unix:{self.sock}"

    def env(self) -> dict[str, str]:
        """OVS_RUNDIR & co: ovs-vsctl/ovs-ofctl find this vswitchd's sockets, not the host's."""
        d = str(self.run_dir)
        return {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}

    def vsctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ovs-vsctl", f"--db={self.connection}", "--timeout=10", *args],
                              capture_output=True, text=True, check=False)

    def bridges(self) -> list[str]:
        r = self.vsctl("list-br")
        return r.stdout.split() if r.returncode == 0 else []

    def delete_bridges(self) -> list[str]:
        """Delete every bridge in this (private) db: their netdev taps go with them."""
        gone = self.bridges()
        for br in gone:
            self.vsctl("--if-exists", "del-br", br)
        return gone

    def stop(self, timeout: float = 10.0) -> None:
        """ovs-vswitchd first (it holds the db connection), then ovsdb-server."""
        for proc in reversed(self.procs):
            proc.stop(timeout)
        self.procs.clear()


def start_ovs(ns: Netns, run_dir: Path, env: Mapping[str, str] | None = None,
              timeout: float = 20.0) -> Ovs:
    """A fresh conf.db, ovsdb-server and ovs-vswitchd inside ``ns``; returns when both listen."""
    ovs = Ovs(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    db = run_dir / "conf.db"
    db.unlink(missing_ok=True)
    subprocess.run(["ovsdb-tool", "create", str(db), str(OVS_SCHEMA)], check=True)
    env = dict(env if env is not None else scrubbed_env()) | ovs.env()
    try:
        ovs.procs.append(ns.spawn("ovsdb-server", [
            "ovsdb-server", str(db), f"--remote=punix:{ovs.sock}",
            f"--unixctl={run_dir}/ovsdb-server.ctl", f"--pidfile={run_dir}/ovsdb-server.pid",
            f"--log-file={run_dir}/ovsdb-server.log"], run_dir / "ovsdb-server.out", env))
        wait_until(lambda: ovs.sock.exists() or not ovs.procs[0].alive(), timeout,
                   "ovsdb-server socket")
        r = ovs.vsctl("--no-wait", "init")
        if r.returncode != 0:
            raise RuntimeError(f"ovs-vsctl init failed: {r.stderr.strip()} "
                               f"(see {run_dir}/ovsdb-server.log)")
        ovs.procs.append(ns.spawn("ovs-vswitchd", [
            "ovs-vswitchd", ovs.connection, f"--unixctl={run_dir}/ovs-vswitchd.ctl",
            f"--pidfile={run_dir}/ovs-vswitchd.pid", f"--log-file={run_dir}/ovs-vswitchd.log"],
            run_dir / "ovs-vswitchd.out", env))
        wait_until(lambda: (run_dir / "ovs-vswitchd.ctl").exists()
                   or not ovs.procs[1].alive(), timeout, "ovs-vswitchd control socket")
        for proc in ovs.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited rc={proc.popen.returncode}, "
                                   f"see {run_dir}/{proc.name}.log")
    except BaseException:
        ovs.stop()
        raise
    return ovs


def rabbit_env(base: Path, port: int, dist_port: int = 25672) -> dict[str, str]:
    """RabbitMQ's environment: every file under ``base``, loopback only, own epmd."""
    return {
        "HOME": str(base), "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODENAME": "rabbit@localhost", "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port), "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
        "ERL_CRASH_DUMP": str(base / "erl_crash.dump"),  # not into the caller's cwd
    }


def start_rabbit(ns: Netns, base: Path, port: int = 5672,
                 env: Mapping[str, str] | None = None) -> list[Proc]:
    """epmd + RabbitMQ inside ``ns``; returns at once (it boots in a few seconds).

    Wait for it with ``ns.tcp_open(port)``. Its own epmd on loopback inside the
    namespace, so stopping it is ours and the host's 4369 is never touched.
    """
    (base / "mnesia").mkdir(parents=True, exist_ok=True)
    (base / "log").mkdir(parents=True, exist_ok=True)
    (base / "enabled_plugins").write_text("[].\n")
    env = dict(env if env is not None else scrubbed_env()) | rabbit_env(base, port)
    procs = [ns.spawn("epmd", ["epmd", "-address", "127.0.0.1"], base / "epmd.out", env,
                      cwd=base)]
    rabbit = ns.spawn("rabbitmq", [str(RABBIT)], base / "rabbit.out", env, cwd=base)
    rabbit.stop_signal = signal.SIGKILL
    procs.append(rabbit)
    return procs
