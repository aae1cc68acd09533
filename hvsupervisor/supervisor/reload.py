"""Reload: re-resolve every plan, restart only the agents whose digest changed.

One transaction: prepare (can fail, touches nothing), commit (cannot fail),
settle (wait until it is in effect). A refusal leaves the running plans,
settings and gates untouched and is reported in STATUS= with READY=1. The
decision which agents restart is made from the plans' digests; the restarts
themselves are lifecycle events.
"""

from __future__ import annotations

import logging
import time

from hvsupervisor.config import plan_diff
from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.plan import Plan
from hvsupervisor.config.settings import Settings, load_settings
from hvsupervisor.control.rundir import socket_path_problem
from hvsupervisor.core import deps
from hvsupervisor.core.lifecycle import RestartRequested, StartRequested, State, StopRequested
from hvsupervisor.health.targets import rpc_target
from hvsupervisor.host.facts import plans_for
from hvsupervisor.process import children
from hvsupervisor.supervisor.agent import Agent, lean, ready_kind, restart_policy
from hvsupervisor.systemd import journal

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package


# [DEFAULT] settings a reload cannot apply: the lock, the agent record and the
# sockets (state_dir, run_dir) and our own log file (log_dir) are opened once.
# Every [supervisor] setting applies (see README); these are refused by name.
RESTART_ONLY = ("state_dir", "log_dir", "run_dir")


def _own_log_option_changed(old: Settings, new: Settings) -> str | None:
    """The first oslo.log option of our own config ([DEFAULT] debug, log_file, ...)
    that differs between two loads, or None.

    oslo.log configures the supervisor's logging once (setup in cmd/run.py);
    a reload that silently kept the old value would report a change it did
    not make.
    """
    if old.conf is None or new.conf is None:
        return None
    from oslo_log import _options as log_options  # the options oslo_log.register_options adds

    for opt in (*log_options.common_cli_opts, *log_options.logging_cli_opts,
                *log_options.generic_log_opts, *log_options.log_opts):
        if opt.dest == "log_dir":  # RESTART_ONLY names it already
            continue
        if old.conf[opt.dest] != new.conf[opt.dest]:
            return opt.dest
    return None


class ReloadRefused(Exception):
    """A reload that cannot be applied whole; the old state is kept."""


