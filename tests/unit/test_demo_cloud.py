"""Pure parts of the demo cloud: the guest image builder, the identity filter, paste rewrite."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest
from hvtestcloud import cloud, fake_keystone, guest


def _cpio_entries(data: bytes) -> dict[str, tuple[int, bytes]]:
    """Parse a newc archive: name -> (mode, data)."""
    out, pos = {}, 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        fields = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        pos += 110
        name = data[pos:pos + namesize - 1].decode()
        pos += namesize + (-(110 + namesize) % 4)
        body = data[pos:pos + size]
        pos += size + (-size % 4)
        if name == "TRAILER!!!":
            return out
        out[name] = (mode, body)


def _fake_kernel(tmp_path: Path) -> tuple[Path, Path]:
    boot, mods = tmp_path / "boot", tmp_path / "modules"
    rel = mods / "6.1.0-9-amd64"
    (rel / "kernel").mkdir(parents=True)
    boot.mkdir()
    (boot / "vmlinuz-6.1.0-9-amd64").write_bytes(b"kernel")
    (boot / "vmlinuz-5.0-gone").write_bytes(b"no modules dir")
    (rel / "modules.dep").write_text(
        "kernel/virtio_net.ko.xz: kernel/net_failover.ko kernel/failover.ko "
        "kernel/virtio_ring.ko\n"
        "kernel/net_failover.ko: kernel/failover.ko\n"
        "kernel/failover.ko:\n"
        "kernel/virtio_ring.ko:\n"
        "kernel/virtio_pci.ko: kernel/virtio_ring.ko\n")
    for name in ("net_failover.ko", "failover.ko", "virtio_ring.ko", "virtio_pci.ko"):
        (rel / "kernel" / name).write_bytes(b"\x7fELF " + name.encode())
    (rel / "kernel" / "virtio_net.ko.xz").write_bytes(lzma.compress(b"\x7fELF virtio_net"))
    return boot, mods


def test_modules_come_after_their_dependencies(tmp_path):
    _boot, mods = _fake_kernel(tmp_path)
    order = guest.module_order(mods / "6.1.0-9-amd64")
    names = [Path(m).name for m in order]
    assert names == ["virtio_ring.ko", "virtio_pci.ko", "failover.ko", "net_failover.ko",
                     "virtio_net.ko.xz"]
    with pytest.raises(FileNotFoundError, match="virtio_blk"):
        guest.module_order(mods / "6.1.0-9-amd64", ("virtio_blk",))


def test_host_kernel_needs_its_modules(tmp_path):
    boot, mods = _fake_kernel(tmp_path)
    kernel, moddir = guest.host_kernel(boot, mods)
    assert kernel.name == "vmlinuz-6.1.0-9-amd64" and moddir.name == "6.1.0-9-amd64"
    with pytest.raises(FileNotFoundError, match="linux-image-amd64"):
        guest.host_kernel(boot, tmp_path / "none")


def test_initramfs_has_init_console_busybox_and_plain_modules(tmp_path, monkeypatch):
    boot, mods = _fake_kernel(tmp_path)
    bb = tmp_path / "busybox"
    bb.write_bytes(b"busybox-binary")
    monkeypatch.setattr(guest, "BUSYBOX", bb)
    monkeypatch.setattr(guest, "host_kernel", lambda: (boot / "vmlinuz-6.1.0-9-amd64",
                                                        mods / "6.1.0-9-amd64"))
    image = guest.build(tmp_path / "out")
    entries = _cpio_entries(gzip.decompress(image.ramdisk.read_bytes()))
    assert entries["dev/console"][0] == 0o020600
    assert entries["init"][0] == 0o100755 and b"csum=0 gso=0" in entries["init"][1]
    assert b"timeout 10 wget" in entries["init"][1] and b"wget -T" not in entries["init"][1]
    assert entries["bin/busybox"][1] == b"busybox-binary"
    assert entries["lib/modules/virtio_net.ko"][1] == b"\x7fELF virtio_net"  # decompressed
    order = entries["modules.order"][1].decode().split()
    assert order[-1] == "/lib/modules/virtio_net.ko"


def test_console_lines_parse():
    text = ("[    1.0] virtio_net\r\nhvsup-guest n=1 ip=10.77.0.5\r\n"
            "hvsup-guest n=1 uuid=0b6f-aa\r\nhvsup-guest n=2 dhcp=failed\r\n")
    assert guest.parse_console(text) == [(1, "ip", "10.77.0.5"), (1, "uuid", "0b6f-aa"),
                                         (2, "dhcp", "failed")]


def test_identity_headers_admin_and_user():
    admin = fake_keystone.identity_headers({"HTTP_X_AUTH_TOKEN": "admin"})
    assert admin["HTTP_X_ROLES"] == "admin,member,reader,service"
    assert admin["HTTP_X_PROJECT_ID"] == "admin" and admin["HTTP_X_IDENTITY_STATUS"] == "Confirmed"
    user = fake_keystone.identity_headers({"HTTP_X_AUTH_TOKEN": "t1", "HTTP_X_PROJECT_ID": "p1"})
    assert user["HTTP_X_ROLES"] == "member,reader" and user["HTTP_X_PROJECT_ID"] == "p1"
    seen = {}
    app = fake_keystone.filter_factory({}, delay_auth_decision="true")(
        lambda environ, start: seen.update(environ) or [b""])
    app({}, None)
    assert seen["HTTP_X_USER_ID"] == "admin"


def test_paste_rewrite_replaces_authtoken_only(tmp_path):
    shipped = tmp_path / "api-paste.ini"
    shipped.write_text("[filter:authtoken]\n"
                       "paste.filter_factory = keystonemiddleware.auth_token:filter_factory\n"
                       "delay_auth_decision = true\n[filter:context]\npaste.filter_factory = x\n")
    out = cloud.keystone_free_paste(shipped, tmp_path / "out" / "api-paste.ini").read_text()
    assert "hvtestcloud.fake_keystone:filter_factory" in out
    assert "keystonemiddleware" not in out and "delay_auth_decision = true" in out
    shipped.write_text("[pipeline:x]\n")
    with pytest.raises(RuntimeError, match="no authtoken"):
        cloud.keystone_free_paste(shipped, tmp_path / "o2")


def test_sqlite_immediate_takes_the_write_lock_at_begin(tmp_path):
    """oslo.db sends a plain BEGIN; under the demo cloud's hook it holds the
    write lock from there, so a second writer waits (busy timeout) instead of
    failing at once with SQLITE_BUSY_SNAPSHOT later."""
    import sqlite3

    from hvtestcloud import sqlite_immediate

    db = tmp_path / "x.sqlite"
    a = sqlite_immediate.connect(db, timeout=5, isolation_level=None)
    a.execute("pragma journal_mode=wal")
    a.execute("create table t (x)")
    cur = a.cursor()
    cur.execute("BEGIN")
    cur.execute("select * from t").fetchall()
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        other.execute("BEGIN IMMEDIATE")
    cur.execute("insert into t values (1)")
    cur.execute("COMMIT")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")


def test_sqlite_immediate_runs_a_script_with_its_argv(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "daemon"
    script.write_text("import sqlite3, sys\n"
                      "c = sqlite3.dbapi2.connect(':memory:')\n"
                      "print(type(c).__name__, sqlite3.connect is sqlite3.dbapi2.connect, "
                      "sys.argv[1:])\n")
    r = subprocess.run([sys.executable, "-m", "hvtestcloud.sqlite_immediate", str(script),
                        "--config-file", "f"], capture_output=True, text=True, check=True,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.stdout.strip() == "ImmediateConnection True ['--config-file', 'f']"


def test_external_network_maps_a_second_physnet_the_supervisor_makes_its_bridge(tmp_path):
    """The boot test's router: extnet on br-ex in the OVS agent's mappings (so
    ``ensure_bridges`` makes br-ex too) and in ML2's flat networks."""
    import configparser

    from hvtestcloud.services import Netns

    from hvsupervisor.host.ovsdb import ovsdb_settings

    cp = cloud.ControlPlane(tmp_path / "cloud", Netns("hvsup-x"), Path("/v/bin"), Path("/v"))

    def ovs_of(**kw) -> tuple[str, list[str], str, str]:
        paths = cloud.node_snippets(cp, tmp_path / kw.pop("dir"), "h", **kw)
        ini = configparser.ConfigParser()
        ini.read(next(p for p in paths if "neutron.conf.d" in str(p)))
        return ovsdb_settings(lambda sec, opt: ini.get(sec, opt, fallback=None))

    assert ovs_of(dir="a", flat_network=True)[1] == [cloud.PHYS_BRIDGE]
    _, bridges, datapath, _ = ovs_of(dir="b", flat_network=True, external_network=True)
    assert bridges == [cloud.PHYS_BRIDGE, cloud.EXT_BRIDGE]
    assert datapath == "netdev"
    server = configparser.ConfigParser()
    server.read(cloud._neutron_server_conf(cp))
    assert server.get("ml2_type_flat", "flat_networks").split(",") == [
        cloud.PHYSNET, cloud.EXT_PHYSNET]
