"""The "can receive a live/cold migration" verdicts (host/migration.py): one test per reason.

Pure: facts in, (status, detail) out. The probe that gathers the facts on a
real libvirtd is tests/functional/test_migration_check.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from hvsupervisor.host import migration as mig

CFG = mig.MigrationConfig(virt_type="kvm", inbound_addr="10.0.0.5", host="node1")
# Everything a source needs is there.
GOOD = mig.MigrationFacts(resolved=("10.0.0.5",), local=("10.0.0.5",), listening=True,
                          answer="QEMU 7.2.0, libvirt 9.0.0", ports_taken=0)


def verdict(cfg=CFG, **facts):
    return mig.live_migration_verdict(cfg, dataclasses.replace(GOOD, **facts))


def test_all_there_is_ok_and_names_the_uri_and_port_range():
    status, detail = verdict()
    assert status == "ok"
    assert "qemu+tcp://10.0.0.5/system answers (QEMU 7.2.0, libvirt 9.0.0)" in detail
    assert "ports 49152-49215 (64 free)" in detail


def test_virt_type_without_live_migration_fails():
    status, detail = verdict(dataclasses.replace(CFG, virt_type="lxc"))
    assert status == "fail" and "virt_type = lxc" in detail


def test_tunnelled_and_native_tls_together_fail():
    status, detail = verdict(dataclasses.replace(CFG, tunnelled=True, native_tls=True))
    assert status == "fail" and "refuses to start" in detail


def test_no_target_at_all_fails():
    status, detail = verdict(dataclasses.replace(CFG, inbound_addr=None, host=""))
    assert status == "fail" and "unset" in detail


def test_scheme_without_a_known_port_fails():
    status, detail = verdict(dataclasses.replace(CFG, scheme="rdma"))
    assert status == "fail" and "qemu+rdma://10.0.0.5/system" in detail


def test_inbound_address_that_does_not_resolve_fails_with_the_resolver_error():
    cfg = dataclasses.replace(CFG, inbound_addr=None, host="nosuch.example")
    status, detail = verdict(cfg, resolved=(), resolve_error="Name or service not known")
    assert status == "fail"
    assert "nosuch.example ([DEFAULT] host (live_migration_inbound_addr unset))" in detail
    assert "does not resolve here: Name or service not known" in detail


def test_inbound_address_not_of_this_host_fails():
    status, detail = verdict(resolved=("10.0.0.5",), local=())
    assert status == "fail"
    assert "10.0.0.5, not an address of this host" in detail


def test_libvirtd_not_listening_fails_with_the_socket_unit_to_enable():
    status, detail = verdict(listening=False)
    assert status == "fail"
    assert "libvirtd does not listen on 10.0.0.5:16509" in detail
    assert "libvirtd-tcp.socket" in detail


def test_tls_scheme_not_listening_names_the_tls_port_and_unit():
    status, detail = verdict(dataclasses.replace(CFG, scheme="tls"), listening=False)
    assert status == "fail" and "10.0.0.5:16514" in detail and "libvirtd-tls.socket" in detail


def test_listener_that_is_no_libvirtd_for_us_fails_with_libvirts_error():
    status, detail = verdict(answer_error="authentication failed: no SASL mechanism")
    assert status == "fail"
    assert detail == ("qemu+tcp://10.0.0.5/system does not answer as a libvirtd: "
                      "authentication failed: no SASL mechanism")


def test_native_tls_without_qemu_certificates_fails():
    cfg = dataclasses.replace(CFG, scheme="tls", native_tls=True)
    status, detail = verdict(cfg, tls_dir="/etc/pki/qemu",
                             tls_missing=("server-cert.pem", "server-key.pem"))
    assert status == "fail"
    assert "missing in /etc/pki/qemu: server-cert.pem, server-key.pem" in detail


def test_unreadable_port_range_fails():
    status, detail = verdict(port_range_error="qemu.conf migration_port_min/max 9-1 is "
                                              "not a port range")
    assert status == "fail" and "9-1" in detail


def test_every_migration_port_taken_fails():
    status, detail = verdict(port_range=(49152, 49153), ports_taken=2)
    assert status == "fail" and "all 2 migration ports 49152-49153" in detail


def test_tunnelled_needs_no_port_range():
    status, detail = verdict(dataclasses.replace(CFG, tunnelled=True), ports_taken=64)
    assert status == "ok" and "tunnelled through libvirtd" in detail


def test_loopback_inbound_address_is_a_warning():
    cfg = dataclasses.replace(CFG, inbound_addr="127.0.0.1")
    status, detail = verdict(cfg, resolved=("127.0.0.1",), local=("127.0.0.1",))
    assert status == "warn" and "loopback address: only this host can reach it" in detail


def test_deprecated_live_migration_uri_is_a_warning_and_is_used():
    cfg = dataclasses.replace(CFG, uri_template="qemu+tcp://%s:16600/system")
    assert mig.connect_uri(cfg) == "qemu+tcp://10.0.0.5:16600/system"
    status, detail = verdict(cfg)
    assert status == "warn" and "live_migration_uri is deprecated" in detail


@pytest.mark.parametrize(("cfg", "uri"), [
    (mig.MigrationConfig(host="node1"), "qemu+tcp://node1/system"),
    (mig.MigrationConfig(host="node1", inbound_addr="10.1.1.1", scheme="tls"),
     "qemu+tls://10.1.1.1/system"),
    (mig.MigrationConfig(virt_type="qemu", inbound_addr="fd00::5"), "qemu+tcp://[fd00::5]/system"),
    (mig.MigrationConfig(virt_type="parallels", host="n"), "parallels+tcp://n/system"),
    (mig.MigrationConfig(virt_type="xen", host="n"), None),
])
def test_connect_uri_follows_novas_rule(cfg, uri):
    assert mig.connect_uri(cfg) == uri


def test_uri_endpoint_default_ports():
    assert mig.uri_endpoint("qemu+tcp://h/system") == ("tcp", "h", 16509)
    assert mig.uri_endpoint("qemu+tls://h/system") == ("tls", "h", 16514)
    assert mig.uri_endpoint("qemu+ssh://h/system") == ("ssh", "h", 22)
    assert mig.uri_endpoint("qemu+tcp://[fd00::5]:1/system") == ("tcp", "fd00::5", 1)


def test_config_from_interpolates_my_ip_and_defaults_host():
    files = {("libvirt", "live_migration_inbound_addr"): "$my_ip",
             ("libvirt", "live_migration_with_native_tls"): "True",
             ("libvirt", "migration_inbound_addr"): "%s.migration"}
    cfg = mig.config_from(lambda s, o: files.get((s, o)), "node7", "192.0.2.7")
    assert cfg.inbound_addr == "192.0.2.7" and cfg.host == "node7"
    assert cfg.native_tls and not cfg.tunnelled and cfg.virt_type == "kvm"
    assert cfg.cold_inbound_addr == "node7.migration"
    files[("DEFAULT", "my_ip")] = "10.9.9.9"
    cfg = mig.config_from(lambda s, o: files.get((s, o)), "node7", "192.0.2.7")
    assert cfg.inbound_addr == "10.9.9.9"
    del files[("libvirt", "migration_inbound_addr")]
    assert mig.config_from(lambda s, o: files.get((s, o)), "n", "x").cold_inbound_addr == \
        "10.9.9.9"


# /proc/net/tcp and tcp6 lines as the kernel writes them (little-endian words).
TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 0100007F:40FD 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0100007F:40FD 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
"""
TCP6 = """  sl  local_address                         remote_address                        st
   0: 00000000000000000000000000000000:C001 00000000000000000000000000000000:0000 0A
   1: 0000000000000000FFFF00000500000A:C002 00000000000000000000000000000000:0000 0A
"""


