"""Run the demo node in the foreground; Ctrl-C stops it with nothing left behind.

Order: a private netns; inside it the demo cloud the node joins
(cloud.py: OVS, RabbitMQ, Placement, nova-api/conductor/scheduler,
neutron, glance, the same launcher the e2e tier uses) and a private
libvirtd (libvirtd.py); the override snippets (profile.py); then
``hvsupervisor run`` inside it with every layer dir under the demo dir. The
supervisor's output goes to this terminal; the agents' logs go to
``<demo>/log``, the cloud's to ``<demo>/cloud/cp-logs``. With ``--boot``,
once the node has joined, a VM is booted through nova (boot.py) and its
console lines are printed.

Stopping (SIGINT, SIGTERM, or the supervisor exiting by itself): the
signal is forwarded to the supervisor, which stops its agents (and, with
``stop_dataplane``, dnsmasq/haproxy); then libvirtd (its domains are
destroyed first), the cloud, OVS bridges, OVS, and the netns with the
qdhcp-/qrouter- namespaces the agents made, killing anything that still
ran inside (reported: it is a bug).

Why over 400 lines: start and teardown are one ordered sequence (netns,
cloud, libvirtd, supervisor, VM) and each step's undo must sit beside it,
so that Ctrl-C at any point leaves nothing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hvsupervisor.config import paths
from hvsupervisor.config.errors import EX_CONFIG, ConfigError
from hvsupervisor.config.opts import SIX_AGENTS
from hvsupervisor.config.settings import load_settings
from hvsupervisor.control import rundir
from hvsupervisor.core import stopbudget
from hvsupervisor.host.facts import plans_for
from hvtestcloud import boot, cloud, guest, libvirtd, profile, services

HOST = "hvsup-demo"
NEUTRON_AGENTS = ("neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
                  "neutron-metadata-agent")
JOIN_TIMEOUT = 300.0
# Past the supervisor's own stop budget (stop_budget()), the demo SIGKILLs it.
SUPERVISOR_STOP_SLACK = 20.0
TOOLS = ("ip", "nsenter", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "epmd",
         "curl", "dnsmasq", "haproxy", "qemu-system-x86_64")
MODULES = ("nova", "neutron", "placement", "glance", "libvirt")


@dataclass(frozen=True)
class Layout:
    """Everything of the demo lives under ``root``."""

    root: Path

    @property
    def override(self) -> Path:
        return self.root / "override"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def cloud(self) -> Path:
        """The demo cloud's root (cloud.py): ovs/, rabbit/, db/ (kept), cp-logs/."""
        return self.root / "cloud"

    @property
    def ovs(self) -> Path:
        return self.cloud / "ovs"

    @property
    def libvirt(self) -> Path:
        return self.root / "libvirt"

    @property
    def guest(self) -> Path:
        return self.root / "guest"

    @property
    def control_socket(self) -> Path:
        return self.run / rundir.CONTROL_NAME

    def prepare(self) -> None:
        """Fresh run-time dirs (a killed earlier run may have left sockets); keep logs,
        state and the cloud's databases."""
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        self.root.chmod(0o711)  # dnsmasq ("nobody") reads files under state/
        for stale in (self.ovs, self.cloud / "rabbit", self.run, self.libvirt):
            shutil.rmtree(stale, ignore_errors=True)
        for d in (self.log, self.run, self.ovs, self.cloud):
            d.mkdir(mode=0o750, parents=True, exist_ok=True)
        self.state.mkdir(mode=0o711, parents=True, exist_ok=True)


def preflight() -> str | None:
    """The first thing missing for the demo, as one line; None if all is there."""
    if os.geteuid() != 0:
        return "run as root: the demo creates a network namespace and OVS bridges"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not found: ./run_demo installs the Debian packages the demo needs"
    if not services.RABBIT.exists():
        return f"{services.RABBIT} not found: install rabbitmq-server (./run_demo does)"
    problem = libvirtd.missing()
    if problem:
        return problem
    for mod in MODULES:
        if importlib.util.find_spec(mod) is None:
            return (f"python module {mod!r} is not installed beside {sys.executable}: "
                    f"./run_demo builds a venv with nova, neutron, placement, glance and "
                    f"libvirt-python")
    try:
        guest.host_kernel()
    except FileNotFoundError as exc:
        return str(exc)
    if not guest.BUSYBOX.exists():
        return f"{guest.BUSYBOX} missing: install busybox-static (./run_demo does)"
    return None


