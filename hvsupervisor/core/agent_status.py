"""The status of one agent and of the node: what every status output renders."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


def _known(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``cls`` present in ``data``: a newer sender's extra keys are ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True)
class AgentStatus:
    """One agent as the supervisor sees it.

    ``state`` is a ``lifecycle.State`` value ("waiting", "ready", ...), kept
    as a string so that this object does not depend on the state machine.
    ``reason`` says why it is waiting, failed, backing off or degraded;
    ``last_exit`` how its last process ended ("exit 1 (last log line)").
    ``digest`` and ``argv`` (credentials masked) come from its plan; the
    lifecycle alone leaves them empty. ``restart_pending`` is "" unless the
    agent should be restarted to run what is on disk now.
    """

    VERSION: ClassVar[str] = "1.0"

    name: str
    state: str
    ready: bool
    reason: str = ""
    last_exit: str | None = None
    degraded: bool = False
    pid: int | None = None
    restarts: int = 0
    digest: str = ""
    argv: tuple[str, ...] = ()
    # The ready rule as written (rpc:..., http:...), and the liveness record
    # of an rpc/http agent (health/health_policy.py AgentHealth.to_json): state ok |
    # failing | unknown, label "failing N/M", last_probe (unix time),
    # last_duration (s), last_error, last_outcome.
    ready_rule: str = ""
    health: Mapping[str, Any] | None = None
    # Why the running process no longer matches what a restart would run:
    # its code changed after it started, or its plan on disk differs.
    restart_pending: str = ""

    @property
    def health_label(self) -> str:
        """"ok", "failing N/M", "unknown", or "-" for an agent with no probe kind."""
        if not self.health or self.ready_rule.split(":")[0] not in ("rpc", "http"):
            return "-"
        return str(self.health.get("label", "unknown"))

    @property
    def state_text(self) -> str:
        """The state as a person reads it: "ready (degraded)"."""
        return self.state + (" (degraded)" if self.degraded else "")

    def to_primitive(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_primitive(cls, data: Mapping[str, Any]) -> AgentStatus:
        known = _known(cls, data)
        known["argv"] = tuple(known.get("argv") or ())
        return cls(**known)


@dataclass(frozen=True)
class NodeStatus:
    """Every agent, whether READY=1 went out, and the STATUS= line systemd shows.

    ``status`` is exactly the line last sent as ``STATUS=`` (with its
    "degraded: " or "reload refused" prefix), so ``hvsupervisor status`` and
    ``systemctl status`` never disagree.
    """

    VERSION: ClassVar[str] = "1.0"

    ready: bool
    status: str
    agents: tuple[AgentStatus, ...] = field(default=())
    # reachable | unreachable | unknown: the agents' message bus, as the latest
    # RPC probe found it (doc/health.md).
    control_plane: str = "unknown"
    # The guests libvirtd runs for nova-compute (active domains on its libvirt
    # URI), counted through the libvirt gate; None: not known (no nova-compute,
    # libvirtd not answering). doc/upstream-behaviour.md section 17.
    instances: int | None = None
    # Whether nova has this node's compute service disabled: "yes" | "no" |
    # "unknown", and why it is unknown (the record is the control plane's).
    compute_disabled: str = "unknown"
    compute_disabled_reason: str = ""
    # The release this supervisor runs (doc/release.md; "" outside a release
    # install), and a newer good one installed but not switched to.
    release: str = ""
    release_pending: str = ""

    def to_primitive(self) -> dict[str, Any]:
        return {"version": self.VERSION, "ready": self.ready, "status": self.status,
                "control_plane": self.control_plane, "instances": self.instances,
                "compute_disabled": self.compute_disabled,
                "compute_disabled_reason": self.compute_disabled_reason,
                "release": self.release, "release_pending": self.release_pending,
                "agents": [a.to_primitive() for a in self.agents]}

    @classmethod
    def from_primitive(cls, data: Mapping[str, Any]) -> NodeStatus:
        return cls(ready=bool(data.get("ready")), status=data.get("status") or "",
                   agents=tuple(AgentStatus.from_primitive(a) for a in data.get("agents", ())),
                   control_plane=data.get("control_plane") or "unknown",
                   instances=data.get("instances"),
                   compute_disabled=data.get("compute_disabled") or "unknown",
                   compute_disabled_reason=data.get("compute_disabled_reason") or "",
                   release=data.get("release") or "",
                   release_pending=data.get("release_pending") or "")

