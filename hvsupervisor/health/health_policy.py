"""Liveness policy, pure: probe outcomes in, a verdict out.

The rules (doc/health.md):

* ``answered``: the agent serves; its failure count resets.
* ``unanswered`` while its bus took a login: one more failure. At
  ``failures`` in a row the agent is *hung*: the supervisor restarts it
  (as a crash, so the usual backoff and flap rules apply).
* ``bus-down``: nothing is learnt about the agent (its count stays), and the
  node's control plane is unreachable: degraded, no restarts.
* ``error``: the probe could not run; nothing is learnt.
* After its bus was down, an agent gets ``failures`` more probes to
  reconnect before unanswered ones count: oslo.messaging reconnects with a
  growing delay (up to 30 s by default), so the first probes after an
  outage find the bus back but the agent not yet consuming. Counting those
  would restart every agent of the node right after every outage, the very
  storm the outage rule exists to prevent.

The control plane is *reachable* once any RPC probe got through to a bus
(answered or unanswered) and *unreachable* once one found its bus down; the
latest RPC probe decides. ``unknown`` until an RPC probe has run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hvsupervisor.health import outcome as oc

OK = "ok"
FAILING = "failing"
UNKNOWN = "unknown"

REACHABLE = "reachable"
UNREACHABLE = "unreachable"


@dataclass
class AgentHealth:
    """One agent's liveness record; ``record`` applies a probe's outcome."""

    threshold: int
    failures: int = 0
    state: str = UNKNOWN
    last_probe: float | None = None  # wall clock, for status
    last_duration: float | None = None
    last_error: str | None = None
    last_outcome: str | None = None
    probes: int = 0
    reconnect_grace: int = 0  # unanswered probes not counted after an outage

    def record(self, result: oc.ProbeResult, wall: float, control_plane: str = REACHABLE) -> bool:
        """Apply one probe; True when the agent is now hung (restart it).

        While the node's ``control_plane`` is unreachable an unanswered probe
        is not counted either (an HTTP-probed agent may be waiting for the
        bus itself): no restarts during an outage.
        """
        self.probes += 1
        self.last_probe = wall
        self.last_duration = result.duration
        self.last_outcome = result.outcome
        if result.outcome == oc.ANSWERED:
            self.failures = 0
            self.reconnect_grace = 0
            self.state = OK
            return False
        self.last_error = f"{result.outcome}: {result.detail}" if result.detail else \
            result.outcome
        if result.outcome == oc.BUS_DOWN or control_plane == UNREACHABLE:
            self.reconnect_grace = self.threshold
            return False  # nothing learnt about the agent
        if result.outcome == oc.UNANSWERED:
            if self.reconnect_grace > 0:  # the bus is back; the agent may still reconnect
                self.reconnect_grace -= 1
                return False
            self.failures += 1
            self.state = FAILING
            return self.failures >= self.threshold
        return False  # error: nothing learnt about the agent

    def reset(self) -> None:
        """A new process (or none): what we knew was about the old one."""
        self.failures = 0
        self.reconnect_grace = 0
        self.state = UNKNOWN

    def label(self) -> str:
        """``ok``, ``failing N/M`` or ``unknown``, for status."""
        if self.state == FAILING:
            return f"failing {self.failures}/{self.threshold}"
        return self.state

    def to_json(self) -> dict:
        return {"state": self.state, "label": self.label(), "failures": self.failures,
                "probes": self.probes,
                "threshold": self.threshold, "last_probe": self.last_probe,
                "last_duration": self.last_duration, "last_error": self.last_error,
                "last_outcome": self.last_outcome}


def control_plane(outcome: str, previous: str) -> str:
    """The node's control-plane state after an RPC probe with ``outcome``."""
    if outcome == oc.BUS_DOWN:
        return UNREACHABLE
    if outcome in (oc.ANSWERED, oc.UNANSWERED):
        return REACHABLE
    return previous


def next_delay(interval: float, rng: random.Random, jitter: float = 0.1) -> float:
    """``interval`` +/- ``jitter`` (a fraction): agents started together, and a
    fleet of nodes booted together, do not probe the broker in lockstep."""
    return max(0.0, interval * (1.0 + rng.uniform(-jitter, jitter)))


def ready_delays(first: float = 0.2, cap: float = 2.0, factor: float = 1.5):
    """Delays between readiness probes of a starting agent: soon, then calmer."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)
