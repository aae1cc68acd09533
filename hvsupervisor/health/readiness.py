"""Readiness probes for ``ready = tcp:HOST:PORT`` and ``unix:PATH`` agents.

A unix socket is checked without connecting: /proc/net/unix says whether a
socket bound at the path is listening (__SO_ACCEPTCON), which is exactly
"would accept". Connecting and closing at once would be read by the agent as
a request: neutron-metadata-agent logs an ERROR traceback ("Bad HTTP request
line") for every such probe. /proc/net/unix is per network namespace, and the
agent is our child in ours.

Upstream daemons' own READY=1 means "launched", not "serving", and several
send nothing (doc/upstream-behaviour.md section 3). For an agent that serves a socket, the
socket accepting a connection is the truth. The probe polls only while the
agent is starting (50 ms, growing to 1 s), and stops at the first accept or
when the agent exits; a ready node has no probe running.
"""

from __future__ import annotations

import asyncio
import socket
import time

from hvsupervisor.config.settings import ReadyRule
from hvsupervisor.core.restart_policy import next_delay

PROBE_GROWTH = 1.5  # gentler than the gates' doubling: a starting agent is expected soon
SO_ACCEPTCON = 0x10000  # the "Flags" column of /proc/net/unix for a listening socket


def unix_listening(path: str, table: str = "/proc/net/unix") -> bool:
    """True if a socket bound at ``path`` is listening (no connection made)."""
    try:
        with open(table) as fh:
            next(fh, None)  # header
            for line in fh:
                fields = line.split(None, 7)
                if len(fields) == 8 and fields[7].rstrip("\n") == path:
                    if int(fields[3], 16) & SO_ACCEPTCON:
                        return True
    except OSError:
        return False
    return False


async def _accepts(rule: ReadyRule) -> bool:
    if rule.kind == "unix":
        assert rule.path is not None
        return unix_listening(rule.path)
    try:
        assert rule.host is not None and rule.port is not None
        _reader, writer = await asyncio.open_connection(rule.host, rule.port)
    except (OSError, socket.gaierror):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def wait_bridge(remote: str, bridge: str, first: float = 0.1, cap: float = 1.0,
                      spawned: float | None = None, pid: int | None = None) -> None:
    """Return once ``bridge`` is in ovsdb with its OpenFlow controller connected.

    ``ready = ovsdb-bridge:br-int`` for the neutron OVS agent, which sends no
    READY=1 (host/ovsdb.py: bridge_ready says why this is the right signal).
    ``spawned`` (time.monotonic() of the spawn): the connection must be younger
    than the process, or a quick restart reads the killed agent's connection,
    which ovs-vswitchd still reports for a while (doc/upstream-behaviour.md section 13).
    ``pid``: the agent's; its own established controller connection counts at once
    (host/ofconn.py), before ovs-vswitchd's status rows say so.
    """
    from hvsupervisor.host.ovsdb import bridge_ready

    delay = 0.0
    while not (await bridge_ready(
            remote, bridge,
            max_age=None if spawned is None else time.monotonic() - spawned, pid=pid))[0]:
        delay = next_delay(delay, first, cap, PROBE_GROWTH)
        await asyncio.sleep(delay)


async def wait_accepting(rule: ReadyRule, first: float = 0.05, cap: float = 1.0) -> None:
    """Return once the rule's socket accepts a connection (cancel to give up)."""
    delay = 0.0
    while not await _accepts(rule):
        delay = next_delay(delay, first, cap, PROBE_GROWTH)
        await asyncio.sleep(delay)
