"""Where an agent's probe goes, resolved from the agent's own effective config.

An ``rpc`` rule names the exchange and topic of the daemon's RPC server (the
facts per daemon are in doc/upstream-behaviour.md); what differs per node
comes from the files the agent itself reads, resolved like ``config
explain`` does (config/explain.py), so the probe uses exactly the bus and
host the daemon uses:

* ``[DEFAULT] transport_url``: the bus (its credentials stay in this
  object and the prober; ``str()`` masks them);
* ``[DEFAULT] host``: the RPC server name, oslo's default being the
  machine's hostname (nova and neutron both default ``host`` to
  ``socket.gethostname()``);
* ``[DEFAULT] control_exchange``: when set, it replaces the rule's exchange;
* ``[oslo_messaging_rabbit]``: every option the agent's files (or its
  ``OS_OSLO_MESSAGING_RABBIT__*`` environment) set, so a TLS bus is reached
  over TLS and the probe declares exchanges as durable (or quorum) as the
  agent does (doc/health.md).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from hvsupervisor.config.explain import effective, mask_text
from hvsupervisor.config.plan import Plan
from hvsupervisor.health.protocol import RpcRequest

RABBIT_GROUP = "oslo_messaging_rabbit"
_TRUE = ("true", "1", "yes", "on")


@dataclass(frozen=True)
class RpcTarget:
    agent: str
    url: str | None
    exchange: str
    topic: str
    server: str
    version: str
    rabbit: tuple[tuple[str, str], ...] = ()

    def request(self, timeout: float) -> RpcRequest:
        assert self.url is not None
        return RpcRequest(self.url, self.exchange, self.topic, self.server, self.version,
                          timeout, self.rabbit)

    def __str__(self) -> str:
        url = mask_text(self.url) if self.url else "(no transport_url)"
        tls = " (TLS)" if dict(self.rabbit).get("ssl", "").lower() in _TRUE else ""
        return f"{self.exchange}/{self.topic}.{self.server}@{self.version} via {url}{tls}"


def rpc_target(plan: Plan) -> RpcTarget | None:
    """The RPC probe target of ``plan`` (None unless its ready rule is ``rpc``).

    Needs the plan's parsed files (call before the supervisor drops them).
    """
    rule = plan.ready
    if rule.kind != "rpc":
        return None
    eff = effective(plan)
    url = eff.lookup("DEFAULT", "transport_url")
    host = eff.lookup("DEFAULT", "host") or socket.gethostname()
    exchange = eff.lookup("DEFAULT", "control_exchange") or rule.exchange
    assert rule.topic is not None and rule.version is not None and exchange is not None
    rabbit = tuple((name, value) for name in eff.options(RABBIT_GROUP)
                   if (value := eff.lookup(RABBIT_GROUP, name)) is not None)
    return RpcTarget(plan.agent, url or None, exchange, rule.topic, host, rule.version,
                     rabbit)
