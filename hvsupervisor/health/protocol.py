"""The prober's line protocol: one JSON object per line, both ways.

Request (supervisor -> prober)::

    {"id": 7, "url": "rabbit://...", "exchange": "nova", "topic": "compute",
     "server": "node1", "version": "6.0", "timeout": 5.0,
     "rabbit": [["ssl", "true"], ["ssl_ca_file", "/etc/ssl/ca.pem"]]}

``rabbit`` is the agent's own ``[oslo_messaging_rabbit]`` (effective values,
as written): TLS, durable or quorum queues must match what the agent uses.

Reply (prober -> supervisor)::

    {"id": 7, "outcome": "answered", "detail": "RemoteError NoSuchMethod",
     "duration": 0.012}

Why JSON lines over a socketpair: the supervisor reads them with asyncio's
``readline`` (no blocking, no framing code), replies may come back in any
order (each request runs in its own prober thread), and a crash of either
side is an EOF. The transport URL carries credentials: it travels only over
this private socketpair and is never logged by either side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hvsupervisor.health.outcome import OUTCOMES, ProbeResult

MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class RpcRequest:
    """Call ``method`` on (exchange, topic, server) at ``version`` through ``url``."""

    url: str
    exchange: str
    topic: str
    server: str
    version: str
    timeout: float
    # The agent's [oslo_messaging_rabbit] options (name, value as written).
    rabbit: tuple[tuple[str, str], ...] = ()


def encode_request(req_id: int, req: RpcRequest) -> bytes:
    body = {"id": req_id, "url": req.url, "exchange": req.exchange, "topic": req.topic,
            "server": req.server, "version": req.version, "timeout": req.timeout,
            "rabbit": [list(kv) for kv in req.rabbit]}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode_request(line: bytes) -> tuple[int, RpcRequest]:
    """ValueError on anything malformed (the prober answers it with an error)."""
    body = json.loads(line)
    if not isinstance(body, dict):
        raise ValueError("request is not an object")
    try:
        rabbit = tuple((str(k), str(v)) for k, v in body.get("rabbit") or ())
        req = RpcRequest(str(body["url"]), str(body["exchange"]), str(body["topic"]),
                         str(body["server"]), str(body["version"]), float(body["timeout"]),
                         rabbit)
        return int(body["id"]), req
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad request: {exc}") from None


def encode_reply(req_id: int, result: ProbeResult) -> bytes:
    body = {"id": req_id, "outcome": result.outcome, "detail": result.detail[:500],
            "duration": round(result.duration, 6)}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode_reply(line: bytes) -> tuple[int, ProbeResult]:
    body = json.loads(line)
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    return int(body["id"]), ProbeResult(outcome, str(body.get("detail", "")),
                                        float(body.get("duration", 0.0)))
