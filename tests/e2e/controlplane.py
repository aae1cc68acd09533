"""A minimal OpenStack control plane inside a private network namespace.

Why a netns: the userspace OVS datapath creates host-global tap devices
(``br-int``, ``ovs-netdev``), RabbitMQ needs epmd on 4369, and the agents bind
well-known ports (6633, 8775). Inside a fresh namespace none of these can
collide with another helper or the host, and everything left behind is found
by ``ip netns pids``. Tests talk to the services from the root namespace
through files (sqlite, unix sockets) or ``ip netns exec NS curl``.

Recipe (shared/research/upstream_agents.md, addendum): RabbitMQ with its own
epmd, nova DBs on sqlite, Placement with noauth2, nova-conductor,
neutron-rpc-server + the neutron API app (noauth, ML2/openvswitch) on a
schema built from neutron's models then ``neutron-db-manage stamp heads``.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hvsupervisor.process import child_env
from tests import util

VENV = Path(os.environ.get("HVSUP_UPSTREAM_VENV", "/work/venv-os"))
BIN = VENV / "bin"
PY = BIN / "python"
RABBIT = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
NODE_HOST = "e2e-node"


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """tests.util.wait_until, polling gently: many probes here spawn processes."""
    return util.wait_until(pred, timeout, what, interval)


def scrubbed_env(extra: Mapping[str, str] = ()) -> dict[str, str]:
    """Our environment scrubbed as the supervisor scrubs a child's, with this venv first on PATH."""
    path = f"{BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return child_env(os.environ, {"PATH": path, **dict(extra)})


@dataclass
class Proc:
    """A daemon we started, with its output file; stopped by pid (and its group)."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; returns rc."""
        if self.popen.poll() is None:
            _killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        # Workers left in the group (cotyledon, gunicorn) go too.
        _killpg(self.pid, signal.SIGKILL)
        return self.popen.returncode


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Netns:
    """A private network namespace with loopback up."""

    name: str

    @classmethod
    def create(cls, prefix: str = "hvsup-e2e") -> Netns:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True)
        return cls(name)

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def run(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run([*self.prefix(), *argv], check=False, **kw)

    def spawn(self, name: str, argv: Sequence[str], log: Path,
              env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Proc:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                [*self.prefix(), *argv], stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=dict(env or scrubbed_env()), cwd=cwd,
                start_new_session=True,
            )
        return Proc(name, popen, log)

    def tcp_open(self, port: int, host: str = "127.0.0.1") -> bool:
        r = self.run(["bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"], timeout=10)
        return r.returncode == 0

    def http_json(self, url: str, headers: Mapping[str, str] = ()) -> object | None:
        argv = ["curl", "-sf", "--max-time", "10", url]
        for k, v in dict(headers).items():
            argv += ["-H", f"{k}: {v}"]
        r = self.run(argv, timeout=20)
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout else None

    def pids(self) -> list[int]:
        r = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True,
                           check=False)
        return [int(p) for p in r.stdout.split()]

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


