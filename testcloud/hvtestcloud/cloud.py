"""A minimal OpenStack cloud for a node to join: shared by the demo and the e2e tier.

One launcher, so that ``hvsupervisor demo`` and the tests start the same
control plane: RabbitMQ (own epmd), nova's databases, Placement, nova-conductor,
neutron (RPC server + API app, ML2/openvswitch, ``router`` service plugin) and,
with ``full=True``, what a boot needs on top: nova-api, nova-scheduler and
glance-api. All on 127.0.0.1 inside one network namespace, sqlite, no keystone.

Facts it relies on (doc/upstream-behaviour.md, "Booting a VM"):

- no keystone: every client sends token ``admin``; service to service uses
  keystoneauth's ``admin_token`` plugin with a fixed endpoint; nova-api and
  glance-api get their shipped paste files with ``authtoken`` replaced by
  hvtestcloud/fake_keystone.py, which sets the headers keystone would have;
- nova 34 has no ``noauth2`` pipeline, glance 33 refuses role-less contexts;
- neutron's schema is built from its models then stamped (no migrations on
  sqlite), and it notifies nova (``network-vif-plugged``) through nova-api,
  so ``vif_plugging_is_fatal`` stays true;
- the scheduler maps new compute hosts itself every few seconds
  (``discover_hosts_in_cells_interval``).

The daemons run from ``bindir`` (a venv with nova, neutron, placement and, for
``full``, glance); their shipped ``etc`` files are read from ``prefix/etc``.

Why over 400 lines: it is mostly the services' config text (nova, neutron,
placement, glance), which reads best next to the launch order it serves.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hvtestcloud import services
from hvtestcloud.ini import write_ini
from hvtestcloud.services import Netns, Proc
from hvtestcloud.waiting import wait_until as _wait_until

TOKEN = "admin"
PHYSNET = "physnet1"
PHYS_BRIDGE = "br-phys"
# The external network a router's gateway and floating IPs live on: a second
# flat physnet on its own bridge. The bridge's own (internal) port, in the
# node's netns, plays "outside" with EXT_GATEWAY (tests/e2e/test_boot.py).
EXT_PHYSNET = "extnet"
EXT_BRIDGE = "br-ex"
EXT_CIDR = "172.24.4.0/24"
EXT_GATEWAY = "172.24.4.1"
METADATA_SECRET = "hvsup-demo-metadata"  # loopback-only throwaway cloud
ADMIN_HEADERS = {"X-Auth-Token": TOKEN, "X-Project-Id": "admin", "X-Roles": "admin"}
# Each neutron agent of a node and the agent_type neutron's GET /v2.0/agents lists it by.
NEUTRON_TYPES = {
    "neutron-openvswitch-agent": "Open vSwitch agent",
    "neutron-dhcp-agent": "DHCP agent",
    "neutron-l3-agent": "L3 agent",
    "neutron-metadata-agent": "Metadata agent",
}


def sqlite_url(path: Path) -> str:
    """A sqlite URL that waits up to 30 s for a lock (pysqlite's ``timeout``).

    With several services writing one file on a loaded 2-core machine, the
    default 5 s gives ``database is locked`` errors (HTTP 500 from neutron);
    the files are also switched to WAL (``_wal``) so readers never wait. The
    timeout only applies to a transaction that asks for the write lock at its
    start: the daemons run under hvtestcloud/sqlite_immediate.py (``_daemon_argv``).
    """
    return f"sqlite:///{path}?timeout=30"


def _wal(db_dir: Path) -> None:
    """journal_mode=WAL on every database file (persistent in the file)."""
    for db in db_dir.glob("*.sqlite"):
        with sqlite3.connect(db, timeout=30) as conn:
            conn.execute("pragma journal_mode=wal")


def wait_until(pred: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
    """hvtestcloud.waiting.wait_until, polling gently: many probes here spawn processes."""
    return _wait_until(pred, timeout, what, interval)


def utc(ts: str) -> float:
    """A naive UTC timestamp from nova's DB as epoch seconds."""
    return datetime.datetime.fromisoformat(ts).replace(tzinfo=datetime.UTC).timestamp()


@dataclass
class ControlPlane:
    """Where the control plane lives, how the node reaches it, what it runs."""

    root: Path
    ns: Netns
    bindir: Path
    prefix: Path
    full: bool = False
    procs: list[Proc] = field(default_factory=list)
    ovs: services.Ovs | None = None
    timings: dict[str, float] = field(default_factory=dict)
    rabbit_port: int = 5672
    placement_port: int = 8778
    neutron_port: int = 9696
    nova_api_port: int = 8774
    glance_port: int = 9292

    # --- where things are ------------------------------------------------------
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

    def url(self, port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{port}{path}"

    def env(self, extra: Mapping[str, str] = ()) -> dict[str, str]:
        """Scrubbed environment with this venv first on PATH."""
        return services.scrubbed_env(extra, bindir=self.bindir)

    # --- queries ---------------------------------------------------------------
    def ovs_env(self) -> dict[str, str]:
        return services.Ovs(self.ovs_run).env()

    def vsctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ovs-vsctl", f"--db=unix:{self.ovsdb_sock}", "--timeout=10",
                               *args], capture_output=True, text=True, check=False)

    def ofctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ovs-ofctl", *args], capture_output=True, text=True,
                              check=False, env=self.env(self.ovs_env()), timeout=20)

    def api(self, method: str, url: str, body: object | None = None, timeout: float = 30,
            headers: Mapping[str, str] = ()) -> tuple[int, object | None]:
        """One HTTP call inside the namespace (curl): (status, parsed JSON body or None)."""
        argv = ["curl", "-s", "--max-time", str(int(timeout)), "-X", method,
                "-w", "\n%{http_code}", url]
        for k, v in {**ADMIN_HEADERS, **dict(headers)}.items():
            argv += ["-H", f"{k}: {v}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        r = self.ns.run(argv, timeout=timeout + 10)
        text, _, code = r.stdout.rpartition("\n")
        try:
            status = int(code)
        except ValueError:
            return 0, None
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            return status, None

    def get(self, port: int, path: str) -> object | None:
        """GET, the JSON body if 2xx."""
        status, body = self.api("GET", self.url(port, path))
        return body if 200 <= status < 300 else None

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

    def host_mapped(self, host: str) -> bool:
        """The scheduler has mapped ``host`` to a cell (it can be scheduled to)."""
        with sqlite3.connect(self.nova_api_db, timeout=10) as db:
            return db.execute("select 1 from host_mappings where host = ?",
                              (host,)).fetchone() is not None

    def resource_providers(self) -> list[dict]:
        body = self.get(self.placement_port, "/resource_providers")
        return body["resource_providers"] if isinstance(body, dict) else []

    def neutron_agents(self) -> list[dict]:
        body = self.get(self.neutron_port, "/v2.0/agents")
        return body["agents"] if isinstance(body, dict) else []

    def wait_boot_apis(self, timeout: float = 90) -> None:
        """Wait until nova's API and glance answer (a no-op without ``full``, or once
        they have): what a boot needs beyond a joined node."""
        if not self.full or "boot_apis" in self.timings:
            return
        t0 = time.monotonic()
        wait_until(lambda: self.check_alive() and self.get(self.nova_api_port, "/v2.1/flavors")
                   is not None, timeout, "nova API")
        wait_until(lambda: self.check_alive() and self.get(self.glance_port, "/v2/images")
                   is not None, timeout, "glance API")
        wait_rpc_servers(self, ("nova/scheduler@4.0",), timeout)
        self.timings["boot_apis"] = time.monotonic() - t0

    def neutron_agent(self, host: str, agent_type: str) -> dict | None:
        """``host``'s alive agent of ``agent_type`` ("L3 agent", "DHCP agent"...), or None."""
        return next((a for a in self.neutron_agents() if a["host"] == host and a["alive"]
                     and a["agent_type"] == agent_type), None)

    def check_alive(self) -> bool:
        """True, or RuntimeError naming the first daemon that has exited."""
        for proc in self.procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited rc={proc.popen.returncode}, "
                                   f"see {proc.log}")
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every daemon at once (no order matters for a throwaway cloud), reap."""
        for proc in self.procs:
            proc.terminate()
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.stop(timeout=max(0.1, deadline - time.monotonic()))
        self.procs.clear()


# --- configuration -------------------------------------------------------------
def placement_client(cp: ControlPlane) -> dict[str, object]:
    return {"auth_type": "admin_token", "token": TOKEN,
            "endpoint": cp.url(cp.placement_port, "/")}


def neutron_client(cp: ControlPlane) -> dict[str, object]:
    """nova's [neutron]: admin_token at a fixed endpoint, metadata proxy secret."""
    return {"auth_type": "admin_token", "token": TOKEN,
            "endpoint": cp.url(cp.neutron_port), "endpoint_override": cp.url(cp.neutron_port),
            "service_metadata_proxy": "true", "metadata_proxy_shared_secret": METADATA_SECRET}