class _Interrupted(Exception):
    """SIGINT/SIGTERM before the supervisor ran: abort the start, then tear down."""


class _Signals:
    """SIGINT/SIGTERM: abort the start, or forward to the supervisor once it runs."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.supervisor: services.Proc | None = None
        self.tearing_down = False
        self.stop_budget = 0.0  # seconds the supervisor may take to stop (stop_budget())

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        first = self.received is None
        self.received = signum
        if self.tearing_down:
            return
        if self.supervisor is None:
            raise _Interrupted()
        if self.supervisor.alive():
            services.killpg(self.supervisor.pid, signum)
        if first:
            print(f"\nhvsupervisor demo: {signal.Signals(signum).name}: stopping the agents "
                  f"(up to {self.stop_budget:.0f} s), then the VM, libvirtd, the cloud, OVS",
                  file=sys.stderr, flush=True)


def agents_up(agents: list[dict] | None) -> bool:
    """Every agent has a running process (starting, or ready)."""
    return bool(agents) and all(a["state"] in ("starting", "ready") and a.get("pid")
                                for a in agents)


def _agents(layout: Layout) -> list[dict] | None:
    from hvsupervisor.control.client import ControlError, call

    try:
        return call(layout.control_socket, {"cmd": "status"}, timeout=10)["agents"]
    except (ControlError, OSError, ValueError, KeyError):
        return None


def joined(cp: cloud.ControlPlane, agents: list[dict] | None, since: float) -> str | None:
    """Why the node counts as joined (one line), or None: every agent ready in the
    supervisor, nova-compute up in nova's services, the four neutron agents alive."""
    if not agents or not all(a["ready"] for a in agents):
        return None
    if cp.compute_service_up(HOST, since) is None:
        return None
    alive = {a["binary"] for a in cp.neutron_agents() if a["host"] == HOST and a["alive"]}
    if not set(NEUTRON_AGENTS) <= alive:
        return None
    return (f"{len(agents)}/{len(agents)} agents ready; nova-compute up in nova's services; "
            f"{len(NEUTRON_AGENTS)} neutron agents alive in GET /v2.0/agents")


def banner(layout: Layout, ns: services.Netns, cp: cloud.ControlPlane, virt_type: str,
           booting: bool) -> str:
    demo = layout.root
    boot_line = ("booting a VM now (--boot): its console lines follow" if booting else
                 "boot a VM:  hvsupervisor demo --boot   (instead of this command)")
    return f"""
==============================================================================
 hvsupervisor demo node "{HOST}" joins a demo cloud: six real OpenStack agents
 under one supervisor, a real VM on request
------------------------------------------------------------------------------
 netns {ns.name}:
   the cloud (same launcher as the e2e tests): RabbitMQ, Placement, nova-api
     :{cp.nova_api_port}, nova-conductor, nova-scheduler, neutron :{cp.neutron_port} (ML2/OVS,
     router), glance :{cp.glance_port}; sqlite, no keystone (token "admin")
   Open vSwitch (private, datapath_type=netdev), libvirtd (private, virt_type={virt_type})
   hvsupervisor run -> nova-compute (libvirt), nova-api-metadata,
                       neutron-openvswitch-agent, -dhcp-agent, -l3-agent, -metadata-agent
 everything lives in {demo}
   agent logs  {layout.log}/<agent>.log     cloud logs  {layout.cloud}/cp-logs
   ovsdb       ovs-vsctl --db=unix:{layout.ovs}/db.sock show
   the cloud   nsenter --net=/run/netns/{ns.name} curl -H 'X-Auth-Token: admin' \
                 http://127.0.0.1:{cp.nova_api_port}/v2.1/os-services
 from a second terminal:
   hvsupervisor --run-dir {layout.run} status
 {boot_line}
 Ctrl-C stops everything (VM, agents, cloud, OVS, libvirtd, the netns).
==============================================================================
"""


