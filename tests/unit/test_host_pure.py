"""The pure parts of the host gates: URI and settings derivation, capabilities
parsing, check rows and their rendering, the watch loop's dedup and backoff."""

import asyncio
import os

import pytest

from hvsupervisor.cmd.check import check_json, check_table
from hvsupervisor.core.restart_policy import next_delay
from hvsupervisor.host import preflight
from hvsupervisor.host.gate import GateStatus
from hvsupervisor.host.libvirt import libvirt_uri, parse_capabilities
from hvsupervisor.host.ovsdb import SettingsError, ovsdb_settings, parse_bridge_mappings
from hvsupervisor.host.watch import RetryingGate


def lookup_from(values):
    return lambda section, option: values.get((section, option))


@pytest.mark.parametrize(
    ("values", "uri"),
    [
        ({}, "qemu:///system"),
        ({("libvirt", "virt_type"): "kvm"}, "qemu:///system"),
        ({("libvirt", "virt_type"): "qemu"}, "qemu:///system"),
        ({("libvirt", "virt_type"): "lxc"}, "lxc:///"),
        ({("libvirt", "virt_type"): "xen"}, "xen:///"),
        ({("libvirt", "virt_type"): "uml"}, "uml:///system"),
        ({("libvirt", "virt_type"): "parallels"}, "parallels:///system"),
        ({("libvirt", "virt_type"): "lxc", ("libvirt", "connection_uri"): "qemu+tcp://h/system"},
         "qemu+tcp://h/system"),
        ({("libvirt", "connection_uri"): ""}, "qemu:///system"),
    ],
)
def test_libvirt_uri_follows_nova(values, uri):
    assert libvirt_uri(lookup_from(values)) == uri


