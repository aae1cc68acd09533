"""Readiness probes for ``ready = tcp:HOST:PORT`` and ``unix:PATH`` agents.

Upstream daemons' own READY=1 means "launched", not "serving", and several
send nothing (DESIGN.md section 2). For an agent that serves a socket, the
socket accepting a connection is the truth. The probe polls only while the
agent is starting (50 ms, growing to 1 s), and stops at the first accept or
when the agent exits; a ready node has no probe running.
"""

from __future__ import annotations

import asyncio
import socket

from hvsupervisor.config.settings import ReadyRule


async def _accepts(rule: ReadyRule) -> bool:
    try:
        if rule.kind == "tcp":
            assert rule.host is not None and rule.port is not None
            _reader, writer = await asyncio.open_connection(rule.host, rule.port)
        else:
            assert rule.path is not None
            _reader, writer = await asyncio.open_unix_connection(rule.path)
    except (OSError, socket.gaierror):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def wait_accepting(rule: ReadyRule, first: float = 0.05, cap: float = 1.0) -> None:
    """Return once the rule's socket accepts a connection (cancel to give up)."""
    delay = first
    while not await _accepts(rule):
        await asyncio.sleep(delay)
        delay = min(cap, delay * 1.5)