def glance_client(cp: ControlPlane) -> dict[str, object]:
    return {"endpoint_override": cp.url(cp.glance_port)}


def nova_ctl_conf(cp: ControlPlane) -> Path:
    """nova.conf for the control plane (conductor, scheduler, api, nova-manage)."""
    return write_ini(cp.root / "etc" / "nova-ctl.conf", {
        "DEFAULT": {"transport_url": cp.transport_url, "state_path": cp.root / "nova-ctl",
                    "use_stderr": "false", "my_ip": "127.0.0.1"},
        "database": {"connection": sqlite_url(cp.nova_db)},
        "api_database": {"connection": sqlite_url(cp.nova_api_db)},
        "conductor": {"workers": 1},
        "scheduler": {"workers": 1, "discover_hosts_in_cells_interval": 2},
        "oslo_concurrency": {"lock_path": cp.root / "nova-ctl" / "lock"},
        "placement": placement_client(cp),
        "neutron": neutron_client(cp),
        "glance": glance_client(cp),
        "oslo_policy": {"enforce_scope": "false", "enforce_new_defaults": "false"},
    })


def _neutron_server_conf(cp: ControlPlane) -> Path:
    notify = "true" if cp.full else "false"
    return write_ini(cp.root / "etc" / "neutron-server.conf", {
        "DEFAULT": {"transport_url": cp.transport_url, "core_plugin": "ml2",
                    "service_plugins": "router", "auth_strategy": "noauth",
                    "state_path": cp.root / "neutron-server", "use_stderr": "false",
                    "api_paste_config": cp.prefix / "etc" / "neutron" / "api-paste.ini",
                    "rpc_workers": 1, "rpc_state_report_workers": 0, "api_workers": 1,
                    "notify_nova_on_port_status_changes": notify,
                    "notify_nova_on_port_data_changes": notify},
        "database": {"connection": sqlite_url(cp.neutron_db)},
        "ml2": {"type_drivers": "flat,vlan", "tenant_network_types": "",
                "mechanism_drivers": "openvswitch", "extension_drivers": "port_security"},
        "ml2_type_flat": {"flat_networks": f"{PHYSNET},{EXT_PHYSNET}"},
        "nova": {"auth_type": "admin_token", "token": TOKEN,
                 "endpoint": cp.url(cp.nova_api_port, "/v2.1")},
        "oslo_concurrency": {"lock_path": cp.root / "neutron-server" / "lock"},
        "oslo_policy": {"enforce_scope": "false", "enforce_new_defaults": "false"},
    })


