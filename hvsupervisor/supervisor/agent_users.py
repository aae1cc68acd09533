"""Agents that run as their own users: the broker, the drop, ownership.

A mixin like the others; the rules live in hvsupervisor/privsep/ (policy,
identity, planning) and the file-system work in privsep/ownership.py. What
this adds to the loop:

* the privsep broker, on this loop, listening for exactly the user-run
  agents of the current plans (reconfigured on reload), told each agent's
  main pid, and handed every reaped pid first (its helpers are our children);
* before each start of a user-run agent: its directories, log file and
  override config files made its own (ownership.py), its notify socket
  chowned to it, and the run/log/notify dirs made traversable (0711);
* the spawn argv prefixed with setpriv (identity.drop_argv), HOME/USER/LOGNAME
  set as systemd's User= would;
* ovsdb's socket made root:openvswitch 0770 whenever the ovsdb gate opens
  (ovsdb-server recreates it root:root 0750 on every start).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hvsupervisor.config import privsep_env
from hvsupervisor.config.plan import Plan
from hvsupervisor.privsep import grants, ownership
from hvsupervisor.privsep import identity as identity_mod
from hvsupervisor.privsep.broker import Broker
from hvsupervisor.supervisor.agent import Agent

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package

TRAVERSE = 0o711


class UserAgents:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: user-run agents."""

    broker: Broker | None = None

    def _start_broker(self, plans: dict[str, Plan]) -> None:
        assert self._loop is not None
        self.broker = Broker(self.settings.run_dir / privsep_env.SOCK_DIR, self._loop)
        self._configure_broker(plans)

    def _configure_broker(self, plans: dict[str, Plan]) -> None:
        if self.broker is None:
            return
        allowed = {n: g for n, p in plans.items() if (g := grants.grant_for(p)) is not None}
        if allowed:
            for d in (self.settings.run_dir, self.settings.run_dir / "notify",
                      self.settings.log_dir):
                os.chmod(d, TRAVERSE)
            for d in (*self.settings.run_dir.parents, *self.settings.log_dir.parents):
                if not d.stat().st_mode & 0o001:
                    LOG.warning("event=not-traversable path=%s: agents that run as users "
                                "cannot reach their sockets or logs below it", d)
        self.broker.configure(allowed)

    def _close_broker(self) -> None:
        if self.broker is not None:
            self.broker.close()

    def _prepare_user_agent(self, agent: Agent) -> str | None:
        """Make the agent's files its own; a reason to fail the spawn, or None."""
        ident = agent.plan.identity
        if ident is None:
            return None
        try:
            for directory in agent.plan.directories:
                n = ownership.take_over(directory, ident.uid, ident.gid)
                if n:
                    LOG.info("event=chown agent=%s path=%s entries=%d owner=%s", agent.name,
                             directory, n, ident.describe())
            ownership.prepare_log_file(self.settings.log_dir / f"{agent.name}.log",
                                       ident.uid, ident.gid)
            override = str(self.settings.override_dir) + os.sep
            for f in agent.plan.files:
                if f.path.startswith(override):
                    problem = ownership.share_config_file(f.path, ident.gid)
                    if problem:
                        LOG.warning("agent=%s: %s", agent.name, problem)
            if agent.listener is not None:
                os.chown(agent.listener.path, ident.uid, ident.gid)
        except OSError as exc:
            return f"cannot prepare files for user {ident.user}: {exc}"
        return None

    @staticmethod
    def _user_argv_env(plan: Plan, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """argv/env for the spawn: through setpriv when the agent runs as a user."""
        ident = plan.identity
        if ident is None:
            return list(plan.argv), env
        user_env = identity_mod.user_env(ident)
        env.update({k: v for k, v in user_env.items() if k not in plan.env})
        return identity_mod.drop_argv(ident, plan.argv), env

    def _share_ovsdb(self, remote: str) -> None:
        """After every ovsdb (re)start: db.sock reachable by group openvswitch."""
        gid = ownership.ovs_gid()
        if gid is None or not any(
                a.plan.identity is not None and gid in (a.plan.identity.gid,
                                                        *a.plan.identity.groups)
                for a in self.agents.values()):
            return
        try:
            done = ownership.share_ovsdb_socket(remote)
        except OSError as exc:
            LOG.warning("event=ovsdb-socket-share-failed remote=%s error=%s", remote, exc)
            return
        if done:
            LOG.info("event=ovsdb-socket-shared %s", done)


def sock_path(run_dir: Path, agent: str) -> Path:
    return privsep_env.broker_socket(run_dir, agent)
