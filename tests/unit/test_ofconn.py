"""host/ofconn.py's pure parts: controller targets and /proc/net/tcp rows."""

from __future__ import annotations

from hvsupervisor.host.ofconn import established, parse_target

HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
          "timeout inode\n")


def row(local: str, remote: str, state: str, inode: str) -> str:
    return (f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000   993"
            f"        0 {inode} 1 0000000000000000 20 4 30 10 -1\n")


def test_parse_target():
    assert parse_target("tcp:127.0.0.1:6633") == ("127.0.0.1", 6633)
    assert parse_target("tcp:[::1]:6633") == ("::1", 6633)
    assert parse_target("ptcp:6633") is None
    assert parse_target("unix:/run/x.sock") is None


def test_established_on_the_controller_port_only():
    table = HEADER + "".join([
        row("0100007F:19E9", "00000000:0000", "0A", "100"),  # the listener: not a connection
        row("0100007F:19E9", "0100007F:D431", "01", "200"),  # vswitchd connected to 6633
        row("0100007F:D431", "0100007F:19E9", "01", "300"),  # the other end (vswitchd's)
        row("0100007F:1628", "0100007F:9C40", "01", "400"),  # rabbit, 5672: another port
        row("0100007F:19E9", "0100007F:D432", "06", "500"),  # TIME_WAIT of a killed agent
    ])
    assert established(table, ("127.0.0.1", 6633)) == {"200"}
    assert established(table, ("0.0.0.0", 6633)) == {"200"}
    assert established(table, ("127.0.0.2", 6633)) == set()


def test_ipv6_table():
    v6 = "00000000000000000000000001000000:19E9"  # ::1
    table = HEADER + row(v6, "00000000000000000000000001000000:D431", "01", "7")
    assert established(table, ("::1", 6633)) == {"7"}
