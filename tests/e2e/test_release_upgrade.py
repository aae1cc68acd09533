"""A node upgraded by release switch with a VM running on it, and a bad release rolled back.

The node runs from release **2026.1** (nova 33.0.2, neutron 28.0.2) against the e2e control
plane at **2026.2** (nova 34, neutron 29): a compute node one release behind its control plane
is a supported skew (nova's ``[upgrade_levels] compute = auto``, neutron's N-1 agents). Both
artifacts are built here from this checkout (doc/release.md; PyPI is reached for the build, the
installs use no index), installed into a release root of the test's own, and the supervisor runs
from its ``current`` link with the release's own shipped defaults, as the unit does.

With the boot test's guest on the node (tests/e2e/test_boot.py ``booted_node``):
- ``release switch`` to 2026.2: qemu's pid unchanged; a steady ping of the guest's fixed IP from
  the qdhcp netns through the switch (the loss is reported); the guest's next DHCP lease and
  metadata fetch after the switch succeed; the gate's upgrade_gate_command (tests/e2e/
  upgrade_gate.py) saw nova-compute report at a higher service version and the four neutron
  agents alive;
- ``release switch`` to a release whose OVS agent cannot start (2026.2 with the agent's module
  removed, built by the test): rolled back by itself, marked BAD, the VM still runs (same qemu),
  the node serves on 2026.2 again and the guest gets another round.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e import test_boot as tb
from tests.fixtures.controlplane import REPO
from tests.util import release_variant

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

PYTHON3 = "/usr/bin/python3"  # the node's own interpreter builds the release venvs
# neutron-openvswitch-agent = neutron.cmd.agents.ovs_neutron_agent:main (neutron 29)
OVS_AGENT_MODULE = "neutron/cmd/agents/ovs_neutron_agent.py"


@pytest.fixture(scope="module")
def release_root(tmp_path_factory):
    """2026.1, 2026.2 and a broken 2026.2 installed; current = 2026.1. Returns
    (store, {"old": id, "new": id, "broken": id}, figures)."""
    from hvsupervisor.release import artifact
    from hvsupervisor.release.store import ReleaseStore

    if not Path(PYTHON3).exists():
        pytest.skip("no /usr/bin/python3 (Debian's python3 builds the node's venvs)")
    out = tmp_path_factory.mktemp("artifacts")
    root = Path(tempfile.mkdtemp(prefix="hvsup-releases-", dir="/tmp"))
    root.chmod(0o711)  # the agents' users reach their venv's privsep client below it
    store = ReleaseStore(root)
    ids, figures = {}, {}
    for key, track in (("old", "2026.1"), ("new", "2026.2")):
        t0 = time.monotonic()
        path, rel = artifact.build(track, REPO, out, python=PYTHON3)
        figures[f"build_{track}_s"] = round(time.monotonic() - t0, 1)
        figures[f"artifact_{track}_mb"] = round(path.stat().st_size / 1e6, 1)
        t0 = time.monotonic()
        artifact.install(path, store, python=PYTHON3)
        figures[f"install_{track}_s"] = round(time.monotonic() - t0, 1)
        ids[key] = rel.id
        if key == "new":
            broken = artifact.install(release_variant(path, out / "broken.tar",
                                                      id=f"{rel.id}-broken"),
                                      store, python=PYTHON3)
            ids["broken"] = broken.id
    site = next((store.path(ids["broken"]) / "lib").glob("python3*/site-packages"))
    (site / OVS_AGENT_MODULE).unlink()  # neutron-openvswitch-agent cannot import its code
    store.set_link("current", ids["old"])
    print(f"release figures: {json.dumps(figures)}")
    try:
        yield store, ids, figures
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def _release_launcher(store):
    def launch(cp, node) -> None:
        from tests.e2e import controlplane as cpmod

        argv = [str(store.root / "current" / "bin" / "hvsupervisor"),
                "--override-dir", str(node.override), "--state-dir", str(node.state_dir),
                "--log-dir", str(node.log_dir), "--run-dir", str(node.run_dir), "run"]
        (node.override / "hvsupervisor.conf.d" / "70-release.conf").write_text(
            f"[supervisor]\nrelease_root = {store.root}\n")
        node.supervisor = cp.ns.spawn("hvsupervisor", argv, node.root / "hvsupervisor.out",
                                      cpmod.scrubbed_env(), cwd=node.run_dir)
        cpmod.wait_until(lambda: node.supervisor.alive() and node.control_socket.exists()
                         or not node.supervisor.alive(), 60, "hvsupervisor control socket")
        assert node.supervisor.alive(), (node.root / "hvsupervisor.out").read_text()[-3000:]
    return launch


@pytest.fixture(scope="module")
def upgrade_node(agent_users, release_root):
    store, _ids, _figures = release_root
    with tb.booted_node(agent_users, _release_launcher(store), defaults_dir=None) as node:
        yield node


def _compute_service(cp, host: str) -> tuple[int, str]:
    with sqlite3.connect(f"file:{cp.nova_db}?mode=ro", uri=True) as db:
        version, updated = db.execute(
            "SELECT version, updated_at FROM services WHERE host=? AND binary='nova-compute' "
            "AND deleted=0", (host,)).fetchone()
    return int(version), updated or ""


def _switch(node, store, release: str, timeout: int, gate: list[str] | None = None):
    conf = node.override / "hvsupervisor.conf.d" / "70-release.conf"
    lines = ["[supervisor]", f"release_root = {store.root}"]
    if gate:
        lines.append("upgrade_gate_command = " + ",".join(gate))
    conf.write_text("\n".join(lines) + "\n")
    argv = [str(store.root / "current" / "bin" / "hvsupervisor"), "--override-dir",
            str(node.override), "--state-dir", str(node.state_dir), "--log-dir",
            str(node.log_dir), "--run-dir", str(node.run_dir), "release", "switch", release,
            "--timeout", str(timeout)]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout * 3,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
                       check=False)
    return r, time.monotonic() - t0


def _steady_ping(cp, qdhcp: str, ip: str, log: Path, seconds: int) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", qdhcp, "ping", "-n", "-i", "0.2", "-w",
                             str(seconds), ip], stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _last_round(cp, sid: str) -> int:
    return max((n for n, _k, _v in tb._guest_lines(cp, sid)), default=0)


def test_switch_with_a_vm_then_a_broken_release_rolls_back(upgrade_node, release_root):
    from hvtestcloud import boot

    store, ids, figures = release_root
    node, cp = upgrade_node, upgrade_node.cp
    notes = node.notes
    notes.update(figures)
    node.all_ready(300)
    status = node.status_full()
    assert status["release"] == ids["old"], status["release"]
    t_up = time.time()
    tb.wait_until_up(cp, t_up)
    node.network_id = boot.ensure_network(cp)
    booted = boot.boot(cp, tb.HOST, node.image_id, node.network_id, timeout=240,
                       log=lambda msg: print(f"upgrade test: {msg}", flush=True))
    sid, ip = booted.server_id, booted.fixed_ip
    tb._fresh_round(cp, sid, 0, ip, 240, node)
    qemu = tb._qemu_pid(sid)
    assert qemu is not None
    qdhcp = f"qdhcp-{node.network_id}"
    old_version, _ = _compute_service(cp, tb.HOST)

    # --- 2026.1 -> 2026.2, the VM running -------------------------------------------------
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    gate = ["ip", "netns", "exec", cp.ns.name, sys.executable,
            str(REPO / "tests" / "e2e" / "upgrade_gate.py"), tb.HOST, str(cp.nova_db),
            cp.url(cp.neutron_port), str(old_version + 1), since]
    before_round = _last_round(cp, sid)
    ping_log = node.root / "ping-switch.log"
    ping = _steady_ping(cp, qdhcp, ip, ping_log, 600)
    try:
        r, took = _switch(node, store, ids["new"], 600, gate)
    finally:
        ping.terminate()
        ping.wait(10)
    notes["switch_to_serving_s"] = round(took, 1)
    notes["ping_through_switch"] = tb._ping_gaps(ping_log, 0.2)
    assert r.returncode == 0, r.stdout + r.stderr + tb._agent_log_tail(
        node.log_dir / "neutron-openvswitch-agent.log")
    assert "upgrade_gate_command" in r.stdout
    status = node.status_full()
    assert status["release"] == ids["new"]
    assert store.link("current") == ids["new"] and store.link("previous") == ids["old"]
    assert tb._qemu_pid(sid) == qemu, "the switch must not touch the VM"
    new_version, _ = _compute_service(cp, tb.HOST)
    notes["nova_compute_service_version"] = [old_version, new_version]
    assert new_version > old_version
    assert store.get(ids["new"]).dist_version("nova") == "34.0.0"
    after = tb._fresh_round(cp, sid, before_round, ip, 300, node)  # DHCP + metadata again
    notes["first_round_after_switch"] = after
    assert notes["ping_through_switch"]["received"] > 0

    # --- 2026.2 -> a release whose OVS agent cannot start: rolled back by itself ----------
    r, took = _switch(node, store, ids["broken"], 300)
    notes["broken_switch_to_rollback_s"] = round(took, 1)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "rolled back" in r.stderr and "neutron-openvswitch-agent" in r.stderr, r.stderr
    assert store.link("current") == ids["new"]
    assert "neutron-openvswitch-agent" in store.get(ids["broken"]).bad
    status = node.all_ready(300)
    assert node.status_full()["release"] == ids["new"]
    assert tb._qemu_pid(sid) == qemu, "the rollback must not touch the VM"
    tb._fresh_round(cp, sid, _last_round(cp, sid), ip, 300, node)
    listed = subprocess.run([str(store.root / "current" / "bin" / "hvsupervisor"), "release",
                             "--root", str(store.root), "list", "--format", "json"],
                            capture_output=True, text=True, check=True).stdout
    roles = {r["id"]: (r["role"], bool(r["bad"])) for r in json.loads(listed)["releases"]}
    assert roles[ids["new"]] == ("current", False) and roles[ids["broken"]][1]
    boot.delete(cp, sid)
    print(f"upgrade test notes: {json.dumps(notes)}")
