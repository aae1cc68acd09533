"""What one probe found, shared by the prober, the HTTP probe and the policy.

Four outcomes, because the policy must tell them apart (doc/health.md):

* ``answered``: the agent replied (an RPC reply, a remote "no such method"
  included: only a consuming RPC server can say that; or an HTTP response);
* ``unanswered``: the path to the agent works (the bus accepted a login)
  but the agent did not reply in time, or nothing consumes its queue;
* ``bus-down``: the agent's own message bus refused us: nothing can be
  concluded about the agent, and the node is degraded;
* ``error``: the probe itself could not run (prober restarting, bad URL):
  counted as neither success nor failure.
"""

from __future__ import annotations

from dataclasses import dataclass

ANSWERED = "answered"
UNANSWERED = "unanswered"
BUS_DOWN = "bus-down"
ERROR = "error"
OUTCOMES = (ANSWERED, UNANSWERED, BUS_DOWN, ERROR)


@dataclass(frozen=True)
class ProbeResult:
    outcome: str
    detail: str = ""
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == ANSWERED
