"""The ``ready =`` rule of an agent: how its readiness is decided.

Parsed twice with this one parser: as the option's type (config/types.py),
so ``validate`` refuses what ``run`` would, and after placeholder
substitution when the plan is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Longest alive:SECONDS accepted (one day), like every other duration.
MAX_ALIVE = 86400.0


@dataclass(frozen=True)
class ReadyRule:
    """How an agent's readiness is decided (doc/upstream-behaviour.md section 3)."""

    kind: str  # notify | alive | tcp | unix | ovsdb-bridge | rpc | http
    seconds: float | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    bridge: str | None = None
    # rpc: the agent's own RPC server (health/targets.py resolves host and bus)
    exchange: str | None = None
    topic: str | None = None
    version: str | None = None
    # http: a real HTTP response (and this status, if given)
    url: str | None = None
    status: int | None = None

    @classmethod
    def parse(cls, text: str) -> ReadyRule:
        """Parse ``notify | alive:SECONDS | tcp:HOST:PORT | unix:PATH | ovsdb-bridge:NAME``."""
        kind, _, rest = text.strip().partition(":")
        if kind == "notify" and not rest:
            return cls("notify")
        if kind == "alive":
            try:
                seconds = float(rest)
            except ValueError:
                raise ValueError("alive:SECONDS needs a number of seconds") from None
            if not (math.isfinite(seconds) and 0 <= seconds <= MAX_ALIVE):
                raise ValueError(f"alive:SECONDS must be a finite number between 0 and "
                                 f"{MAX_ALIVE:g}")
            return cls("alive", seconds=seconds)
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("expected tcp:HOST:PORT")
            return cls("tcp", host=host.strip("[]"), port=int(port))
        if kind == "unix" and rest:
            return cls("unix", path=rest)
        if kind == "ovsdb-bridge" and rest:
            return cls("ovsdb-bridge", bridge=rest)
        if kind == "rpc" and rest:
            return _parse_rpc(rest)
        if kind == "http" and rest:
            return _parse_http(rest)
        raise ValueError("expected notify, alive:SECONDS, tcp:HOST:PORT, unix:PATH, "
                         "ovsdb-bridge:NAME, rpc:EXCHANGE/TOPIC[@VERSION] or http:URL[:STATUS]")

    def __str__(self) -> str:
        if self.kind == "alive":
            return f"alive:{self.seconds:g}"
        if self.kind == "tcp":
            return f"tcp:{self.host}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "ovsdb-bridge":
            return f"ovsdb-bridge:{self.bridge}"
        if self.kind == "rpc":
            return f"rpc:{self.exchange}/{self.topic}@{self.version}"
        if self.kind == "http":
            return f"http:{self.url}" + (f":{self.status}" if self.status else "")
        return self.kind


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def _parse_rpc(rest: str) -> ReadyRule:
    """``EXCHANGE/TOPIC[@VERSION]``: EXCHANGE is the daemon's built-in
    control_exchange (nova, neutron), used unless its config sets one;
    VERSION (default 1.0) must share the major of the agent's RPC endpoint so
    the probe gets a quiet NoSuchMethod (doc/health.md)."""
    spec, _, version = rest.partition("@")
    exchange, slash, topic = spec.partition("/")
    version = version or "1.0"
    major, dot, minor = version.partition(".")
    if (not slash or not exchange or not topic or not set(exchange + topic) <= _NAME_CHARS
            or not major.isdigit() or (dot and not minor.isdigit())):
        raise ValueError("expected rpc:EXCHANGE/TOPIC[@VERSION], e.g. rpc:nova/compute@6.0")
    return ReadyRule("rpc", exchange=exchange, topic=topic, version=version)


def _parse_http(rest: str) -> ReadyRule:
    """``URL[:STATUS]`` with URL ``http://HOST:PORT/PATH`` or ``http+unix://SOCKET``
    (the whole path is the socket; the request is ``GET /``). A STATUS is
    three digits after the last colon; without one, any HTTP response counts."""
    url, status = rest, None
    head, colon, tail = rest.rpartition(":")
    if colon and len(tail) == 3 and tail.isdigit() and "//" in head:
        url, status = head, int(tail)
        if not 100 <= status <= 599:
            raise ValueError(f"HTTP status {status} out of range")
    if url.startswith("http://"):
        hostport = url[len("http://"):].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected http://HOST:PORT/PATH (the port is required)")
    elif url.startswith("http+unix://"):
        # "{" : a placeholder ({state_dir}...), checked again once substituted
        if not url[len("http+unix://"):].startswith(("/", "{")):
            raise ValueError("expected http+unix:///ABSOLUTE/SOCKET/PATH")
    else:
        raise ValueError("expected http:http://HOST:PORT/PATH[:STATUS] or "
                         "http:http+unix:///SOCKET[:STATUS]")
    return ReadyRule("http", url=url, status=status)
