"""Reload: re-resolve every plan, restart only the agents whose digest changed.

All or nothing: a config error leaves the running plans and gates untouched
and is reported in STATUS=. The decision which agents restart is made from
the plans' digests; the restarts themselves are lifecycle events.
"""

from __future__ import annotations

import logging

from hvsupervisor import deps, process
from hvsupervisor.config import diff as config_diff
from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.plan import Plan, build_plans
from hvsupervisor.config.settings import Settings, load_settings
from hvsupervisor.health.targets import rpc_target
from hvsupervisor.lifecycle import RestartRequested, State, StopRequested
from hvsupervisor.supervisor.agent import lean

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package


class Reloading:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: ``reload``.

    Swaps ``settings`` and the agents' plans; restarts go through ``_post``.
    """

    async def reload(self) -> dict:
        """Re-resolve every plan; restart only what changed; all or nothing."""
        if self._shutting_down:
            return {"ok": False, "error": "the supervisor is stopping; reload refused"}
        async with self._reload_lock:
            self.notifier.reloading()
            error = None
            try:
                settings = load_settings(
                    self.settings.defaults_dir, self.settings.override_dir,
                    str(self.settings.state_dir), str(self.settings.log_dir),
                    str(self.settings.run_dir))
                plans = build_plans(settings)
                gates = None
                if self.gate_factory is not None:
                    key, gates = self.gate_factory(settings, plans)
            except ConfigError as exc:
                error = str(exc)
            if error is not None:
                # Logged outside the except block: oslo.log would append a
                # traceback, and an operator mistake gets one clear line.
                LOG.error("event=reload-refused error=%s", error)
                self._status = f"reload refused, old config kept: {error}"
                self.notifier.ready_with_status(self._status[:400])
                return {"ok": False, "error": error}
            if gates is not None and key != self._gate_key:
                await self._replace_gates(key, gates)
            result = self._apply_plans(settings, plans)
            del plans, gates
            process.release_memory()
            LOG.info("event=reload restarted=%s started=%s stopped=%s",
                     result["restarted"], result["started"], result["stopped"])
            self._status = ""
            self._report()
            self.notifier.ready_with_status(self._status)
            return {"ok": True, **result}

    def _apply_plans(self, settings: Settings, plans: dict[str, Plan]) -> dict:
        self.settings = settings
        restarted, started, stopped = [], [], []
        for name in list(self.agents):
            if name not in plans:
                agent = self.agents[name]
                agent.removing = True
                stopped.append(name)
                self._post(name, StopRequested())
        for name in deps.start_order({n: list(p.after) for n, p in plans.items()}):
            plan = plans[name]
            agent = self.agents.get(name)
            if agent is None or agent.removing:
                if agent is not None:  # re-enabled while still stopping
                    continue
                self.agents[name] = self._make_agent(plan)
                started.append(name)
                continue
            old = agent.plan
            agent.snapshot = config_diff.snapshot(plan)
            agent.rpc = rpc_target(plan)  # before lean(): it reads the parsed files
            agent.plan = lean(plan)
            agent.machine.stop_timeout = plan.stop_timeout
            agent.machine.stop_signal = plan.stop_signal
            if plan.digest != old.digest and agent.machine.state is not State.STOPPED:
                restarted.append(name)
                self._post(name, RestartRequested())
        self._configure_broker(plans)  # users.py: before the restarts are applied
        self._refresh_conditions()
        self._drain()
        return {"restarted": restarted, "started": started, "stopped": stopped}
