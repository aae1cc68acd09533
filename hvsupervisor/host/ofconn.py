"""Is ovs-vswitchd connected to *this* process's OpenFlow controller? Asked of the kernel.

The neutron OVS agent points its bridge at its own controller (os-ken,
listening on ``tcp:127.0.0.1:6633``) and ovs-vswitchd connects to it. ovsdb's
Controller.is_connected and status:sec_since_connect say so only when
ovs-vswitchd next refreshes its status rows, measured 4-5 s after the
connection (doc/upstream-behaviour.md section 16). The kernel knows at once:
the agent holds an ESTABLISHED TCP socket whose local address is the
controller's. Owned by the agent's pid (its /proc/PID/fd), so a killed
predecessor's connection never counts.

``parse_target`` and ``established`` are pure; ``connected`` reads /proc.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

ESTABLISHED = "01"  # include/net/tcp_states.h TCP_ESTABLISHED


def parse_target(target: str) -> tuple[str, int] | None:
    """``tcp:HOST:PORT`` -> (HOST, PORT) for an active controller target; else None."""
    kind, _, rest = target.partition(":")
    host, _, port = rest.rpartition(":")
    if kind != "tcp" or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _addr(hexaddr: str) -> tuple[str, int]:
    """/proc/net/tcp{,6} ``0100007F:19C9`` -> ("127.0.0.1", 6601)."""
    ip_hex, port_hex = hexaddr.split(":")
    raw = bytes.fromhex(ip_hex)
    # The kernel prints each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return str(ip), int(port_hex, 16)


def established(table: str, local: tuple[str, int]) -> set[str]:
    """Socket inodes of ESTABLISHED connections with local address ``local``."""
    found = set()
    for line in table.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 10 or cols[3] != ESTABLISHED:
            continue
        try:
            addr = _addr(cols[1])
        except ValueError:
            continue
        if addr[1] == local[1] and (addr[0] == local[0] or local[0] in ("0.0.0.0", "::")):
            found.add(cols[9])
    return found


def socket_inodes(pid: int) -> set[str]:
    """The socket inodes ``pid`` holds (its fd table, shared by its threads)."""
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def connected(pid: int, targets: Iterable[str]) -> bool:
    """Does ``pid`` hold an established connection on one of the controller ``targets``?"""
    locals_ = [t for t in map(parse_target, targets) if t is not None]
    if not locals_:
        return False
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{name}") as fh:  # the agent's own netns
                table = fh.read()
        except OSError:
            continue
        for local in locals_:
            inodes |= established(table, local)
    return bool(inodes and inodes & socket_inodes(pid))
