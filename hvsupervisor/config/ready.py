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

    kind: str  # notify | alive | tcp | unix | ovsdb-bridge
    seconds: float | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    bridge: str | None = None

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
        raise ValueError("expected notify, alive:SECONDS, tcp:HOST:PORT, unix:PATH or "
                         "ovsdb-bridge:NAME")

    def __str__(self) -> str:
        if self.kind == "alive":
            return f"alive:{self.seconds:g}"
        if self.kind == "tcp":
            return f"tcp:{self.host}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "ovsdb-bridge":
            return f"ovsdb-bridge:{self.bridge}"
        return self.kind