def write_ini(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    """Write an oslo-style ini (DEFAULT first) from a dict of sections."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in options.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@dataclass
class ControlPlane:
    """Where the control plane lives and how the node reaches it."""

    root: Path
    ns: Netns
    procs: list[Proc] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    rabbit_port: int = 5672
    placement_port: int = 8778
    neutron_port: int = 9696

    @property
    def ovs_run(self) -> Path:
        return self.root / "ovs"

    @property
    def ovsdb_sock(self) -> Path:
        return self.ovs_run / "db.sock"

    @property
    def transport_url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.rabbit_port}/"

    @property
    def nova_db(self) -> Path:
        return self.root / "db" / "nova.sqlite"

    @property
    def nova_api_db(self) -> Path:
        return self.root / "db" / "nova_api.sqlite"

    @property
    def neutron_db(self) -> Path:
        return self.root / "db" / "neutron.sqlite"

    @property
    def logs(self) -> Path:
        return self.root / "cp-logs"

    # --- queries the tests use -------------------------------------------------
    def ovs_env(self) -> dict[str, str]:
        return {"OVS_RUNDIR": str(self.ovs_run), "OVS_DBDIR": str(self.ovs_run),
                "OVS_LOGDIR": str(self.ovs_run)}

    def vsctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ovs-vsctl", f"--db=unix:{self.ovsdb_sock}", "--timeout=10",
                               *args], capture_output=True, text=True, check=False)

    def ofctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ovs-ofctl", *args], capture_output=True, text=True,
                              check=False, env=scrubbed_env(self.ovs_env()), timeout=20)

    def compute_services(self) -> list[dict]:
        """nova's services table: the 'nova-manage service list' of nova 34 is gone."""
        with sqlite3.connect(self.nova_db, timeout=10) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute("select host, binary, disabled, updated_at, created_at "
                              "from services where deleted = 0").fetchall()
        return [dict(r) for r in rows]

    def resource_providers(self) -> list[dict]:
        body = self.ns.http_json(
            f"http://127.0.0.1:{self.placement_port}/resource_providers",
            {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement latest"})
        return body["resource_providers"] if isinstance(body, dict) else []

    def neutron_agents(self) -> list[dict]:
        body = self.ns.http_json(f"http://127.0.0.1:{self.neutron_port}/v2.0/agents",
                                 {"X-Project-Id": "admin", "X-Roles": "admin"})
        return body["agents"] if isinstance(body, dict) else []

    def check_alive(self) -> bool:
        """True, or RuntimeError naming the first daemon that has exited."""
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited rc={proc.popen.returncode}, "
                                   f"see {proc.log}")
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every daemon at once (the tests are over: no order matters), then reap."""
        for proc in self.procs:
            if proc.alive():
                _killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.stop(timeout=max(0.1, deadline - time.monotonic()))
        self.procs.clear()


def _run(argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None,
         timeout: float = 180) -> None:
    with open(log, "ab") as out:
        r = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT,
                           env=dict(env or scrubbed_env()), timeout=timeout, check=False)
    if r.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(map(str, argv))} failed rc={r.returncode}:\n{tail}")


def _start_ovs(cp: ControlPlane) -> None:
    run = cp.ovs_run
    run.mkdir(parents=True, exist_ok=True)
    db = run / "conf.db"
    subprocess.run(["ovsdb-tool", "create", str(db),
                    "/usr/share/openvswitch/vswitch.ovsschema"], check=True)
    env = scrubbed_env(cp.ovs_env())
    cp.procs.append(cp.ns.spawn("ovsdb-server", [
        "ovsdb-server", str(db), f"--remote=punix:{cp.ovsdb_sock}",
        f"--unixctl={run}/ovsdb-server.ctl", f"--pidfile={run}/ovsdb-server.pid",
        f"--log-file={run}/ovsdb-server.log"], run / "ovsdb-server.out", env))
    wait_until(cp.ovsdb_sock.exists, 20, "ovsdb-server socket")
    r = cp.vsctl("--no-wait", "init")
    assert r.returncode == 0, r.stderr
    cp.procs.append(cp.ns.spawn("ovs-vswitchd", [
        "ovs-vswitchd", f"unix:{cp.ovsdb_sock}", f"--unixctl={run}/ovs-vswitchd.ctl",
        f"--pidfile={run}/ovs-vswitchd.pid", f"--log-file={run}/ovs-vswitchd.log"],
        run / "ovs-vswitchd.out", env))
    wait_until(lambda: (run / "ovs-vswitchd.ctl").exists(), 20, "ovs-vswitchd")


def _start_rabbit(cp: ControlPlane) -> None:
    base = cp.root / "rabbit"
    (base / "mnesia").mkdir(parents=True, exist_ok=True)
    (base / "log").mkdir(parents=True, exist_ok=True)
    plugins = base / "enabled_plugins"
    plugins.write_text("[].\n")
    # Own epmd inside the namespace, on loopback only, so stopping it is ours.
    env = scrubbed_env({
        "HOME": str(base), "ERL_EPMD_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODENAME": "rabbit@localhost", "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(cp.rabbit_port), "RABBITMQ_DIST_PORT": "25672",
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
        "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
    })
    cp.procs.append(cp.ns.spawn("epmd", ["epmd", "-address", "127.0.0.1"],
                                base / "epmd.out", env))
    cp.procs.append(cp.ns.spawn("rabbitmq", [str(RABBIT)], base / "rabbit.out", env))


def nova_ctl_conf(cp: ControlPlane) -> Path:
    """nova.conf for the control plane (conductor, nova-manage)."""
    return write_ini(cp.root / "etc" / "nova-ctl.conf", {
        "DEFAULT": {"transport_url": cp.transport_url, "state_path": cp.root / "nova-ctl",
                    "use_stderr": "false"},
        "database": {"connection": f"sqlite:///{cp.nova_db}"},
        "api_database": {"connection": f"sqlite:///{cp.nova_api_db}"},
        "conductor": {"workers": 1},
        "oslo_concurrency": {"lock_path": cp.root / "nova-ctl" / "lock"},
        "placement": placement_client(cp),
    })


def placement_client(cp: ControlPlane) -> dict[str, object]:
    return {"auth_type": "admin_token", "token": "admin",
            "endpoint": f"http://127.0.0.1:{cp.placement_port}/"}


def _neutron_server_conf(cp: ControlPlane) -> Path:
    return write_ini(cp.root / "etc" / "neutron-server.conf", {
        "DEFAULT": {"transport_url": cp.transport_url, "core_plugin": "ml2",
                    "service_plugins": "router", "auth_strategy": "noauth",
                    "state_path": cp.root / "neutron-server", "use_stderr": "false",
                    "api_paste_config": VENV / "etc" / "neutron" / "api-paste.ini",
                    "rpc_workers": 1, "rpc_state_report_workers": 0, "api_workers": 1,
                    "notify_nova_on_port_status_changes": "false",
                    "notify_nova_on_port_data_changes": "false"},
        "database": {"connection": f"sqlite:///{cp.neutron_db}"},
        "ml2": {"type_drivers": "flat,vlan", "tenant_network_types": "",
                "mechanism_drivers": "openvswitch", "extension_drivers": "port_security"},
        "oslo_concurrency": {"lock_path": cp.root / "neutron-server" / "lock"},
    })


def _placement_conf(cp: ControlPlane) -> Path:
    return write_ini(cp.root / "etc" / "placement" / "placement.conf", {
        "DEFAULT": {"use_stderr": "false"},
        "api": {"auth_strategy": "noauth2"},
        "placement_database": {"connection": f"sqlite:///{cp.root / 'db' / 'placement.sqlite'}"},
    })


_NEUTRON_SCHEMA = (
    "import sys\n"
    "from oslo_db.sqlalchemy import engines\n"
    "from neutron.db.migration.models import head\n"
    "engine = engines.create_engine(sys.argv[1])\n"
    "head.get_metadata().create_all(engine)\n"
)


def _prepare_databases(cp: ControlPlane) -> None:
    """nova, placement and neutron schemas on sqlite (no bus needed)."""
    (cp.root / "db").mkdir(parents=True, exist_ok=True)
    log = cp.logs / "db.log"
    nova_conf = nova_ctl_conf(cp)
    placement_conf = _placement_conf(cp)
    neutron_conf = _neutron_server_conf(cp)
    nm = [str(BIN / "nova-manage"), "--config-file", str(nova_conf)]
    jobs = [
        [*nm, "api_db", "sync"],
        [str(BIN / "placement-manage"), "--config-file", str(placement_conf), "db", "sync"],
        [str(PY), "-c", _NEUTRON_SCHEMA, f"sqlite:///{cp.neutron_db}"],
    ]
    running = [subprocess.Popen(j, stdout=open(log, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                env=scrubbed_env()) for j in jobs]
    for j, p in zip(jobs, running, strict=True):
        if p.wait(300) != 0:
            raise RuntimeError(f"{j} failed, see {log}")
    _run([*nm, "cell_v2", "map_cell0", "--database_connection",
          f"sqlite:///{cp.root / 'db' / 'nova_cell0.sqlite'}"], log)
    _run([*nm, "db", "sync"], log)
    _run([*nm, "cell_v2", "create_cell", "--name", "cell1"], log)
    _run([str(BIN / "neutron-db-manage"), "--config-file", str(neutron_conf),
          "stamp", "heads"], log)


def start_control_plane(root: Path) -> ControlPlane:
    """Bring everything up; the caller must ``stop()`` and ``ns.destroy()``."""
    t0 = time.monotonic()
    cp = ControlPlane(root=root, ns=Netns.create())
    cp.logs.mkdir(parents=True, exist_ok=True)
    try:
        _start_ovs(cp)
        _start_rabbit(cp)
        _prepare_databases(cp)  # meanwhile RabbitMQ boots
        cp.timings["databases"] = time.monotonic() - t0
        wsgi = [str(PY), "-m", "hvsupervisor.agents.wsgi", "--threads", "4"]
        cp.procs.append(cp.ns.spawn("placement", [
            *wsgi, "--app", "placement.wsgi.api:application", "--name", "placement-api",
            "--bind", f"127.0.0.1:{cp.placement_port}"], cp.logs / "placement.log",
            scrubbed_env({"OS_PLACEMENT_CONFIG_DIR": str(cp.root / "etc" / "placement")})))
        neutron_conf = cp.root / "etc" / "neutron-server.conf"
        nargs = ["--config-file", str(neutron_conf), "--log-file"]
        cp.procs.append(cp.ns.spawn("neutron-api", [
            *wsgi, "--app", "neutron.wsgi.api:application", "--name", "neutron-api",
            "--bind", f"127.0.0.1:{cp.neutron_port}", *nargs,
            str(cp.logs / "neutron-api.oslo.log")], cp.logs / "neutron-api.log"))
        wait_until(lambda: cp.check_alive() and cp.ns.tcp_open(cp.rabbit_port), 90,
                   "RabbitMQ port")
        cp.timings["rabbit"] = time.monotonic() - t0
        cp.procs.append(cp.ns.spawn("neutron-rpc-server", [
            str(BIN / "neutron-rpc-server"), *nargs, str(cp.logs / "neutron-rpc.oslo.log")],
            cp.logs / "neutron-rpc.log"))
        cp.procs.append(cp.ns.spawn("nova-conductor", [
            str(BIN / "nova-conductor"), "--config-file", str(nova_ctl_conf(cp)),
            "--log-file", str(cp.logs / "nova-conductor.oslo.log")],
            cp.logs / "nova-conductor.log"))
        wait_until(lambda: cp.check_alive() and cp.ns.tcp_open(cp.placement_port), 60,
                   "Placement API")
        wait_until(lambda: cp.check_alive() and cp.ns.http_json(
            f"http://127.0.0.1:{cp.neutron_port}/v2.0/agents",
            {"X-Project-Id": "admin", "X-Roles": "admin"}) is not None, 90, "neutron API")
        cp.check_alive()
        cp.timings["up"] = time.monotonic() - t0
        return cp
    except BaseException:
        cp.stop()
        cp.ns.destroy()
        raise


def node_snippets(cp: ControlPlane, override: Path) -> None:
    """The node's site snippets (conf.d in the override layer), pointing at ``cp``.

    The shipped defaults stay as they are; only site values and the e2e
    deviations live here: the fake driver (PredictableNodeUUIDDriver, so a
    restart keeps the node identity), userspace datapath, private ovsdb, a
    noop firewall (no kernel conntrack here).
    """
    write_ini(override / "nova" / "nova.conf.d" / "50-e2e.conf", {
        "DEFAULT": {"host": NODE_HOST, "transport_url": cp.transport_url,
                    "compute_driver": "fake.PredictableNodeUUIDDriver"},
        "database": {"connection": f"sqlite:///{cp.nova_db}"},
        "api_database": {"connection": f"sqlite:///{cp.nova_api_db}"},
        "placement": placement_client(cp),
        "os_vif_ovs": {"ovsdb_connection": f"unix:{cp.ovsdb_sock}"},
        "libvirt": {"virt_type": "qemu"},
    })
    write_ini(override / "neutron" / "neutron.conf.d" / "50-e2e.conf", {
        "DEFAULT": {"host": NODE_HOST, "transport_url": cp.transport_url},
        "ovs": {"ovsdb_connection": f"unix:{cp.ovsdb_sock}", "datapath_type": "netdev"},
        "securitygroup": {"firewall_driver": "noop"},
    })


def write_compute_id(state_dir: Path) -> str:
    """A fixed node identity: PredictableNodeUUIDDriver + this file survive restarts."""
    node_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, NODE_HOST))
    nova_state = state_dir / "nova"
    nova_state.mkdir(parents=True, exist_ok=True)
    (nova_state / "compute_id").write_text(node_uuid)
    return node_uuid


def catalog_snippet(example: Path, target: Path, extra_env: Mapping[str, str]) -> Path:
    """A copy of a catalog with ``extra_env`` (e.g. OVS_RUNDIR) added to each agent."""
    out: list[str] = []
    add = ",".join(f"{k}:{v}" for k, v in extra_env.items())
    for line in example.read_text().splitlines():
        if line.startswith("environment = ") and add:
            line = f"{line},{add}"
        out.append(line)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(out) + "\n")
    return target


if __name__ == "__main__":  # manual use: bring it up, print where, wait for ^C
    plane = start_control_plane(Path(sys.argv[1]))
    print(plane.ns.name, plane.timings)
    try:
        signal.pause()
    finally:
        plane.stop()
        plane.ns.destroy()
