"""Run the demo node in the foreground; Ctrl-C stops it with nothing left behind.

Order: a private netns, OVS and RabbitMQ inside it (services.py), the
override snippets (profile.py), then ``hvsupervisor run`` inside it with
every layer dir under the demo dir. The supervisor's output goes to this
terminal; the agents' logs go to ``<demo>/log``.

Stopping (SIGINT, SIGTERM, or the supervisor exiting by itself): the
signal is forwarded to the supervisor, which stops its agents; then OVS
bridges are deleted, OVS and RabbitMQ/epmd stopped by pid, and the netns
deleted, killing anything that still ran inside (reported: it is a bug).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hvsupervisor import paths, rundir
from hvsupervisor.config.errors import EX_CONFIG, ConfigError
from hvsupervisor.config.plan import build_plans
from hvsupervisor.config.settings import load_settings
from hvsupervisor.demo import database, profile, services
from hvsupervisor.opts import SIX_AGENTS

HOST = "hvsup-demo"
RABBIT_PORT = 5672  # inside the demo's own netns: no clash with the host's
AGENT_COUNT_TIMEOUT = 300.0
SUPERVISOR_STOP_TIMEOUT = 120.0  # above the catalog's longest stop_timeout + dataplane
TOOLS = ("ip", "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "epmd")


@dataclass(frozen=True)
class Layout:
    """Everything of the demo lives under ``root``."""

    root: Path

    override = property(lambda self: self.root / "override")
    state = property(lambda self: self.root / "state")
    log = property(lambda self: self.root / "log")
    run = property(lambda self: self.root / "run")
    ovs = property(lambda self: self.root / "ovs")
    rabbit = property(lambda self: self.root / "rabbit")

    @property
    def control_socket(self) -> Path:
        return self.run / rundir.CONTROL_NAME

    def prepare(self) -> None:
        """Fresh run-time dirs (a killed earlier run may have left sockets); keep logs/state."""
        self.root.mkdir(mode=0o750, parents=True, exist_ok=True)
        for stale in (self.ovs, self.rabbit, self.run):
            shutil.rmtree(stale, ignore_errors=True)
        for d in (self.state, self.log, self.run, self.ovs, self.rabbit):
            d.mkdir(mode=0o750, parents=True, exist_ok=True)


def preflight() -> str | None:
    """The first thing missing for the demo, as one line; None if all is there."""
    if os.geteuid() != 0:
        return "run as root: the demo creates a network namespace and OVS bridges"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} not found: install openvswitch-switch, rabbitmq-server, iproute2 " \
                   f"(./run_demo does)"
    if not services.RABBIT.exists():
        return f"{services.RABBIT} not found: install rabbitmq-server (./run_demo does)"
    for mod in ("nova", "neutron"):
        if importlib.util.find_spec(mod) is None:
            return (f"python module {mod!r} is not installed beside {sys.executable}: "
                    f"./run_demo builds a venv with nova and neutron")
    return None


class _Interrupted(Exception):
    """SIGINT/SIGTERM before the supervisor ran: abort the start, then tear down."""


class _Signals:
    """SIGINT/SIGTERM: abort the start, or forward to the supervisor once it runs."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.supervisor: services.Proc | None = None
        self.tearing_down = False

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
                  f"(up to ~{SUPERVISOR_STOP_TIMEOUT:.0f} s), then OVS and RabbitMQ",
                  file=sys.stderr, flush=True)


def _agents(layout: Layout) -> list[dict] | None:
    from hvsupervisor.control.client import ControlError, call

    try:
        return call(layout.control_socket, {"cmd": "status"}, timeout=10)["agents"]
    except (ControlError, OSError, ValueError, KeyError):
        return None


def agents_up(agents: list[dict] | None) -> bool:
    """Every agent has a running process (starting, or ready)."""
    return bool(agents) and all(a["state"] in ("starting", "ready") and a.get("pid")
                                for a in agents)


def banner(layout: Layout, ns: services.Netns) -> str:
    demo = layout.root
    return f"""
==============================================================================
 hvsupervisor demo node "{HOST}": six real OpenStack agents under one supervisor
------------------------------------------------------------------------------
 runs (netns {ns.name}):
   Open vSwitch (private ovsdb-server + ovs-vswitchd, datapath_type=netdev)
   RabbitMQ on 127.0.0.1:{RABBIT_PORT} with its own epmd
   hvsupervisor run -> nova-compute, nova-api-metadata, neutron-openvswitch-agent,
                       neutron-dhcp-agent, neutron-l3-agent, neutron-metadata-agent
 nova-compute uses nova's fake driver ({profile.FAKE_DRIVER}), not
 libvirt. There is no cloud control plane (no nova-conductor, placement or
 neutron-server): the agents run and wait for it, and their logs say so
 within a minute ("Timed out waiting for nova-conductor", "Timeout in RPC
 method has_alive_neutron_server"). The OVS agent builds br-int meanwhile.
 everything lives in {demo}
   logs      {layout.log}/<agent>.log
   config    hvsupervisor --override-dir {layout.override} ... config plan AGENT
   ovsdb     ovs-vsctl --db=unix:{layout.ovs}/db.sock show
 from a second terminal:
   hvsupervisor --run-dir {layout.run} status
 Ctrl-C stops everything (agents, OVS, RabbitMQ, the netns).
==============================================================================
"""