def test_parse_listeners_reads_listening_sockets_only():
    assert mig.parse_listeners(TCP) == [("127.0.0.1", 16637), ("0.0.0.0", 22)]
    assert mig.parse_listeners(TCP6) == [("::", 49153), ("10.0.0.5", 49154)]


def test_listens_on_counts_wildcards_and_v4_mapped():
    table = mig.parse_listeners(TCP) + mig.parse_listeners(TCP6)
    assert mig.listens_on(table, "127.0.0.1", 16637)
    assert not mig.listens_on(table, "10.0.0.5", 16637)
    assert mig.listens_on(table, "10.0.0.5", 22)       # 0.0.0.0
    assert mig.listens_on(table, "10.0.0.5", 49154)    # an IPv6 socket on ::ffff:10.0.0.5
    assert mig.listens_on(table, "fd00::1", 49153)     # ::
    assert not mig.listens_on(table, "fd00::1", 22)
    assert mig.taken_in_range(table, 49152, 49215) == 2


def test_qemu_conf_port_range_and_tls_dir():
    conf = mig.parse_qemu_conf('# c\nmigration_port_min = 50000\nmigration_port_max=50009 # x\n'
                               'default_tls_x509_cert_dir = "/etc/pki/q"\n')
    assert mig.port_range(conf) == ((50000, 50009), "")
    assert mig.qemu_tls_dir(conf) == "/etc/pki/q"
    assert mig.port_range({}) == ((49152, 49215), "")
    assert mig.qemu_tls_dir({}) == "/etc/pki/qemu"
    assert mig.port_range({"migration_port_min": "x"})[1].startswith("qemu.conf: ")
    assert "not a port range" in mig.port_range({"migration_port_min": "9",
                                                 "migration_port_max": "1"})[1]


COLD = mig.ColdMigrationFacts(addr="10.0.0.5", local=True, sshd=True, user="nova",
                              login_shell="/bin/sh", home="/var/lib/hvsupervisor/nova",
                              authorized_keys=True)


@pytest.mark.parametrize(("change", "expect"), [
    ({}, "ok"),
    ({"local": False}, "not an address of this host"),
    ({"local": False, "resolve_error": "Name or service not known"},
     "does not resolve here: Name or service not known"),
    ({"sshd": False}, "no sshd listens on 10.0.0.5:22"),
    ({"login_shell": "/usr/sbin/nologin"}, "usermod -s /bin/sh nova"),
    ({"login_shell": ""}, "login shell is unset"),
    ({"authorized_keys": False}, "/var/lib/hvsupervisor/nova/.ssh/authorized_keys missing"),
])
def test_cold_migration_reasons(change, expect):
    status, detail = mig.cold_migration_verdict(dataclasses.replace(COLD, **change))
    if expect == "ok":
        assert status == "ok" and "ssh as nova to 10.0.0.5:22" in detail
    else:
        assert status == "warn" and expect in detail
