"""``ready = http:URL[:STATUS]``: a real HTTP response, not a TCP accept.

Why not ``tcp:``: gunicorn's master listens before any worker has booted and
keeps listening while its workers crash, so an accepted connection proves
nothing. An HTTP status line can only come from a worker that loaded the
application. The same holds for neutron-metadata-agent's proxy socket: its
handler answers only once the agent's WSGI server runs.

Done in the supervisor's own loop with asyncio streams (a few hundred bytes,
no library, nothing blocks); the prober is only for what needs
oslo.messaging. The request is ``GET PATH`` with ``Connection: close``; only
the status line is read.

Every request carries both ``X-Neutron-Network-ID`` and ``X-Neutron-Router-ID``
(value ``hvsupervisor-probe``). neutron-metadata-agent (neutron 29) answers a
request that names both with 400 at once, without asking neutron-server, and
logs one WARNING naming them; any other request without a real instance
behind it costs an RPC to neutron-server (and, with the bus down, a wait of
rpc_response_timeout) or an ERROR traceback (doc/upstream-behaviour.md).
Other applications ignore headers they do not know (nova's metadata API
answers ``GET /`` with its version list before looking at any header).
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

from hvsupervisor.health import outcome as oc


def _target(url: str) -> tuple[str | None, str | None, int | None, str]:
    """(unix socket, host, port, request path) of an http:// or http+unix:// URL."""
    if url.startswith("http+unix://"):
        return url[len("http+unix://"):], None, None, "/"
    parts = urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return None, parts.hostname, parts.port, path


async def _status(url: str) -> int:
    sock_path, host, port, path = _target(url)
    if sock_path is not None:
        reader, writer = await asyncio.open_unix_connection(sock_path)
        host_header = "localhost"
    else:
        reader, writer = await asyncio.open_connection(host, port)
        host_header = f"{host}:{port}"
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host_header}\r\n"
                     "User-Agent: hvsupervisor-probe\r\n"
                     "X-Neutron-Network-ID: hvsupervisor-probe\r\n"
                     "X-Neutron-Router-ID: hvsupervisor-probe\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    fields = line.decode("latin-1").split()
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response: {line[:60]!r}")
    return int(fields[1])


async def http_probe(url: str, status: int | None, timeout: float) -> oc.ProbeResult:
    """``answered`` on an HTTP response (with ``status`` if given), else ``unanswered``."""
    start = time.monotonic()
    try:
        got = await asyncio.wait_for(_status(url), timeout)
    except TimeoutError:
        return oc.ProbeResult(oc.UNANSWERED, f"no HTTP answer within {timeout:g}s",
                              time.monotonic() - start)
    except (OSError, ValueError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return oc.ProbeResult(oc.UNANSWERED, f"HTTP: {detail}", time.monotonic() - start)
    duration = time.monotonic() - start
    if status is not None and got != status:
        return oc.ProbeResult(oc.UNANSWERED, f"HTTP {got}, expected {status}", duration)
    return oc.ProbeResult(oc.ANSWERED, f"HTTP {got}", duration)
