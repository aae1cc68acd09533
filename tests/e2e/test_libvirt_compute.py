"""nova-compute with the real libvirt driver joins the e2e cloud under hvsupervisor.

A second node beside the fake-driver one of test_upstream.py: its own
``hvsupervisor run`` (only nova-compute enabled, host name ``e2e-libvirt``,
its own dirs) in the session control plane's netns, with the shipped
``compute_driver = libvirt.LibvirtDriver`` and the shipped libvirt host gate
(not emptied), against the private libvirtd of tests/fixtures/libvirt.py.
libvirtd runs in the root netns; its unix socket is a file, so the
``qemu+unix:///system?socket=...`` URI works from inside the netns.

Deviations from the shipped nova.conf, both because of this machine, not of
the driver: ``virt_type = qemu`` (no usable KVM here, doc/upstream-behaviour.md section 11)
and ``connection_uri`` (the private libvirtd instead of the host's).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.controlplane import REPO, Node, spawn_supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

HOST = "e2e-libvirt"
# Shipped: unset, so nova-compute's budget follows its graceful_shutdown_timeout
# (nova's 180 s + 10 s). With the libvirt driver nova's graceful stop hangs after
# its work is done (doc/upstream-behaviour.md section 18); the shipped
# stop_drained rule ends it. Shorter here only so that a broken rule fails the
# tier in a minute, and long enough that an exit by the rule (exit 1, SIGINT)
# cannot be mistaken for one by this timer (SIGKILL).
STOP_TIMEOUT = 60
DRAINED = "event=drained agent=nova-compute"


@dataclass
class LibvirtNode(Node):
    """The node, plus what `hvsupervisor status` said while libvirtd was down."""

    gate_held: dict = field(default_factory=dict)


def _make_node(cp, libvirtd, root: Path) -> LibvirtNode:
    from hvsupervisor.config.settings import load_settings
    from hvsupervisor.host.facts import plans_for
    from tests.e2e import controlplane as cpmod

    node = LibvirtNode(root=root, override=root / "override", state_dir=root / "state",
                log_dir=root / "log", run_dir=root / "run")
    # nova creates neither its state_path ({state_dir}/nova) nor instances_path
    # ($state_path/instances); the shipped catalog's `directories` has the
    # supervisor make both before each start (checked below, after the start).
    for d in (node.log_dir, node.run_dir):
        d.mkdir(parents=True, exist_ok=True)
    # The site snippet of the fake-driver node (bus, DBs, Placement), then ours on top.
    cpmod.node_snippets(cp, node.override)
    cpmod.write_ini(node.override / "nova" / "nova.conf.d" / "60-libvirt.conf", {
        "DEFAULT": {"host": HOST, "compute_driver": "libvirt.LibvirtDriver"},
        "libvirt": {"virt_type": "qemu", "connection_uri": libvirtd.uri},
    })
    # Only nova-compute; its shipped `after` (the OVS agent) is not enabled here.
    # host_gates stays as shipped (libvirt).
    # user = root: the opt-out (etc/examples/hvsupervisor.conf.d/50-root.conf.example).
    # Unverified as nova (doc/upstream-behaviour.md section 15): the private
    # libvirtd's socket is root:root 0770 under pytest's 0700 tmp
    # (testcloud/hvtestcloud/libvirtd.py), where nova would need group libvirt and a
    # searchable path; and the libvirt driver's instances dir and privsep calls
    # as nova were never run here. test_upstream.py runs nova-compute as nova
    # with the fake driver.
    cpmod.write_ini(node.override / "hvsupervisor.conf.d" / "60-e2e-libvirt.conf", {
        "DEFAULT": {"enabled_agents": "nova-compute"},
        "agent:nova-compute": {"after": "", "stop_timeout": STOP_TIMEOUT, "user": "root"},
    })
    settings = load_settings(REPO / "etc", node.override, str(node.state_dir),
                             str(node.log_dir), str(node.run_dir))
    node.plans = plans_for(settings)
    return node


@pytest.fixture(scope="module")
def libvirt_node(upstream_controlplane, libvirt_daemon, tmp_path_factory) -> Iterator[LibvirtNode]:
    """nova-compute (libvirt driver) alone under `hvsupervisor run`, started gated.

    libvirtd is stopped first, so the supervisor must hold nova-compute back
    (state "waiting" on the libvirt gate, no pid) until libvirtd answers again.
    ``node.started["nova-compute"]`` is then the moment libvirtd answered.
    """
    pytest.importorskip("libvirt", reason="libvirt-python is needed by nova's libvirt driver")
    from tests.e2e.controlplane import wait_until

    node = _make_node(upstream_controlplane, libvirt_daemon,
                      tmp_path_factory.mktemp("libvirt-node"))
    libvirt_daemon.stop()
    try:
        spawn_supervisor(upstream_controlplane, node)
        node.gate_held = wait_until(
            lambda: (lambda a: a if a["state"] == "waiting" and "libvirt" in (a["reason"] or "")
                     else None)(node.status()["nova-compute"]),
            30, "nova-compute waiting on the libvirt gate")
    finally:
        if libvirt_daemon.pid is None:
            libvirt_daemon.start()
    node.started["nova-compute"] = time.time()
    try:
        yield node
    finally:
        node.supervisor.stop(timeout=90)


def test_plan_keeps_the_libvirt_gate(libvirt_node, libvirt_daemon):
    plan = libvirt_node.plans["nova-compute"]
    assert list(libvirt_node.plans) == ["nova-compute"]
    assert "libvirt" in plan.host_gates
    from hvsupervisor.config.explain import effective
    from hvsupervisor.host.libvirt import libvirt_uri

    assert libvirt_uri(effective(plan).lookup) == libvirt_daemon.uri


def test_libvirt_compute_is_up_and_has_a_resource_provider(upstream_controlplane,
                                                          libvirt_node, libvirt_daemon):
    from tests.e2e.controlplane import wait_until

    cp, node = upstream_controlplane, libvirt_node
    started = node.started["nova-compute"]

    svc = wait_until(lambda: cp.compute_service_up(HOST, started), 180,
                     f"{HOST} nova-compute heartbeat in the nova DB")
    t_up = time.time() - started
    assert svc["disabled"] == 0
    # The libvirt driver names its node after libvirtd's hostname, not [DEFAULT] host.
    nodename = subprocess.run(["virsh", "-c", libvirt_daemon.uri, "hostname"],
                              capture_output=True, text=True, check=True).stdout.strip()
    rps = wait_until(lambda: [rp for rp in cp.resource_providers()
                              if rp["name"] == nodename], 60,
                     f"resource provider {nodename!r} in Placement")
    t_rp = time.time() - started
    uuid_file = node.state_dir / "nova" / "compute_id"
    assert uuid_file.read_text().strip() == rps[0]["uuid"]
    # Made by the supervisor from the catalog's `directories`, traversable by qemu.
    instances = node.state_dir / "nova" / "instances"
    assert instances.is_dir() and instances.stat().st_mode & 0o777 == 0o711
    # Up in nova before the supervisor's own readiness (ready = alive:10) fires.
    wait_until(lambda: node.status()["nova-compute"]["ready"], 60, "nova-compute ready")
    out = (node.root / "hvsupervisor.out").read_text(errors="replace")
    assert "gate=libvirt open=True" in out
    print(f"libvirt nova-compute: service up {t_up:.1f}s, resource provider {t_rp:.1f}s "
          "after `hvsupervisor run`")


def test_nova_compute_waited_for_libvirtd(libvirt_node):
    held = libvirt_node.gate_held
    assert held["pid"] is None, held
    out = (libvirt_node.root / "hvsupervisor.out").read_text(errors="replace")
    assert "gate=libvirt open=False" in out
    assert out.index("gate=libvirt open=True") < out.index("event=spawn agent=nova-compute")


def _since(log: Path, offset: int) -> str:
    with open(log, errors="replace") as f:
        f.seek(offset)
        return f.read()


def _placement_backlog(cp) -> int:
    """Bytes waiting in placement's sockets (its process stopped: nobody reads them)."""
    r = cp.ns.run(["ss", "-tnH", "state", "established", f"( sport = :{cp.placement_port} )"])
    assert r.returncode == 0, r.stderr
    return sum(int(line.split()[0]) for line in r.stdout.splitlines() if line.strip())