class Reloading:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: ``reload``.

    Swaps ``settings`` and the agents' plans; restarts go through ``_post``.
    """

    async def reload(self) -> dict:
        """Re-resolve every plan; restart only what changed; all or nothing.

        One transaction (README "Reload: what its return means"): *prepare*
        everything that can fail (parse, plans, gate inputs, the notify
        sockets of added agents, [DEFAULT] dirs that need a restart) without
        touching the running state; then *commit* synchronously (no await, so
        no stop can slip in between); then *settle*: wait until every
        restarted or started agent is ready or failed, every removed one
        gone, or ``[supervisor] reload_timeout`` passed. Every RELOADING=1
        ends in READY=1, with the refusal in STATUS= if refused.
        """
        if self._shutting_down:
            return {"ok": False, "error": "the supervisor is stopping; reload refused"}
        async with self._reload_lock:
            if self._shutting_down:
                return {"ok": False, "error": "the supervisor is stopping; reload refused"}
            # Before the first READY=1 systemd is not in a reload: tell it nothing.
            tell = self._ready_sent
            if tell:
                self.notifier.reloading()
            try:
                result = self._reload_commit(*self._reload_prepare())
            except ReloadRefused as exc:
                error = str(exc)
            except Exception as exc:  # a bug: still end the reload, keep the old state
                LOG.exception("event=reload-error")
                error = f"internal error: {type(exc).__name__}: {exc}"
            else:
                error = None
            if error is not None:
                # Logged outside the except block: oslo.log would append a
                # traceback, and an operator mistake gets one clear line.
                LOG.error("event=reload-refused error=%s", error)
                self._status = f"reload refused, old config kept: {error}"
                if tell:
                    self.notifier.ready_with_status(self._status[:400])
                else:
                    self.notifier.status(self._status[:400])
                return {"ok": False, "error": error}
            gates = result.pop("_gates")
            if gates is not None:
                await self._replace_gates(*gates)
            children.release_memory()
            LOG.info("event=reload restarted=%s started=%s stopped=%s",
                     result["restarted"], result["started"], result["stopped"])
            outcome = await self._settle(result)
            LOG.info("event=reload-settled %s",
                     " ".join(f"{n}={v}" for n, v in outcome["agents"].items()) or "-")
            self._status = ""
            self._report()
            if tell:
                self.notifier.ready_with_status(self._status)
            return {"ok": True, **result, **outcome}

    def _reload_prepare(self) -> tuple:
        """Everything that can fail, without touching the running state (ReloadRefused)."""
        try:
            settings = load_settings(self.settings.defaults_dir, self.settings.override_dir,
                                     *self.dir_overrides)
            for option in RESTART_ONLY:
                old, new = getattr(self.settings, option), getattr(settings, option)
                if old != new:
                    raise ReloadRefused(
                        f"[DEFAULT] {option} changed ({old} -> {new}): it needs a restart "
                        f"of hvsupervisor, not a reload")
            changed = _own_log_option_changed(self.settings, settings)
            if changed:
                raise ReloadRefused(
                    f"[DEFAULT] {changed} changed: our own logging is set up once at start; "
                    f"it needs a restart of hvsupervisor, not a reload")
            plans = plans_for(settings)
            problem = socket_path_problem(settings.run_dir, plans)
            if problem:
                raise ReloadRefused(problem)
            gates = None
            if self.gate_factory is not None:
                key, new_gates = self.gate_factory(settings, plans)
                if key != self._gate_key:
                    gates = (key, new_gates)
        except ConfigError as exc:
            raise ReloadRefused(str(exc)) from None
        added: dict[str, Agent] = {}
        try:
            for name, plan in plans.items():
                if name not in self.agents:
                    added[name] = self._make_agent(plan, settings)
        except (OSError, ValueError) as exc:
            for agent in added.values():
                self._forget(agent)
            raise ReloadRefused(f"agent {name}: cannot be set up: {exc}") from None
        return settings, plans, gates, added

    def _reload_commit(self, settings: Settings, plans: dict[str, Plan], gates, added) -> dict:
        """Apply a prepared reload. Synchronous, so no stop can begin in between."""
        if self._shutting_down:
            for agent in added.values():
                self._forget(agent)
            raise ReloadRefused("the supervisor is stopping; reload refused")
        # [supervisor] settings apply from here (README: which apply when).
        self.settings = settings
        for warning in settings.warnings:  # unknown keys, as at start and in validate
            LOG.warning("%s", warning)
        self._use_journal = journal.journal_available(settings.supervisor.journal_socket)
        policy = restart_policy(settings)
        for agent in self.agents.values():
            agent.machine.set_policy(policy)
        self._rearm_ready_timer()
        restarted, started, stopped = [], [], []
        for name in list(self.agents):
            if name not in plans and not self.agents[name].removing:
                self.agents[name].removing = True
                stopped.append(name)
                self._post(name, StopRequested())
        for name in deps.start_order({n: list(p.after) for n, p in plans.items()}):
            plan = plans[name]
            if name in added:
                self.agents[name] = added[name]
                started.append(name)
                continue
            agent = self.agents[name]
            old = agent.plan
            agent.snapshot = plan_diff.snapshot(plan)
            agent.rpc = rpc_target(plan)  # before lean(): it reads the parsed files
            agent.plan = lean(plan)
            agent.machine.stop_timeout = plan.stop_timeout
            agent.machine.stop_signal = plan.stop_signal
            agent.machine.drain = plan.stop_drain
            # The ready rule is not in the digest: a new one applies from the next start.
            agent.machine.ready_kind, agent.machine.alive_seconds = ready_kind(plan)
            if agent.removing:
                # Re-enabled while it still stops: it starts again once stopped.
                agent.removing = False
                started.append(name)
                self._post(name, StartRequested())
            elif plan.digest != old.digest and agent.machine.state is not State.STOPPED:
                restarted.append(name)
                self._post(name, RestartRequested())
        self._configure_broker(plans)  # agent_users.py: before the restarts are applied
        self._refresh_conditions()
        self._drain()
        return {"restarted": restarted, "started": started, "stopped": stopped,
                "_gates": gates}

    def _rearm_ready_timer(self) -> None:
        """ready_timeout changed before the first READY=1: count it from the start."""
        if self._ready_timer is None or self._ready_sent or self._loop is None:
            return
        self._ready_timer.cancel()
        left = self._started_at + self.settings.supervisor.ready_timeout - time.monotonic()
        self._ready_timer = self._loop.call_later(max(0.0, left), self._ready_timeout)

    def _settled(self, name: str, removed: bool) -> str | None:
        """An agent's reload outcome once it is final, else None."""
        agent = self.agents.get(name)
        if removed:
            return "stopped" if agent is None or not agent.running else None
        if agent is None:
            return "removed"
        state = agent.machine.state
        if state is State.READY:
            return "ready"
        if state is State.FAILED:
            return f"failed: {agent.machine.reason}"
        if state is State.STOPPED:
            return "stopped"
        return None

    async def _settle(self, result: dict) -> dict:
        """Wait until the reload is in effect (see ``reload``); say per agent what happened."""
        targets = {n: False for n in result["restarted"] + result["started"]}
        targets.update({n: True for n in result["stopped"]})
        bound = self.settings.supervisor.reload_timeout
        deadline = time.monotonic() + bound
        outcome: dict[str, str] = {}
        while True:
            for name, removed in targets.items():
                if name not in outcome and (verdict := self._settled(name, removed)):
                    outcome[name] = verdict
            left = deadline - time.monotonic()
            if len(outcome) == len(targets) or left <= 0 or self._shutting_down:
                break
            await self._wait_changed(left)
        why = ("the supervisor began stopping" if self._shutting_down
               else f"reload_timeout ({bound:g}s) passed")
        for name in targets:
            if name not in outcome:
                agent = self.agents.get(name)
                state = agent.machine.state.value if agent else "gone"
                reason = f" ({agent.machine.reason})" if agent and agent.machine.reason else ""
                outcome[name] = f"not settled: {state}{reason}; {why}"
        settled = all(not v.startswith("not settled") for v in outcome.values())
        return {"agents": outcome, "settled": settled}