def _boot(cp: cloud.ControlPlane, layout: Layout, timings: dict) -> None:
    """Upload the guest, boot the demo VM, print its console lines as they come (a thread)."""
    say = lambda msg: print(f"hvsupervisor demo: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        image_id = boot.upload_guest(cp, layout.guest)[0]
        net = boot.ensure_network(cp)
        booted = boot.boot(cp, HOST, image_id, net, log=say)
        timings["boot_to_active"] = booted.timings["active"] - booted.timings["post"]
        tries = f" (POST /servers attempt {booted.attempts})" if booted.attempts > 1 else ""
        say(f"VM {booted.server_id} ACTIVE on {booted.host} in "
            f"{timings['boot_to_active']:.1f} s{tries}, fixed IP {booted.fixed_ip}; console:")
        seen = 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            lines = guest.parse_console(boot.console(cp, booted.server_id))
            for n, kind, value in lines[seen:]:
                say(f"  console: {guest.MARK} n={n} {kind}={value}")
                if kind == "uuid" and value == booted.server_id and "metadata" not in timings:
                    timings["metadata"] = time.monotonic() - booted.timings["active"]
                    say(f"VM read its uuid through this node's metadata path "
                        f"{timings['metadata']:.1f} s after ACTIVE")
            seen = len(lines)
            if "metadata" in timings and seen >= 4:
                break
            time.sleep(2)
        say(f"VM stays up; console: nsenter --net=/run/netns/{cp.ns.name} curl -s -H "
            f"'X-Auth-Token: admin' -H 'Content-Type: application/json' -d "
            f"'{{\"os-getConsoleOutput\": {{}}}}' "
            f"http://127.0.0.1:{cp.nova_api_port}/v2.1/servers/{booted.server_id}/action")
    except (boot.BootError, TimeoutError, OSError, KeyError, IndexError) as exc:
        say(f"boot failed: {exc}")


def _watch(layout: Layout, ns: services.Netns, cp: cloud.ControlPlane, sup: services.Proc,
           t0: float, virt_type: str, boot_vm: bool) -> int:
    """Banner when the control socket answers, one line when the node has joined the
    cloud (then the boot, if asked); wait for the supervisor."""
    shown = done = False
    since = time.time()
    timings: dict[str, float] = {}
    while sup.alive():
        if not shown and layout.control_socket.exists() and _agents(layout) is not None:
            print(banner(layout, ns, cp, virt_type, boot_vm), file=sys.stderr,
                  flush=True)
            shown = True
        if shown and not done:
            why = joined(cp, _agents(layout), since)
            if why:
                done = True
                print(f"hvsupervisor demo: joined the cloud {time.monotonic() - t0:.1f} s "
                      f"after start: {why}", file=sys.stderr, flush=True)
                if boot_vm:
                    threading.Thread(target=_boot, args=(cp, layout, timings),
                                     name="demo-boot", daemon=True).start()
            elif time.monotonic() - t0 > JOIN_TIMEOUT:
                done = True
                print(f"hvsupervisor demo: not joined after {JOIN_TIMEOUT:.0f} s: see "
                      f"hvsupervisor --run-dir {layout.run} status and {layout.log}",
                      file=sys.stderr, flush=True)
        try:  # look often until joined: the figure is the demo's time to serving
            sup.popen.wait(2.0 if done else 0.5)
        except subprocess.TimeoutExpired:
            pass
    return sup.popen.returncode


def _agent_namespaces(cp: cloud.ControlPlane | None) -> list[str]:
    """The qdhcp-/qrouter- namespaces neutron's agents made for the demo's networks
    (they outlive the agents); asked of neutron while it still runs."""
    if cp is None:
        return []
    names = []
    for kind, path, prefix in (("networks", "/v2.0/networks", "qdhcp-"),
                               ("routers", "/v2.0/routers", "qrouter-")):
        body = cp.get(cp.neutron_port, path)
        names += [prefix + item["id"] for item in (body or {}).get(kind, [])]
    return [n for n in names if Path("/run/netns", n).exists()]


def _teardown(sig: _Signals, ns: services.Netns | None, cp: cloud.ControlPlane | None,
              virt: libvirtd.LibvirtDaemon | None, sup: services.Proc | None) -> list[int]:
    """Stop in reverse order, by pid; returns pids that had to be killed in the netns."""
    sig.tearing_down = True
    agent_ns = _agent_namespaces(cp) if cp is not None and ns is not None else []
    if virt is not None:  # qemu first: its tap goes with it
        virt.destroy_domains()
    if sup is not None and sup.alive():
        services.killpg(sup.pid, sig.received or signal.SIGTERM)
        sup.stop(sig.stop_budget + SUPERVISOR_STOP_SLACK)  # waits; SIGKILL past the timeout
    if virt is not None:
        virt.teardown()
    if cp is not None:
        cp.stop()
        if cp.ovs is not None:
            cp.ovs.delete_bridges()
            cp.ovs.stop()
    for name in agent_ns:
        services.Netns(name).destroy()
    left: list[int] = []
    if ns is not None:
        try:  # zombies of killed groups drain from the netns within moments
            services.wait_until(lambda: not ns.pids(), 3, "an empty netns")
        except TimeoutError:
            left = ns.pids()
        ns.destroy()
    return left


def stop_budget(plans: dict) -> float:
    """Seconds the supervisor may take to stop: its longest chain of agent stops
    (each agent's budget; nova-compute's follows graceful_shutdown_timeout,
    profile.py), the data-plane helpers, its own exit; as ``hvsupervisor check``
    computes it for the unit's TimeoutStopSec=."""
    budgets = {n: p.stop_timeout for n, p in plans.items()}
    chain = stopbudget.longest_chain({n: p.after for n, p in plans.items()}, budgets)
    return stopbudget.required_unit_timeout(chain, 2 * stopbudget.DATAPLANE_STOP_TIMEOUT)


def _dnsmasq_conf(layout: Layout) -> Path | None:
    """A dnsmasq config keeping dnsmasq root, if "nobody" cannot reach the state dir.

    dnsmasq drops to "nobody" and re-reads its hosts file from
    ``{state_dir}/neutron/dhcp`` whenever a port is added; if any directory on
    the way is closed to others (a demo dir under /root, say), it silently
    answers no DHCP request. A node's real state dir is 0711 all the way
    (units: StateDirectoryMode); the demo cannot choose where it is run from.
    """
    reachable = all(d.stat().st_mode & 0o001 for d in [layout.state, *layout.state.parents])
    if reachable:
        return None
    conf = layout.root / "dnsmasq.conf"
    conf.write_text("# hvsupervisor demo: the demo dir is closed to 'nobody'\nuser=root\n")
    return conf


def _virt_type(layout: Layout, image: guest.GuestImage) -> str:
    """kvm if the guest boots under KVM here, else qemu; probed once, remembered."""
    memo = layout.root / "virt-type"
    key = f"{image.kernel} {image.kernel_release}"
    if memo.exists():
        recorded = memo.read_text().split("\n")
        if len(recorded) >= 2 and recorded[1] == key and recorded[0] in ("kvm", "qemu"):
            return recorded[0]
    found = "kvm" if boot.kvm_boots(image) else "qemu"
    memo.write_text(f"{found}\n{key}\n")
    return found


def run(demo_dir: Path, defaults_dir: Path | None = None, boot_vm: bool = False) -> int:
    """The ``hvsupervisor demo`` verb: returns the exit code."""
    problem = preflight()
    if problem:
        print(f"hvsupervisor demo: {problem}", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    layout = Layout(demo_dir.resolve())
    problem = rundir.socket_path_problem(layout.run, SIX_AGENTS)
    if problem:
        print(f"hvsupervisor demo: {problem}; pick a shorter HVSUP_DEMO_DIR", file=sys.stderr)
        return 1
    layout.root.mkdir(mode=0o750, parents=True, exist_ok=True)
    try:  # before prepare(): it clears the run-time dirs a running demo uses
        lock_fd = rundir.take_lock(layout.root)
    except rundir.AlreadyRunning as exc:
        print(f"hvsupervisor demo: {exc} (a demo)", file=sys.stderr)
        return 1
    rundir.write_pid(lock_fd)
    defaults = (defaults_dir or paths.defaults_dir()).resolve()
    sig = _Signals()
    sig.install()
    ns: services.Netns | None = None
    cp: cloud.ControlPlane | None = None
    virt: libvirtd.LibvirtDaemon | None = None
    sup: services.Proc | None = None
    rc = 1
    say = lambda msg: print(f"hvsupervisor demo: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    try:
        layout.prepare()
        ns = services.Netns.create("hvsup-demo")
        bindir = paths.bindir()
        image = guest.build(layout.guest)
        virt_type = _virt_type(layout, image)
        virt = libvirtd.LibvirtDaemon(layout.libvirt, netns=ns.name, qemu_as_root=True,
                                      cache_keep=layout.root / "libvirt-cache")
        # The node's snippets first (they only name paths and ports), so that a
        # config error stops the demo (rc 78) before anything else starts.
        planned = cloud.ControlPlane(layout.cloud, ns, bindir, bindir.parent, full=True)
        dnsmasq_conf = _dnsmasq_conf(layout)
        if dnsmasq_conf is not None:
            say(f"{layout.state} is not reachable by 'nobody': dnsmasq stays root "
                f"({dnsmasq_conf})")
        profile.write_profile(layout.override, planned, HOST, virt.uri, virt_type,
                              dnsmasq_conf)
        sig.stop_budget = stop_budget(plans_for(load_settings(
            defaults, layout.override, str(layout.state), str(layout.log), str(layout.run))))
        # libvirtd starts while the cloud does (it needs nothing of it); both
        # must be up before the supervisor (the libvirt gate, the bus).
        virt.setup()
        with ThreadPoolExecutor(1, thread_name_prefix="demo-libvirtd") as pool:
            libvirtd_up = pool.submit(virt.start)
            try:
                cp = cloud.start_control_plane(layout.cloud, bindir=bindir,
                                               prefix=bindir.parent, full=True, ns=ns,
                                               keep_databases=True, serve_first=True)
            finally:  # never leave a libvirtd starting behind a failed cloud
                libvirtd_up.exception()
            libvirtd_up.result()
        say(f"cloud and libvirtd up {time.monotonic() - t0:.1f} s after start "
            f"({'databases built' if 'databases' in cp.timings else 'databases kept'}; "
            f"nova-api, glance and nova-scheduler still starting, niced: a boot waits "
            f"for them, the node does not)")
        argv = [sys.executable, "-m", "hvsupervisor", "--defaults-dir", str(defaults),
                "--override-dir", str(layout.override), "--state-dir", str(layout.state),
                "--log-dir", str(layout.log), "--run-dir", str(layout.run), "run"]
        sup = ns.spawn("hvsupervisor", argv, None, cp.env(), cwd=layout.run)
        sig.supervisor = sup
        rc = _watch(layout, ns, cp, sup, t0, virt_type, boot_vm)
        if sig.received is None:
            say(f"the supervisor exited rc={rc}")
            rc = rc or 1
    except _Interrupted:
        rc = 128 + (sig.received or signal.SIGINT)
    except ConfigError as exc:
        say(str(exc))
        rc = EX_CONFIG
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError,
            boot.BootError) as exc:
        say(str(exc))
        rc = 1
    finally:
        left = _teardown(sig, ns, cp, virt, sup)
    if left:
        say(f"killed processes left in the netns: {left}")
        rc = rc or 1
    say(f"stopped (rc={rc}); logs kept in {layout.log} and {layout.cloud / 'cp-logs'}")
    return rc
