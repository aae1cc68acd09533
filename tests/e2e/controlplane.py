"""A minimal OpenStack control plane inside a private network namespace.

Why a netns: the userspace OVS datapath creates host-global tap devices
(``br-int``, ``ovs-netdev``), RabbitMQ needs epmd on 4369, and the agents bind
well-known ports (6633, 8775). Inside a fresh namespace none of these can
collide with another helper or the host, and everything left behind is found
by ``ip netns pids``. Tests talk to the services from the root namespace
through files (sqlite, unix sockets) or ``ip netns exec NS curl``.

Recipe (doc/upstream-behaviour.md section 8): RabbitMQ with its own
epmd, nova DBs on sqlite, Placement with noauth2, nova-conductor,
neutron-rpc-server + the neutron API app (noauth, ML2/openvswitch) on a
schema built from neutron's models then ``neutron-db-manage stamp heads``.
"""

from __future__ import annotations

import datetime
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hvsupervisor.demo import services
from hvsupervisor.demo.profile import write_compute_id as _write_compute_id
from hvsupervisor.demo.profile import write_ini
from hvsupervisor.demo.services import Netns, Proc
from tests import util

# The interpreter running the tests is the one with nova, neutron and placement
# (tox's e2e env): its prefix holds their console scripts and shipped etc/.
# No path of one machine: whatever venv runs pytest is the upstream venv.
VENV = Path(sys.prefix)
BIN = Path(sys.executable).parent
PY = Path(sys.executable)
NODE_HOST = "e2e-node"


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """tests.util.wait_until, polling gently: many probes here spawn processes."""
    return util.wait_until(pred, timeout, what, interval)


def utc(ts: str) -> float:
    """A naive UTC timestamp from nova's DB as epoch seconds."""
    return datetime.datetime.fromisoformat(ts).replace(tzinfo=datetime.UTC).timestamp()


def scrubbed_env(extra: Mapping[str, str] = ()) -> dict[str, str]:
    """Our environment without oslo overrides or systemd variables, the venv first on PATH."""
    return services.scrubbed_env(extra, bindir=BIN)


def http_json(ns: Netns, url: str, headers: Mapping[str, str] = ()) -> object | None:
    """GET ``url`` inside the namespace with curl; the parsed JSON body or None."""
    argv = ["curl", "-sf", "--max-time", "10", url]
    for k, v in dict(headers).items():
        argv += ["-H", f"{k}: {v}"]
    r = ns.run(argv, timeout=20)
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout else None


@dataclass
class ControlPlane:
    """Where the control plane lives and how the node reaches it."""

    root: Path
    ns: Netns
    procs: list[Proc] = field(default_factory=list)
    ovs: services.Ovs | None = None
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
        return services.Ovs(self.ovs_run).env()

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

    def compute_service_up(self, host: str, since: float) -> dict | None:
        """nova-compute of ``host`` as nova judges it "up": a heartbeat at most 60 s
        old, and newer than ``since`` (after a quick restart an old one still counts)."""
        for svc in self.compute_services():
            if svc["binary"] == "nova-compute" and svc["host"] == host:
                beat = svc["updated_at"] or svc["created_at"]
                if beat and utc(beat) >= since - 1 and time.time() - utc(beat) <= 60:
                    return svc
        return None

    def resource_providers(self) -> list[dict]:
        body = http_json(
            self.ns, f"http://127.0.0.1:{self.placement_port}/resource_providers",
            {"X-Auth-Token": "admin", "OpenStack-API-Version": "placement latest"})
        return body["resource_providers"] if isinstance(body, dict) else []

    def neutron_agents(self) -> list[dict]:
        body = http_json(self.ns, f"http://127.0.0.1:{self.neutron_port}/v2.0/agents",
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
            proc.terminate()
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
    cp.ovs = services.start_ovs(cp.ns, cp.ovs_run, scrubbed_env())
    cp.procs += cp.ovs.procs


def _start_rabbit(cp: ControlPlane) -> None:
    cp.procs += services.start_rabbit(cp.ns, cp.root / "rabbit", cp.rabbit_port, scrubbed_env())


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
    cp = ControlPlane(root=root, ns=Netns.create("hvsup-e2e"))
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
        wait_until(lambda: cp.check_alive() and http_json(
            cp.ns, f"http://127.0.0.1:{cp.neutron_port}/v2.0/agents",
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
        "placement": placement_client(cp),
        "os_vif_ovs": {"ovsdb_connection": f"unix:{cp.ovsdb_sock}"},
        "libvirt": {"virt_type": "qemu"},
    })
    # The shipped layout: database credentials only where nova-api-metadata reads them.
    write_ini(override / "nova" / "nova-api-metadata.conf.d" / "50-e2e.conf", {
        "database": {"connection": f"sqlite:///{cp.nova_db}"},
        "api_database": {"connection": f"sqlite:///{cp.nova_api_db}"},
    })
    write_ini(override / "neutron" / "neutron.conf.d" / "50-e2e.conf", {
        "DEFAULT": {"host": NODE_HOST, "transport_url": cp.transport_url},
        "ovs": {"ovsdb_connection": f"unix:{cp.ovsdb_sock}", "datapath_type": "netdev"},
        "securitygroup": {"firewall_driver": "noop"},
    })


def write_compute_id(state_dir: Path) -> str:
    """A fixed node identity: PredictableNodeUUIDDriver + this file survive restarts."""
    return _write_compute_id(state_dir, NODE_HOST)


if __name__ == "__main__":  # manual use: bring it up, print where, wait for ^C
    plane = start_control_plane(Path(sys.argv[1]))
    print(plane.ns.name, plane.timings)
    try:
        signal.pause()
    finally:
        plane.stop()
        plane.ns.destroy()
