"""The host gates against real daemons: a private ovsdb-server (+ vswitchd on the
userspace datapath) and a private libvirtd (tests/fixtures/ovs.py, libvirt.py).

Latencies are printed (run with ``-s`` to see them) and asserted loosely.
"""

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from hvsupervisor.cmd.check import check_table
from hvsupervisor.host import preflight
from hvsupervisor.host.libvirt import LibvirtGate
from hvsupervisor.host.ovsdb import OvsdbGate
from tests.fixtures.ovs import unique_bridge
from tests.hostwait import GateRunner
from tests.util import wait_until

pytestmark = pytest.mark.functional


def is_open(st):
    return st.open


def is_shut(st):
    return not st.open


@pytest.fixture
def run_gate():
    runners = []

    def start(gate):
        runner = GateRunner(gate).start()
        runners.append(runner)
        return runner

    yield start
    for r in runners:
        r.stop()


# -- ovsdb --------------------------------------------------------------------

def test_ovsdb_gate_waits_for_server_and_reopens_quickly(ovs_server, run_gate):
    ovs_server.stop()
    gate = OvsdbGate(ovs_server.remote, [])
    runner = run_gate(gate)
    _, st = runner.wait_for(is_shut, 5)
    assert st.reason == f"ovsdb {ovs_server.remote}: no such file or directory"

    # Measure the worst case: the backoff at its 0.5 s cap, as after a long outage.
    wait_until(lambda: gate.retry_delay >= 0.5, 5, "the retry backoff at its cap")
    mark = runner.mark()
    ovs_server.start(init=False)
    up = time.monotonic()
    when, st = runner.wait_for(is_open, 5, after=mark)
    latency = when - up
    print(f"ovsdb gate reopen latency after ovsdb-server start: {latency:.3f} s")
    assert latency < 1.0
    assert st.reason.startswith(f"ovsdb {ovs_server.remote}: connected")

    mark = runner.mark()
    down = time.monotonic()
    ovs_server.stop()
    when, st = runner.wait_for(is_shut, 5, after=mark)
    print(f"ovsdb gate shut latency after ovsdb-server stop: {when - down:.3f} s")
    assert "connection lost" in st.reason


def test_ovsdb_gate_connection_refused_reason(tmp_path, run_gate):
    import socket

    path = tmp_path / "db.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # bound, never listening: connect() is refused
    try:
        st = OvsdbGate(f"unix:{path}", []).probe()
    finally:
        s.close()
    assert st.reason == f"ovsdb unix:{path}: connection refused"


def test_missing_bridge_is_reported_by_name_and_followed(ovs_server, run_gate):
    br = unique_bridge()
    runner = run_gate(OvsdbGate(ovs_server.remote, [br]))
    _, st = runner.wait_for(is_shut, 5)
    assert st.reason == f"ovsdb {ovs_server.remote}: missing bridge {br}"
    assert st.details["missing"] == [br]

    # The gate sees the bridge appear and disappear through the IDL monitor.
    ovs_server.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    runner.wait_for(is_open, 5)
    mark = runner.mark()
    ovs_server.vsctl("del-br", br)
    _, st = runner.wait_for(is_shut, 5, after=mark)
    assert st.reason.endswith(f"missing bridge {br}")


def test_ensure_bridges_creates_mapped_and_integration_bridges(ovs_switch, run_gate):
    ex, eth1, integ = unique_bridge("hx"), unique_bridge("he"), unique_bridge("hi")
    gate = OvsdbGate(ovs_switch.remote, [ex, eth1], ensure=True, datapath_type="netdev",
                     integration_bridge=integ)
    t0 = time.monotonic()
    runner = run_gate(gate)
    when, _ = runner.wait_for(is_open, 10)
    print(f"ovsdb gate open with 3 bridges created: {when - t0:.3f} s")
    assert set(ovs_switch.list_br()) >= {ex, eth1, integ}
    for br in (ex, eth1, integ):
        assert ovs_switch.vsctl("get", "bridge", br, "datapath_type").strip() == "netdev"
    # vswitchd picked them up on the userspace datapath.
    wait = subprocess.run(["ovs-appctl", "-t", str(ovs_switch.root / "ovs-vswitchd.ctl"),
                           "dpif/show"], capture_output=True, text=True, timeout=10)
    assert ex in wait.stdout


def test_probe_does_not_create_bridges(ovs_server):
    br = unique_bridge()
    st = OvsdbGate(ovs_server.remote, [br], ensure=True, datapath_type="netdev").probe()
    assert not st.open and st.details["missing"] == [br]
    assert br not in ovs_server.list_br()


# -- libvirt ------------------------------------------------------------------

def test_libvirt_gate_opens_and_reports_hypervisor(libvirtd, run_gate):
    runner = run_gate(LibvirtGate(libvirtd.uri))
    _, st = runner.wait_for(is_open, 30)
    assert st.details["hypervisor"] == "QEMU"
    assert "qemu" in st.details["domain_types"]
    assert st.reason.startswith(f"libvirt {libvirtd.uri}: QEMU ")
    print(f"libvirt gate: {st.reason}")


