"""One agent's I/O-side record next to its pure lifecycle, and how it is built.

Shared by every part of the supervisor package; it performs no I/O itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hvsupervisor.config.plan import Plan
from hvsupervisor.config.settings import Settings
from hvsupervisor.core.lifecycle import AgentLifecycle, State
from hvsupervisor.core.restart_policy import RestartPolicy
from hvsupervisor.health.health_policy import AgentHealth
from hvsupervisor.health.targets import RpcTarget
from hvsupervisor.systemd.notify import NotifyListener


class Closable(Protocol):
    """Something the agent holds until its process is gone (drain_watch.LogFollower)."""

    def close(self) -> None: ...

RUNNING = {State.STARTING, State.READY, State.STOPPING}


@dataclass
class Agent:
    """One agent's I/O-side state next to its pure lifecycle."""

    plan: Plan
    machine: AgentLifecycle
    timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    listener: NotifyListener | None = None
    probe: asyncio.Task | None = None
    log_path: Path | None = None
    child_status: str | None = None
    deps_ok: bool | None = None
    gate: tuple[bool, str] | None = None
    removing: bool = False
    # The running plan as secret-free option data (config/plan_diff.py), taken
    # before the plan is made lean: `config diff` compares it with the disk.
    snapshot: dict = field(default_factory=dict)
    # Restart pending: the code changed under the running process (process/codechange.py).
    pending: str = ""
    # Health (supervisor/health_watch.py): the rpc target resolved from the plan's
    # files, the liveness record, the pid it is about, the next probe, and why
    # the supervisor killed the process (its exit then reads "hung: ...").
    rpc: RpcTarget | None = None
    health: AgentHealth | None = None
    health_pid: int | None = None
    health_timer: asyncio.TimerHandle | None = None
    health_task: asyncio.Task | None = None
    hung: str | None = None
    # The stopping process's log, followed for its stop_drained line (drain_watch.py).
    drain_watch: Closable | None = None

    @property
    def name(self) -> str:
        return self.plan.agent

    @property
    def running(self) -> bool:
        return self.machine.state in RUNNING or self.machine.pid is not None


def restart_policy(settings: Settings) -> RestartPolicy:
    s = settings.supervisor
    return RestartPolicy(
        restart_sec=s.restart_sec,
        restart_max_delay=max(s.restart_max_delay, s.restart_sec),
        restart_steps=s.restart_steps,
        jitter=s.restart_jitter,
        stable_period=s.stable_period,
        flap_max=s.flap_max,
        flap_window=s.flap_window,
    )


def ready_kind(plan: Plan) -> tuple[str, float | None]:
    kind = plan.ready.kind
    if kind == "alive":
        return "alive", plan.ready.seconds
    if kind == "notify":
        return "notify", None
    return "probe", None


def lean(plan: Plan) -> Plan:
    """The plan without its parsed files: only explain and gate wiring need them,
    and with a thousand snippets they are most of a running supervisor's RSS."""
    return dataclasses.replace(plan, parsed=())
