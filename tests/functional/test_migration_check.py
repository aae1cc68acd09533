"""``check``'s "can receive a live migration" row against a real libvirtd on tcp.

A private libvirtd (testcloud/hvtestcloud/libvirtd.py) listens with qemu+tcp on a
loopback address of its own (127.x.y.z, port 16509: the port a migration URI
implies), so neither the host's libvirtd nor another test's is in the way.
The row is built from the shipped nova config plus a site snippet, exactly as
``hvsupervisor check`` builds it (cmd/check.py ``migration_rows``). Loopback
is a warning by design (only this host reaches it); a warning passes check.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

import pytest
from hvtestcloud.libvirtd import LibvirtDaemon, missing

from hvsupervisor.cmd.check import migration_rows
from hvsupervisor.cmd.common import plans_for_run
from hvsupervisor.config.settings import load_settings
from hvsupervisor.host import preflight

pytestmark = pytest.mark.functional

REPO = Path(__file__).resolve().parents[2]


def _free_loopback() -> str:
    """A 127.x.y.z on which nothing listens on 16509 (nor on the wildcard)."""
    for _ in range(50):
        addr = f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
        with socket.socket() as s:
            try:
                s.bind((addr, 16509))
            except OSError:
                continue
        return addr
    pytest.skip("no free loopback address for port 16509")


@pytest.fixture(scope="module")
def tcp_libvirtd(tmp_path_factory):
    why = missing()
    if why:
        pytest.skip(why)
    daemon = LibvirtDaemon(tmp_path_factory.mktemp("libvirt-tcp"), tcp_address=_free_loopback())
    try:
        daemon.setup()
        daemon.start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        daemon.teardown()
        pytest.skip(f"libvirtd cannot start: {exc}")
    yield daemon
    daemon.teardown()


def _row(tmp_path, libvirt: dict[str, str]) -> preflight.CheckRow:
    """The row for the shipped config plus a snippet setting ``[libvirt]`` options."""
    over = tmp_path / "over"
    snippet = over / "nova" / "nova.conf.d" / "50-site.conf"
    snippet.parent.mkdir(parents=True, exist_ok=True)
    snippet.write_text("[libvirt]\n" + "".join(f"{k} = {v}\n" for k, v in libvirt.items()))
    root = tmp_path / "hv"
    over_cat = over / "hvsupervisor.conf.d" / "50-root.conf"
    over_cat.parent.mkdir(parents=True, exist_ok=True)
    over_cat.write_text("[agent:nova-compute]\nuser = root\n")  # no nova account needed
    settings = load_settings(REPO / "etc", over, str(root / "s"), str(root / "l"),
                             str(root / "r"))
    rows = migration_rows(plans_for_run(settings))  # what `check` builds
    assert [r.name for r in rows] == ["can receive a live migration",
                                      "can receive a cold migration"]
    return rows[0]


def _site(daemon: LibvirtDaemon, **extra: str) -> dict[str, str]:
    return {"virt_type": "qemu", "connection_uri": daemon.uri,
            "live_migration_inbound_addr": daemon.tcp_address, **extra}


def test_row_passes_while_libvirtd_listens_and_fails_with_the_reason_when_not(
        tcp_libvirtd, tmp_path):
    addr = tcp_libvirtd.tcp_address
    row = _row(tmp_path, _site(tcp_libvirtd))
    print(row)
    assert preflight.all_ok([row]), row
    assert row.status == "warn"  # loopback: nothing else is wrong
    assert f"qemu+tcp://{addr}/system answers (QEMU " in row.detail
    assert "loopback address: only this host can reach it" in row.detail

    tcp_libvirtd.stop()
    try:
        row = _row(tmp_path, _site(tcp_libvirtd))
        print(row)
        assert row.status == "fail"
        assert f"libvirtd does not listen on {addr}:16509" in row.detail
        assert "libvirtd-tcp.socket" in row.detail

        # Something else on the port: the source's libvirt client gets no libvirtd.
        with socket.socket() as impostor:
            impostor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # libvirtd's TIME_WAIT
            impostor.bind((addr, 16509))
            impostor.listen()
            stop = threading.Event()

            def serve() -> None:
                impostor.settimeout(0.2)
                while not stop.is_set():
                    try:
                        conn, _ = impostor.accept()
                    except TimeoutError:
                        continue
                    conn.close()

            t = threading.Thread(target=serve, daemon=True)
            t.start()
            try:
                row = _row(tmp_path, _site(tcp_libvirtd))
            finally:
                stop.set()
                t.join(5)
        print(row)
        assert row.status == "fail"
        assert row.detail.startswith(f"qemu+tcp://{addr}/system does not answer as a libvirtd: ")
    finally:
        tcp_libvirtd.start()

    assert preflight.all_ok([_row(tmp_path, _site(tcp_libvirtd))])


def test_inbound_address_elsewhere_or_unresolvable_fails(tcp_libvirtd, tmp_path):
    row = _row(tmp_path, _site(tcp_libvirtd, live_migration_inbound_addr="192.0.2.1"))
    assert row.status == "fail"
    assert "192.0.2.1, not an address of this host" in row.detail
    row = _row(tmp_path, _site(tcp_libvirtd, live_migration_inbound_addr="nosuch.invalid"))
    assert row.status == "fail" and "does not resolve here" in row.detail


def test_native_tls_without_a_tls_listener_fails(tcp_libvirtd, tmp_path):
    row = _row(tmp_path, _site(tcp_libvirtd, live_migration_scheme="tls",
                               live_migration_with_native_tls="true"))
    assert row.status == "fail"
    assert f"libvirtd does not listen on {tcp_libvirtd.tcp_address}:16514" in row.detail