def _placement_conf(cp: ControlPlane) -> Path:
    return write_ini(cp.root / "etc" / "placement" / "placement.conf", {
        "DEFAULT": {"use_stderr": "false"},
        "api": {"auth_strategy": "noauth2"},
        "placement_database": {"connection": sqlite_url(cp.root / 'db' / 'placement.sqlite')},
    })


def keystone_free_paste(shipped: Path, target: Path) -> Path:
    """``shipped`` with keystonemiddleware's ``authtoken`` replaced by fake_keystone.py."""
    text = shipped.read_text()
    old = "paste.filter_factory = keystonemiddleware.auth_token:filter_factory"
    if old not in text:
        raise RuntimeError(f"{shipped}: no authtoken filter to replace")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text.replace(
        old, "paste.filter_factory = hvtestcloud.fake_keystone:filter_factory"))
    return target


def _nova_api_dir(cp: ControlPlane) -> Path:
    """OS_NOVA_CONFIG_DIR of nova-api: its paste file first, then nova.conf."""
    d = cp.root / "etc" / "nova-api"
    keystone_free_paste(cp.prefix / "etc" / "nova" / "api-paste.ini", d / "api-paste.ini")
    (d / "nova.conf").write_text(nova_ctl_conf(cp).read_text())
    return d


