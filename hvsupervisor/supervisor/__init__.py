"""The supervisor: the asyncio loop that applies the lifecycle's actions.

``loop.Supervisor`` feeds events to each agent's pure lifecycle and applies
its actions; the parts that act on the world are its mixins, one module
each: ``spawning`` (processes, readiness probes, host gates), ``reload``,
``shutdown`` (agents in reverse order, then the data plane), ``drain_watch``
(a stopping agent's log followed for its ``stop_drained`` line) and
``reporting`` (STATUS=, READY=1, watchdog, status replies). ``agent`` is the
per-agent record they share. See doc/architecture.md.
"""

from hvsupervisor.supervisor.loop import ShuttingDown, Supervisor

__all__ = ["ShuttingDown", "Supervisor"]