CAPS = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
<guest><os_type>hvm</os_type><arch name='i686'><domain type='qemu'/></arch></guest>
<guest><os_type>hvm</os_type><arch name='x86_64'><domain type='qemu'/><domain type='kvm'/>
</arch></guest></capabilities>"""


def test_parse_capabilities_reports_domain_types_and_kvm():
    caps = parse_capabilities(CAPS)
    assert caps["arch"] == "x86_64"
    assert caps["domain_types"] == ["qemu", "kvm"]
    assert caps["kvm"] is True
    tcg_only = parse_capabilities(CAPS.replace("<domain type='kvm'/>", ""))
    assert tcg_only["kvm"] is False and tcg_only["domain_types"] == ["qemu"]


def test_ovsdb_settings_defaults_are_neutrons():
    assert ovsdb_settings(lookup_from({})) == ("tcp:127.0.0.1:6640", [], "system", "br-int")


def test_ovsdb_settings_reads_mappings_in_order_without_duplicates():
    values = {
        ("ovs", "ovsdb_connection"): "unix:/run/openvswitch/db.sock",
        ("ovs", "bridge_mappings"): " physnet1:br-ex, physnet2:br-eth1 ,physnet3:br-ex,",
        ("ovs", "datapath_type"): "netdev",
        ("ovs", "integration_bridge"): "br-int2",
    }
    assert ovsdb_settings(lookup_from(values)) == (
        "unix:/run/openvswitch/db.sock", ["br-ex", "br-eth1"], "netdev", "br-int2")


@pytest.mark.parametrize("bad", ["br-ex", "physnet1:", ":br-ex", "p:br-a,p:br-b"])
def test_bad_bridge_mappings_name_the_option(bad):
    with pytest.raises(SettingsError, match=r"\[ovs\] bridge_mappings"):
        parse_bridge_mappings(bad)


def test_bad_ovsdb_connection_names_the_option():
    with pytest.raises(SettingsError, match=r"\[ovs\] ovsdb_connection"):
        ovsdb_settings(lookup_from({("ovs", "ovsdb_connection"): "/run/db.sock"}))


def test_render_table_and_json():
    rows = [preflight.CheckRow("libvirt", "ok", "libvirt qemu:///system: QEMU 7.2.0"),
            preflight.CheckRow("bridges", "fail", "missing bridge br-ex"),
            preflight.CheckRow("kvm", "warn", "/dev/kvm absent")]
    assert check_table(rows).splitlines() == [
        "check    status  detail",
        "-------  ------  ----------------------------------",
        "libvirt  OK      libvirt qemu:///system: QEMU 7.2.0",
        "bridges  FAIL    missing bridge br-ex",
        "kvm      WARN    /dev/kvm absent",
    ]
    doc = check_json(rows)
    assert doc["ok"] is False
    assert doc["checks"][1] == {"name": "bridges", "status": "fail",
                                "detail": "missing bridge br-ex"}
    assert check_json(rows[::2])["ok"] is True


def test_check_dir_rows(tmp_path):
    good = tmp_path / "good"
    good.mkdir(mode=0o750)
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    afile = tmp_path / "file"
    afile.write_text("")
    assert preflight.check_dir("state_dir", str(good)).status == "ok"
    missing = preflight.check_dir("log_dir", str(tmp_path / "nope"))
    assert (missing.status, missing.name) == ("warn", "dir log_dir")
    assert str(tmp_path / "nope") in missing.detail
    row = preflight.check_dir("run_dir", str(loose))
    assert row.status == "fail" and "world-writable" in row.detail
    assert preflight.check_dir("x", str(afile)).status == "fail"


def test_confd_warns_for_each_file_oslo_ignores(tmp_path):
    for name in ("10-a.conf", "20-b.conf~", ".30-c.conf", "README", "40-d.ini"):
        (tmp_path / name).write_text("[DEFAULT]\n")
    # A directory named *.conf is not ignored by oslo (glob lists it, then
    # reading it fails): the plan refuses it, so it is the config row's, not this one's.
    (tmp_path / "sub.conf").mkdir()
    assert preflight.ignored_conf_files(str(tmp_path)) == [
        ".30-c.conf", "20-b.conf~", "40-d.ini", "README"]
    rows = preflight.check_confd(str(tmp_path))
    assert {r.status for r in rows} == {"warn"}
    assert any(str(tmp_path / "README") in r.detail for r in rows)
    assert preflight.check_confd(str(tmp_path / "absent")) == []


def test_kvm_absent_or_odd_is_a_warning_not_a_failure(tmp_path):
    assert preflight.check_kvm(str(tmp_path / "kvm")).status == "warn"
    (tmp_path / "kvm").write_text("")
    row = preflight.check_kvm(str(tmp_path / "kvm"))
    assert row.status == "warn" and "not a character device" in row.detail


def test_next_delay_doubles_and_caps():
    delays, d = [], 0.0
    for _ in range(6):
        d = next_delay(d, 0.05, 0.5)
        delays.append(d)
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]


class ScriptedGate(RetryingGate):
    """A gate whose connect results come from a script (no I/O: the loop's logic)."""

    def __init__(self, script):
        super().__init__("fake", initial_delay=0.001, max_delay=0.002)
        self.script = list(script)
        self.lost = asyncio.Event()
        self.disconnects = 0

    def probe(self):
        return self.status

    async def _connect(self):
        if not self.script:
            await asyncio.Event().wait()  # park forever
        return self.script.pop(0)

    async def _until_lost(self):
        await self.lost.wait()
        self.lost.clear()
        return GateStatus("fake", False, "fake: lost", {})

    async def _disconnect(self):
        self.disconnects += 1


def test_watch_loop_reports_changes_once_and_reopens():
    shut = GateStatus("fake", False, "fake: refused", {})
    up = GateStatus("fake", True, "fake: up", {})

    async def scenario():
        gate = ScriptedGate([shut, shut, shut, up, up])
        seen = []
        await gate.start(seen.append)
        while not gate.status.open:
            await asyncio.sleep(0.001)
        gate.lost.set()
        while len(seen) < 4:
            await asyncio.sleep(0.001)
        await gate.stop()
        await gate.stop()  # idempotent
        return [s.reason for s in seen], gate

    reasons, gate = asyncio.run(scenario())
    assert reasons == ["fake: refused", "fake: up", "fake: lost", "fake: up"]
    assert gate.disconnects >= 4


def test_libvirt_gate_without_libvirt_python(monkeypatch):
    # Simulates a host without libvirt-python (this dev venv has it installed).
    import sys

    from hvsupervisor.host.libvirt import NOT_INSTALLED, LibvirtGate

    monkeypatch.setitem(sys.modules, "libvirt", None)
    gate = LibvirtGate("qemu:///system")
    assert gate.probe().reason == NOT_INSTALLED
    assert "'libvirt'" in NOT_INSTALLED and "hvsupervisor[libvirt]" in NOT_INSTALLED
    seen = []

    async def watch():
        await gate.start(seen.append)
        await gate.stop()

    asyncio.run(watch())
    assert [(s.open, s.reason) for s in seen] == [(False, NOT_INSTALLED)]


def test_ovs_loads_without_importing_eventlet(tmp_path):
    """ovs.poller probes eventlet on import (0.45 s beside neutron): the gate blocks it.

    A stand-in ``eventlet`` package on the path records being imported, as the
    real one installed beside neutron would be."""
    import subprocess
    import sys

    fake = tmp_path / "eventlet"
    fake.mkdir()
    marker = tmp_path / "eventlet-imported"
    (fake / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    code = ("import sys\nfrom hvsupervisor.host import ovsdb\n"
            "ovsdb._import_ovs_without_green_threads()\nimport ovs.db.idl\n"
            "print('ovs.poller' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert (out.returncode, out.stdout.split()) == (0, ["True"]), out.stderr
    assert not marker.exists()