def test_restart_waits_for_a_task_in_flight(upstream_controlplane, libvirt_node):
    """A restart while nova-compute has a task in flight waits for that task.

    The task: ``set_host_enabled`` over nova's RPC (tracked by nova 34's graceful
    shutdown like every compute RPC method), held because placement is stopped
    (SIGSTOP) so its provider-traits request gets no answer. nova logs that it
    waits for that task; the drained rule must not fire until placement answers
    and nova logs that all in-progress tasks have finished.
    """
    from hvtestcloud.waiting import WaitTimeout

    from hvsupervisor.control.client import call
    from tests.e2e.controlplane import scrubbed_env, wait_until

    cp, node = upstream_controlplane, libvirt_node
    wait_until(lambda: node.status()["nova-compute"]["ready"], 120, "nova-compute ready")
    pid = node.status()["nova-compute"]["pid"]
    log, out = node.log_dir / "nova-compute.log", node.root / "hvsupervisor.out"
    placement = next(p for p in cp.procs if p.name == "placement-api")
    caller = None
    os.killpg(placement.pid, signal.SIGSTOP)
    try:
        assert _placement_backlog(cp) == 0  # nothing of nova's waits there yet
        caller = cp.ns.spawn("compute-call",
                             [sys.executable, "-m", "tests.e2e.compute_call", cp.transport_url,
                              HOST, "set_host_enabled", '{"enabled": true}'],
                             node.root / "compute-call.out", scrubbed_env(), cwd=REPO)
        wait_until(lambda: _placement_backlog(cp) > 0, 60,
                   "set_host_enabled's request waiting in the stopped placement")
        offset, sup_offset = log.stat().st_size, out.stat().st_size
        t0 = time.monotonic()
        assert call(node.control_socket, {"cmd": "restart", "agents": ["nova-compute"]},
                    timeout=30)["ok"]
        # nova's own word, twice: the task is in flight, and 10 s later still is.
        try:
            wait_until(lambda: "Graceful shutdown still waiting for 1 in progress tasks: "
                       "set_host_enabled" in _since(log, offset), 60,
                       "nova still waiting for set_host_enabled")
        except WaitTimeout:
            pytest.fail("nova did not wait for set_host_enabled; its log since the restart:\n"
                        + _since(log, offset)[-4000:] + "\nsupervisor:\n"
                        + _since(out, sup_offset)[-2000:])
        assert "Graceful shutdown initiated with 1 in-progress tasks: set_host_enabled" \
            in _since(log, offset)
        assert Path(f"/proc/{pid}").exists()
        assert DRAINED not in _since(out, sup_offset)
        held = time.monotonic() - t0
    finally:
        os.killpg(placement.pid, signal.SIGCONT)
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), STOP_TIMEOUT,
               "the restarted nova-compute's old process gone")
    took = time.monotonic() - t0
    text, sup = _since(log, offset), _since(out, sup_offset)
    assert text.index("task completed: set_host_enabled") \
        < text.index("Graceful shutdown: all in-progress tasks finished.")
    assert f"{DRAINED} pid={pid}" in sup
    assert f"event=signal agent=nova-compute pid={pid} signal=SIGINT" in sup
    assert f"event=signal agent=nova-compute pid={pid} signal=SIGKILL" not in sup
    wait_until(lambda: node.status()["nova-compute"]["ready"], 120, "nova-compute ready again")
    assert node.status()["nova-compute"]["pid"] != pid
    if caller is not None:
        caller.stop(timeout=5)
    print(f"libvirt nova-compute restart with a task in flight: held {held:.1f}s while "
          f"placement was stopped, old process gone {took:.1f}s after the restart request")


