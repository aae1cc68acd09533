"""Agents with ``start = preload``: forked from a warm preloader, exec as the fallback.

A mixin like the others. The preloaders (process/preload.py) are started with
the supervisor, one per group (core/preload_groups.py: interpreter + identity), so
their imports overlap the first agents' start; a start that finds its
preloader not ready yet, dead, refusing, or older than the code on disk simply
execs, and a preloader whose code went stale is replaced first (no agent is
ever forked from old code). A real failure (not a console script, an import
error, a refused fork) is said once per agent in the journal, until a preload
of that agent works again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from hvsupervisor.config.plan import Plan
from hvsupervisor.core import preload_groups as policy
from hvsupervisor.privsep import identity as identity_mod
from hvsupervisor.process import children
from hvsupervisor.process.preload import Preloader, PreloadError, read_entry
from hvsupervisor.supervisor.agent import Agent

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package


def _ident(plan: Plan) -> str:
    ident = plan.identity
    if ident is None:
        return "root"
    return f"{ident.uid}:{ident.gid}:{','.join(map(str, ident.groups))}"


class Preloading:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: preloaders."""

    _preloaders: dict[str, Preloader]
    _preload_warned: set[str]

    def _preload_groups(self, plans: Mapping[str, Plan]) -> dict[str, tuple[policy.Group, Plan,
                                                                           str]]:
        """Agent -> (its group, its plan, its console script) for every preloadable agent."""
        rows, scripts = [], {}
        for name, plan in plans.items():
            if plan.start != "preload":
                continue
            try:
                script = children.resolve_executable(plan.argv[0], plan.env)
            except children.SpawnError:
                continue
            entry = read_entry(script)
            if entry is not None:
                rows.append((name, entry, _ident(plan)))
                scripts[name] = script
        return {n: (g, plans[n], scripts[n]) for n, g in policy.groups(rows).items()}

    def _start_preloaders(self, plans: Mapping[str, Plan]) -> None:
        self._preloaders, self._preload_warned = {}, set()
        for group, plan, script in self._preload_groups(plans).values():
            if group.key not in self._preloaders:
                self._new_preloader(group, plan, script)

    def _new_preloader(self, group: policy.Group, plan: Plan, script: str) -> Preloader | None:
        pre = Preloader(group, [script])
        env = children.child_env(os.environ, plan.env)
        prefix: list[str] = []
        if plan.identity is not None:
            env.update({k: v for k, v in identity_mod.user_env(plan.identity).items()
                        if k not in plan.env})
            prefix = identity_mod.drop_argv(plan.identity, [])
        out = os.dup(2)  # its few lines (import warnings) go where the supervisor's go
        err = os.dup(2)
        try:
            pid = pre.start(prefix, env, out, err)
        except children.SpawnError as exc:
            LOG.warning("event=preloader-failed group=%s %s", group.key, exc)
            return None
        finally:
            os.close(out)
            os.close(err)
        LOG.info("event=preloader-start group=%s pid=%d modules=%s", group.key, pid,
                 ",".join(group.modules))
        self._preloaders[group.key] = pre
        return pre

    def _preload_spawn(self, agent: Agent, env: Mapping[str, str], out: int, err: int
                       ) -> int | None:
        """The agent forked from its preloader, or None: exec it (said why, once)."""
        plans = {n: a.plan for n, a in self.agents.items()}
        plans[agent.name] = agent.plan
        row = self._preload_groups(plans).get(agent.name)
        if row is None:
            self._preload_fallback(agent, "its command is no console script, or no other "
                                          "agent of its user and interpreter is preloaded "
                                          "(core/preload_groups.py)")
            return None
        group, plan, script = row
        pre = self._preloaders.get(group.key)
        if pre is not None:
            reason = pre.stale_reason() or (
                f"it stopped serving: {pre.error}" if pre.was_ready and not pre.alive else None)
            if reason:
                LOG.info("event=preloader-restart group=%s reason=%s", group.key, reason)
                pre.stop()
                pre = None
        if pre is None:
            self._new_preloader(group, plan, script)
            LOG.info("event=preload-not-ready agent=%s: exec", agent.name)
            return None
        if not pre.poll() and not pre.error:
            LOG.info("event=preload-not-ready agent=%s: exec", agent.name)
            return None
        entry = read_entry(script)
        assert entry is not None
        try:
            pid = pre.fork([script, *plan.argv[1:]], env, out, err, os.getcwd(), entry)
        except PreloadError as exc:
            self._preload_fallback(agent, str(exc))
            return None
        self._preload_warned.discard(agent.name)
        LOG.info("event=preloaded agent=%s pid=%d preloader=%s", agent.name, pid, pre.pid)
        return pid

    def _preload_fallback(self, agent: Agent, why: str) -> None:
        if agent.name not in self._preload_warned:
            self._preload_warned.add(agent.name)
            LOG.warning("event=preload-failed agent=%s %s; starting it by exec", agent.name, why)

    def _stop_preloaders(self) -> None:
        for pre in getattr(self, "_preloaders", {}).values():
            pre.stop()
        self._preloaders = {}