def test_libvirt_gate_follows_libvirtd_going_away_and_back(libvirtd, run_gate):
    runner = run_gate(LibvirtGate(libvirtd.uri))
    runner.wait_for(is_open, 30)

    mark = runner.mark()
    killed = time.monotonic()
    libvirtd.stop(signal.SIGKILL)
    when, st = runner.wait_for(is_shut, 5, after=mark)
    print(f"libvirt gate shut {when - killed:.3f} s after SIGKILL: {st.reason}")
    assert st.reason.startswith(f"libvirt {libvirtd.uri}: ")

    mark = runner.mark()
    took = libvirtd.start()
    up = time.monotonic()
    when, st = runner.wait_for(is_open, 10, after=mark)
    print(f"libvirtd restart took {took:.2f} s; gate reopened {when - up:.3f} s after")
    assert when - up < 1.0
    assert st.details["hypervisor"] == "QEMU"


def test_libvirt_probe_reason_when_socket_missing(tmp_path):
    uri = f"qemu+unix:///system?socket={tmp_path}/none"
    st = LibvirtGate(uri).probe()
    assert not st.open
    assert st.reason == (
        f"libvirt {uri}: Failed to connect socket to '{tmp_path}/none': No such file or directory")


# -- check rows -----------------------------------------------------------------

def failing(rows):
    return {(r.name, r.detail) for r in rows if r.status == "fail"}


def test_check_rows_fail_precisely_for_each_fault(libvirtd, ovs_server, tmp_path):
    br = unique_bridge()
    ovs_server.vsctl("add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    confd = tmp_path / "nova.conf.d"
    confd.mkdir()
    (confd / "10-ok.conf").write_text("[DEFAULT]\n")

    def run(**over):
        kw = dict(libvirt_uri=libvirtd.uri, ovsdb=(ovs_server.remote, [br]),
                  dirs=[("state_dir", str(state))], confd_dirs=[str(confd)], netns=False)
        kw.update(over)
        return preflight.run_checks(**kw)

    healthy = run(netns=True)
    assert failing(healthy) == set(), check_table(healthy)
    assert [r.name for r in healthy] == ["libvirt", "kvm", "ovsdb", "bridges", "netns",
                                         "dir state_dir"]
    assert preflight.all_ok(healthy)

    bad_uri = f"qemu+unix:///system?socket={tmp_path}/gone"
    assert {n for n, _ in failing(run(libvirt_uri=bad_uri))} == {"libvirt"}

    assert failing(run(ovsdb=(ovs_server.remote, [br, "br-nothere"]))) == {
        ("bridges", "missing bridge br-nothere")}
    assert {r.status for r in run(ovsdb=(ovs_server.remote, ["br-nothere"]),
                                  ensure_bridges=True) if r.name == "bridges"} == {"warn"}

    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    assert {n for n, _ in failing(run(dirs=[("log_dir", str(loose))]))} == {"dir log_dir"}

    (confd / "20-typo.conf.bak").write_text("[DEFAULT]\n")
    rows = run()
    assert failing(rows) == set()
    assert [r.detail for r in rows if r.name == "conf.d"] == [
        f"{confd}/20-typo.conf.bak is ignored by oslo.config (not *.conf)"]

    ovs_server.stop()
    rows = run()
    assert failing(rows) == {("ovsdb", f"ovsdb {ovs_server.remote}: no such file or directory")}
    assert [r.status for r in rows if r.name == "bridges"] == ["warn"]


def test_dir_not_writable_by_us_fails():
    # A non-root identity is needed to see "not writable": run the check as nobody,
    # with a python nobody may execute (the dev venv lives under /root).
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    repo = str(pathlib.Path(__file__).resolve().parents[2])
    target = pathlib.Path(tempfile.mkdtemp(prefix="hvcheck-"))
    try:
        os.chmod(target, 0o755)
        code = ("import sys; sys.path.insert(0, sys.argv[2]); "
                "from hvsupervisor.host.preflight import check_dir; "
                "r = check_dir('state_dir', sys.argv[1]); print(r.status, r.detail)")
        try:
            res = subprocess.run([python, "-c", code, str(target), repo], capture_output=True,
                                 text=True, timeout=30, user=65534, cwd="/", check=False)
        except PermissionError as exc:
            pytest.skip(f"nobody cannot run {python} here: {exc}")
        if res.returncode != 0:
            pytest.skip(f"cannot run the check as nobody: {res.stderr.strip()[-200:]}")
        assert res.stdout.strip() == f"fail {target} is not writable by uid 65534"
    finally:
        target.rmdir()


def test_netns_check_leaves_nothing_behind():
    before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    row = preflight.check_netns()
    after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert row.status == "ok", row.detail
    assert "hvcheck-" not in after.replace(before, "")