def _glance_conf(cp: ControlPlane) -> Path:
    paste = keystone_free_paste(cp.prefix / "etc" / "glance" / "glance-api-paste.ini",
                                cp.root / "etc" / "glance" / "glance-api-paste.ini")
    stores = {name: cp.root / "glance" / name for name in ("images", "staging", "tasks")}
    for d in stores.values():
        d.mkdir(parents=True, exist_ok=True)
    # Read by glance.wsgi.api from OS_GLANCE_CONFIG_DIR (glance 33 has no
    # standalone server: "Standalone glance-api is no longer supported").
    return write_ini(cp.root / "etc" / "glance" / "glance-api.conf", {
        "DEFAULT": {"use_stderr": "false", "enabled_backends": "file:file",
                    "log_file": cp.logs / "glance-api.oslo.log",
                    "worker_self_reference_url": cp.url(cp.glance_port)},
        "database": {"connection": sqlite_url(cp.root / 'db' / 'glance.sqlite')},
        "glance_store": {"default_backend": "file"},
        "file": {"filesystem_store_datadir": stores["images"]},
        "os_glance_staging_store": {"filesystem_store_datadir": stores["staging"]},
        "os_glance_tasks_store": {"filesystem_store_datadir": stores["tasks"]},
        "paste_deploy": {"config_file": paste, "flavor": "keystone"},
        "image_format": {"require_image_format_match": "false"},
        "oslo_policy": {"enforce_scope": "false", "enforce_new_defaults": "false"},
        "oslo_concurrency": {"lock_path": cp.root / "glance-lock"},
    })


_NEUTRON_SCHEMA = (
    "import sys\n"
    "from oslo_db.sqlalchemy import engines\n"
    "from neutron.db.migration.models import head\n"
    "engine = engines.create_engine(sys.argv[1])\n"
    "head.get_metadata().create_all(engine)\n"
)


def _run(cp: ControlPlane, argv: Sequence[str], log: Path, timeout: float = 180) -> None:
    with open(log, "ab") as out:
        r = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT,
                           env=cp.env(), timeout=timeout, check=False)
    if r.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(map(str, argv))} failed rc={r.returncode}:\n{tail}")


def _db_stamp(cp: ControlPlane) -> str:
    """What the databases were built by: the services' versions and ``full``."""
    from importlib import metadata

    names = ["nova", "neutron", "openstack-placement", *(["glance"] if cp.full else [])]
    versions = []
    for name in names:
        try:
            versions.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}==?")
    return " ".join(versions) + f" full={cp.full}\n"