def test_stop_leaves_no_nova_compute(libvirt_node):
    """`hvsupervisor stop` of an idle nova-compute ends by the drained rule.

    Measured with nova 34 (threading mode), without the rule: SIGTERM starts the
    graceful shutdown, which logs "no in-progress tasks" and then waits in
    thread_pool_factory.shutdown_all_executors on the default pool, where the
    libvirt driver's connection-event loop (nova/virt/libvirt/host.py,
    Host._conn_event_thread: ``while True: queue.get()``) never returns, until
    manager_shutdown_timeout (160 s) has passed: 165 s in all. With the shipped
    stop_drained rule the supervisor sends SIGINT at that log line.
    """
    from hvsupervisor.control.client import call
    from tests.e2e.controlplane import wait_until

    node = libvirt_node
    wait_until(lambda: node.status()["nova-compute"]["ready"], 120, "nova-compute ready")
    pid = node.status()["nova-compute"]["pid"]
    out = node.root / "hvsupervisor.out"
    sup_offset = out.stat().st_size
    t0 = time.monotonic()
    assert call(node.control_socket, {"cmd": "stop"}, timeout=120)["ok"]
    wait_until(lambda: node.status()["nova-compute"]["state"] == "stopped",
               STOP_TIMEOUT + 30, "nova-compute stopped")
    took = time.monotonic() - t0
    assert not Path(f"/proc/{pid}").exists()
    last = node.status()["nova-compute"]["last_exit"]
    sup = _since(out, sup_offset)
    # Ended by the rule (nova's _fast_exit: exit 1), not by the kill timer.
    assert f"{DRAINED} pid={pid}" in sup and last.startswith("exit 1"), (last, sup[-2000:])
    assert "signal=SIGKILL" not in sup
    print(f"libvirt nova-compute stop: {took:.1f}s, {last}")