def _watch(layout: Layout, ns: services.Netns, sup: services.Proc, t0: float) -> int:
    """Banner when the control socket answers, one line when all agents are up; wait."""
    shown = up = False
    while sup.alive():
        if not shown and layout.control_socket.exists() and _agents(layout) is not None:
            print(banner(layout, ns), file=sys.stderr, flush=True)
            shown = True
        if shown and not up:
            agents = _agents(layout)
            if agents_up(agents):
                up = True
                print(f"hvsupervisor demo: {len(agents or [])} agents up "
                      f"{time.monotonic() - t0:.1f} s after start", file=sys.stderr, flush=True)
        try:
            sup.popen.wait(1.0)
        except subprocess.TimeoutExpired:
            pass
    return sup.popen.returncode


def _teardown(sig: _Signals, ns: services.Netns | None, ovs: services.Ovs | None,
              rabbit: list[services.Proc], sup: services.Proc | None) -> list[int]:
    """Stop in reverse order, by pid; returns pids that had to be killed in the netns."""
    sig.tearing_down = True
    if sup is not None and sup.alive():
        services.killpg(sup.pid, sig.received or signal.SIGTERM)
        sup.stop(SUPERVISOR_STOP_TIMEOUT)  # waits; SIGKILL past the timeout
    if ovs is not None:
        ovs.delete_bridges()
        ovs.stop()
    for proc in reversed(rabbit):
        proc.stop(15)
    left: list[int] = []
    if ns is not None:
        try:  # zombies of killed groups drain from the netns within moments
            services.wait_until(lambda: not ns.pids(), 3, "an empty netns")
        except TimeoutError:
            left = ns.pids()
        ns.destroy()
    return left


def run(demo_dir: Path, defaults_dir: Path | None = None) -> int:
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
    ovs: services.Ovs | None = None
    rabbit: list[services.Proc] = []
    sup: services.Proc | None = None
    rc = 1
    try:
        layout.prepare()
        ns = services.Netns.create("hvsup-demo")
        env = services.scrubbed_env(bindir=paths.bindir())
        ovs = services.start_ovs(ns, layout.ovs, env)
        rabbit = services.start_rabbit(ns, layout.rabbit, RABBIT_PORT, env)
        profile.write_profile(
            layout.override, layout.state, HOST,
            f"rabbit://guest:guest@127.0.0.1:{RABBIT_PORT}/", ovs.connection,
            database.connection(layout.state), ovs.env())
        plans = build_plans(load_settings(defaults, layout.override, str(layout.state),
                                          str(layout.log), str(layout.run)))
        if database.sync(plans[database.AGENT], layout.state, paths.bindir(),
                         layout.log / "nova-manage.log", env):
            print(f"hvsupervisor demo: nova database created in {layout.state} "
                  f"({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
        argv = [sys.executable, "-m", "hvsupervisor", "--defaults-dir", str(defaults),
                "--override-dir", str(layout.override), "--state-dir", str(layout.state),
                "--log-dir", str(layout.log), "--run-dir", str(layout.run), "run"]
        sup = ns.spawn("hvsupervisor", argv, None, env, cwd=layout.run)
        sig.supervisor = sup
        rc = _watch(layout, ns, sup, t0)
        if sig.received is None:
            print(f"hvsupervisor demo: the supervisor exited rc={rc}", file=sys.stderr)
            rc = rc or 1
    except _Interrupted:
        rc = 128 + (sig.received or signal.SIGINT)
    except ConfigError as exc:
        print(f"hvsupervisor demo: {exc}", file=sys.stderr)
        rc = EX_CONFIG
    except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        print(f"hvsupervisor demo: {exc}", file=sys.stderr)
        rc = 1
    finally:
        left = _teardown(sig, ns, ovs, rabbit, sup)
    if left:
        print(f"hvsupervisor demo: killed processes left in the netns: {left}", file=sys.stderr)
        rc = rc or 1
    print(f"hvsupervisor demo: stopped (rc={rc}); logs kept in {layout.log}", file=sys.stderr)
    return rc