def _prepare_databases(cp: ControlPlane, keep: bool) -> bool:
    """nova, placement, neutron (and glance) schemas on sqlite, in parallel where possible.

    ``keep``: databases built earlier by the same versions are kept as they
    are (the demo's second run: a cloud restarting, not a new one). True if
    they were built now.
    """
    stamp = cp.root / "db" / "built-by"
    nova_conf = nova_ctl_conf(cp)
    neutron_conf = _neutron_server_conf(cp)
    if cp.full:
        _glance_conf(cp)
    if keep and stamp.exists() and stamp.read_text() == _db_stamp(cp):
        return False
    if (cp.root / "db").exists():
        for old in (cp.root / "db").iterdir():
            old.unlink()
    (cp.root / "db").mkdir(parents=True, exist_ok=True)
    log = cp.logs / "db.log"
    nm = [str(cp.bindir / "nova-manage"), "--config-file", str(nova_conf)]
    jobs = [
        [*nm, "api_db", "sync"],
        [str(cp.bindir / "placement-manage"), "--config-file", str(_placement_conf(cp)),
         "db", "sync"],
        [str(cp.bindir / "python"), "-c", _NEUTRON_SCHEMA, sqlite_url(cp.neutron_db)],
    ]
    if cp.full:
        jobs.append([str(cp.bindir / "glance-manage"), "--config-file", str(_glance_conf(cp)),
                     "db_sync"])
    with open(log, "ab") as out:
        running = [subprocess.Popen(j, stdout=out, stderr=subprocess.STDOUT, env=cp.env())
                   for j in jobs]
    for j, p in zip(jobs, running, strict=True):
        if p.wait(300) != 0:
            raise RuntimeError(f"{' '.join(j)} failed, see {log}")
    _run(cp, [*nm, "cell_v2", "map_cell0", "--database_connection",
              sqlite_url(cp.root / 'db' / 'nova_cell0.sqlite')], log)
    _run(cp, [*nm, "db", "sync"], log)
    _run(cp, [*nm, "cell_v2", "create_cell", "--name", "cell1"], log)
    _run(cp, [str(cp.bindir / "neutron-db-manage"), "--config-file", str(neutron_conf),
              "stamp", "heads"], log)
    _wal(cp.root / "db")
    stamp.write_text(_db_stamp(cp))
    return True


def _daemon_argv(cp: ControlPlane, *argv: str) -> list[str]:
    """``argv`` (a console script of ``bindir``, or ``-m MODULE``) run with SQLite
    transactions that take the write lock at BEGIN (hvtestcloud/sqlite_immediate.py):
    without it, neutron's API and RPC processes fail each other's writes with an
    instant ``database is locked`` (doc/upstream-behaviour.md section 14)."""
    return [str(cp.bindir / "python"), "-m", "hvtestcloud.sqlite_immediate", *argv]


#: The niceness of the daemons only a boot needs (nova-api, glance-api,
#: nova-scheduler) when the node is to serve first: on 2 cores, thirteen Python
#: daemons import at once, and these three would take a third of the CPU the
#: node's path to "joined" needs (conductor, Placement, neutron, the six agents).
BOOT_ONLY_NICE = 10


def _niced(argv: list[str], nice: int) -> list[str]:
    return ["nice", "-n", str(nice), *argv] if nice else argv


def _wsgi(cp: ControlPlane, name: str, app: str, port: int, *args: str,
          env: Mapping[str, str] = (), nice: int = 0) -> Proc:
    argv = _daemon_argv(cp, "-m", "hvsupervisor.agents.wsgi", "--threads", "4", "--app", app,
                        "--name", name, "--bind", f"127.0.0.1:{port}", *args)
    return cp.ns.spawn(name, _niced(argv, nice), cp.logs / f"{name}.log", cp.env(env))


#: The RPC servers a node's agents call as they start (exchange/topic@version,
#: as ``rpc:`` ready rules): neutron-rpc-server's plugin, resource-version and
#: state-report topics, the L3 plugin, nova-conductor. A call published before
#: the server consumes is dropped (hvtestcloud/rpcwait.py says what that costs).
NODE_RPC_TOPICS = ("neutron/q-plugin@1.0", "neutron/q-reports-plugin@1.0",
                   "neutron/q-server-resource-versions@1.0", "neutron/q-l3-plugin@1.0",
                   "nova/conductor@3.0")


def wait_rpc_servers(cp: ControlPlane, topics: Sequence[str] = NODE_RPC_TOPICS,
                     timeout: float = 90) -> dict:
    """Wait (in the cloud's netns) until every topic's RPC server answers; what each took."""
    r = cp.ns.run([str(cp.bindir / "python"), "-m", "hvtestcloud.rpcwait",
                   cp.transport_url, *topics, "--timeout", str(timeout)],
                  env=cp.env(), timeout=timeout + 30)
    lines = r.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if r.returncode != 0:
        cp.check_alive()
        raise TimeoutError(f"the cloud's RPC servers did not answer within {timeout:g} s: "
                           f"{result.get('missing') or r.stderr.strip()[-500:]}")
    return result.get("answered", {})


def start_control_plane(root: Path, *, bindir: Path | None = None, prefix: Path | None = None,
                        full: bool = False, ns: Netns | None = None,
                        start_ovs: bool = True, keep_databases: bool = False,
                        serve_first: bool = False) -> ControlPlane:
    """Bring everything up; the caller must ``stop()`` it (and destroy ``ns`` if it made it).

    ``ns``: run inside this namespace (default: a fresh ``hvsup-e2e-*`` one,
    which the caller destroys). ``start_ovs``: also a private OVS there for
    the node (the e2e tier's node shares the namespace). ``keep_databases``:
    reuse the databases of an earlier run by the same versions (the demo).
    ``serve_first`` (with ``full``): return once what a node needs to join
    answers; the boot-only daemons start niced (``BOOT_ONLY_NICE``) and
    ``ControlPlane.wait_boot_apis`` (which hvtestcloud/boot.py calls) waits for them.
    """
    t0 = time.monotonic()
    bindir = bindir or Path(sys.executable).parent
    cp = ControlPlane(root=root, ns=ns or Netns.create("hvsup-e2e"), bindir=bindir,
                      prefix=prefix or bindir.parent, full=full)
    cp.logs.mkdir(parents=True, exist_ok=True)
    try:
        if start_ovs:
            cp.ovs = services.start_ovs(cp.ns, cp.ovs_run, cp.env())
            cp.procs += cp.ovs.procs
        cp.procs += services.start_rabbit(cp.ns, cp.root / "rabbit", cp.rabbit_port, cp.env())
        if _prepare_databases(cp, keep_databases):  # meanwhile RabbitMQ boots
            cp.timings["databases"] = time.monotonic() - t0
        cp.procs.append(_wsgi(cp, "placement-api", "placement.wsgi.api:application",
                              cp.placement_port,
                              env={"OS_PLACEMENT_CONFIG_DIR": str(cp.root / "etc" / "placement")}))
        neutron_conf = cp.root / "etc" / "neutron-server.conf"
        nargs = ["--config-file", str(neutron_conf), "--log-file"]
        cp.procs.append(_wsgi(cp, "neutron-api", "neutron.wsgi.api:application",
                              cp.neutron_port, *nargs, str(cp.logs / "neutron-api.oslo.log")))
        nice = BOOT_ONLY_NICE if serve_first else 0
        if cp.full:
            api_dir = _nova_api_dir(cp)
            cp.procs.append(_wsgi(cp, "nova-api", "nova.wsgi.osapi_compute:application",
                                  cp.nova_api_port, nice=nice,
                                  env={"OS_NOVA_CONFIG_DIR": str(api_dir),
                                       "OS_NOVA_CONFIG_FILES": "api-paste.ini;nova.conf"}))
            cp.procs.append(_wsgi(cp, "glance-api", "glance.wsgi.api:application",
                                  cp.glance_port, nice=nice,
                                  env={"OS_GLANCE_CONFIG_DIR": str(_glance_conf(cp).parent)}))
        # The RPC servers start with the APIs, before RabbitMQ listens: they
        # import for seconds first, and oslo.messaging retries the connection.
        cp.procs.append(cp.ns.spawn("neutron-rpc-server", _daemon_argv(
            cp, str(cp.bindir / "neutron-rpc-server"), *nargs,
            str(cp.logs / "neutron-rpc.oslo.log")), cp.logs / "neutron-rpc.log", cp.env()))
        daemons = {"nova-conductor": 0, **({"nova-scheduler": nice} if cp.full else {})}
        for name, niceness in daemons.items():
            cp.procs.append(cp.ns.spawn(name, _niced(_daemon_argv(
                cp, str(cp.bindir / name), "--config-file", str(nova_ctl_conf(cp)),
                "--log-file", str(cp.logs / f"{name}.oslo.log")), niceness),
                cp.logs / f"{name}.log", cp.env()))
        wait_until(lambda: cp.check_alive() and cp.ns.tcp_open(cp.rabbit_port), 90,
                   "RabbitMQ port")
        cp.timings["rabbit"] = time.monotonic() - t0
        wait_until(lambda: cp.check_alive() and cp.ns.tcp_open(cp.placement_port), 60,
                   "Placement API")
        wait_until(lambda: cp.check_alive() and cp.get(cp.neutron_port, "/v2.0/agents")
                   is not None, 90, "neutron API")
        cp.timings["rpc_servers"] = max(wait_rpc_servers(cp).values(), default=0.0)
        if not serve_first:
            cp.wait_boot_apis()
        cp.check_alive()
        cp.timings["up"] = time.monotonic() - t0
        return cp
    except BaseException:
        cp.stop()
        if ns is None:
            cp.ns.destroy()
        raise


# --- the node's side -----------------------------------------------------------
def node_snippets(cp: ControlPlane, override: Path, host: str, *,
                  compute_driver: str = "fake.PredictableNodeUUIDDriver",
                  ovsdb_connection: str | None = None, flat_network: bool = False,
                  external_network: bool = False, name: str = "50-site.conf") -> list[Path]:
    """The node's site snippets (conf.d in the override layer), pointing at ``cp``.

    The shipped defaults stay as they are; only site values and this
    machine's deviations live here: userspace datapath, private ovsdb, a
    noop firewall (no kernel conntrack here), the metadata secret shared with
    nova. ``flat_network``: ``physnet1`` on ``br-phys`` (the OVS agent exits
    if that bridge is missing: the node's supervisor needs ``ensure_bridges``),
    metadata served from the DHCP namespace (no router needed).
    ``external_network`` (with ``flat_network``): also ``extnet`` on ``br-ex``
    for routers' gateways and floating IPs (the L3 agent plugs its ``qg-``
    port into br-int; the OVS agent patches br-int to br-ex for that physnet).
    """
    ovsdb = ovsdb_connection or f"unix:{cp.ovsdb_sock}"
    neutron_default = {"host": host, "transport_url": cp.transport_url,
                       "metadata_proxy_shared_secret": METADATA_SECRET}
    ovs = {"ovsdb_connection": ovsdb, "datapath_type": "netdev"}
    if flat_network:
        neutron_default |= {"enable_isolated_metadata": "true", "force_metadata": "true"}
        ovs["bridge_mappings"] = f"{PHYSNET}:{PHYS_BRIDGE}"
        if external_network:
            ovs["bridge_mappings"] += f",{EXT_PHYSNET}:{EXT_BRIDGE}"
    return [
        write_ini(override / "nova" / "nova.conf.d" / name, {
            "DEFAULT": {"host": host, "transport_url": cp.transport_url,
                        "compute_driver": compute_driver, "my_ip": "127.0.0.1"},
            "placement": placement_client(cp),
            "neutron": neutron_client(cp),
            "glance": glance_client(cp),
            "os_vif_ovs": {"ovsdb_connection": ovsdb},
            "vnc": {"enabled": "false"},
            "libvirt": {"virt_type": "qemu", "cpu_mode": "none"},
        }),
        # The shipped layout: database credentials only where nova-api-metadata
        # reads them (nova-compute talks to the conductor, never to a database).
        write_ini(override / "nova" / "nova-api-metadata.conf.d" / name, {
            "database": {"connection": sqlite_url(cp.nova_db)},
            "api_database": {"connection": sqlite_url(cp.nova_api_db)},
        }),
        write_ini(override / "neutron" / "neutron.conf.d" / name, {
            "DEFAULT": neutron_default,
            "ovs": ovs,
            "securitygroup": {"firewall_driver": "noop"},
        }),
    ]
