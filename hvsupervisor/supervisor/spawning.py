"""Spawning agents and probing the world: processes, readiness probes, host gates.

Turns ``Spawn`` into a process with its output wired to the journal (or a
log file) and its own notify socket, starts the readiness probe its plan
names (tcp, unix, ovsdb-bridge; rpc and http through supervisor/health_watch.py)
and watches the host gates (libvirtd, ovsdb) whose changes become
``GateChanged`` events. Every result goes back
to the loop as an event (``self._post`` then ``self._drain``), never as a
direct state change.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from hvsupervisor.core.lifecycle import BecameReady, ProbeFailed, Spawned, SpawnFailed
from hvsupervisor.health.readiness import wait_accepting, wait_bridge
from hvsupervisor.process import children
from hvsupervisor.supervisor.agent import Agent
from hvsupervisor.supervisor.health_watch import HEALTH_KINDS
from hvsupervisor.systemd import journal

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package

# Traverse-only for others: qemu runs as libvirt-qemu and must reach instance
# disks under {state_dir}/nova/instances; nobody else may list them.
AGENT_DIR_MODE = 0o711
PROBE_KINDS = ("tcp", "unix", "ovsdb-bridge", *HEALTH_KINDS)


def last_line(path: Path | None, limit: int = 4096) -> str | None:
    """The last non-empty line of an agent's output file, for STATUS= on failure."""
    if path is None:
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else None


class Spawning:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: spawn, probe, gates.

    Uses the loop's ``agents``, ``_post``/``_drain`` and ``_pid_to_agent``;
    owns ``gates`` and ``_gate_key``.
    """

    def _output_fds(self, agent: Agent) -> tuple[int, int]:
        # Decided per spawn: a reload may change [supervisor] journal_socket.
        agent.log_path = None if self._use_journal else self.settings.log_dir / f"{agent.name}.log"
        if self._use_journal:
            path = self.settings.supervisor.journal_socket
            try:
                # One stream for stdout and stderr: oslo.log writes every level
                # to one of them, and one stream keeps a traceback in order.
                out = journal.journal_stream(agent.name, 6, path)
                return out, os.dup(out)
            except OSError as exc:
                LOG.warning("journal stream for %s failed (%s); writing %s.log instead",
                            agent.name, exc, agent.name)
                agent.log_path = self.settings.log_dir / f"{agent.name}.log"
        assert agent.log_path is not None
        fd = journal.log_file_fd(str(agent.log_path))
        return fd, os.dup(fd)

    def _spawn(self, agent: Agent) -> None:
        for directory in agent.plan.directories:
            try:
                os.makedirs(directory, mode=AGENT_DIR_MODE, exist_ok=True)
            except OSError as exc:
                self._post(agent.name, SpawnFailed(f"cannot create {directory}: {exc.strerror}"))
                return
        problem = self._prepare_user_agent(agent)  # agent_users.py; None for root agents
        if problem:
            LOG.error("event=spawn-failed agent=%s %s", agent.name, problem)
            self._post(agent.name, SpawnFailed(problem))
            return
        env = children.child_env(os.environ, agent.plan.env)
        if agent.listener is not None:
            env["NOTIFY_SOCKET"] = agent.listener.path
        try:
            out, err = self._output_fds(agent)
        except OSError as exc:
            self._post(agent.name, SpawnFailed(f"cannot open output: {exc}"))
            return
        try:
            argv, env = self._user_argv_env(agent.plan, env)
            if argv != list(agent.plan.argv):  # setpriv first: check the agent's binary too
                children.resolve_executable(agent.plan.argv[0], env)
            pid = None
            if agent.plan.start == "preload":  # preloading.py; None: exec it
                pid = self._preload_spawn(agent, env, out, err)
            if pid is None:
                pid = children.spawn(argv, env, out, err)
        except children.SpawnError as exc:
            LOG.error("event=spawn-failed agent=%s %s", agent.name, exc)
            self._post(agent.name, SpawnFailed(str(exc)))
            return
        finally:
            os.close(out)
            os.close(err)
        self._pid_to_agent[pid] = agent.name
        if self.record is not None:
            try:
                self.record.add(agent.name, pid)
            except OSError as exc:
                LOG.warning("agent=%s pid=%d: not recorded in %s (%s): a supervisor killed now "
                            "would leave it running", agent.name, pid, self.record.directory, exc)
        if self.broker is not None:
            self.broker.set_main_pid(agent.name, pid)
        LOG.info("event=spawn agent=%s pid=%d digest=%s", agent.name, pid,
                 agent.plan.digest[:12])
        agent.pending = ""  # a new process runs what is on disk now (process/codechange.py)
        self._post(agent.name, Spawned(pid))
        if agent.plan.ready.kind in PROBE_KINDS:
            agent.probe = self._background(
                self._probe(agent.name, pid, time.monotonic()), f"readiness probe of {agent.name}",
                lambda error, name=agent.name, pid=pid: self._probe_failed(name, pid, error))

    def _probe_failed(self, name: str, pid: int, error: str) -> None:
        """The probe raised: the agent fails with the error, not "starting" for ever."""
        agent = self.agents.get(name)
        if agent is not None and agent.probe is not None and agent.probe.done():
            agent.probe = None
        self._post(name, ProbeFailed(pid, error))
        self._drain()

    async def _probe(self, name: str, pid: int, spawned: float) -> None:
        agent = self.agents.get(name)
        if agent is None:
            return
        rule = agent.plan.ready
        if rule.kind == "ovsdb-bridge":
            assert rule.bridge is not None
            await wait_bridge(self._ovsdb_remote(), rule.bridge, spawned=spawned, pid=pid)
        elif rule.kind in HEALTH_KINDS:
            if not await self._wait_serving(agent, pid):
                return
        else:
            await wait_accepting(rule)
        agent.probe = None
        self._post(name, BecameReady(pid))
        self._drain()

    # ------------------------------------------------------------------ gates

    def _gate_state(self, agent: Agent) -> tuple[bool, str]:
        for gate_name in agent.plan.host_gates:
            gate = self.gates.get(gate_name)
            if gate is None:
                continue
            st = gate.status
            if not st.open:
                return False, st.reason
        return True, ""

    def _on_gate_change(self, status) -> None:
        LOG.info("event=gate gate=%s open=%s reason=%s", status.name, status.open, status.reason)
        if status.name == "ovsdb" and status.open:
            self._share_ovsdb(self._ovsdb_remote())  # agent_users.py: before any agent starts
        self._refresh_conditions()
        self._drain()

    def _ovsdb_remote(self) -> str:
        """The ovsdb the node's agents use: the ovsdb gate's, else neutron's default."""
        ovsdb = getattr(self._gate_key, "ovsdb", None)
        if ovsdb:
            return ovsdb[0]
        from hvsupervisor.host.ovsdb import DEFAULT_REMOTE

        return DEFAULT_REMOTE

    async def _replace_gates(self, key: object, gates: dict) -> None:
        old, self.gates, self._gate_key = self.gates, gates, key
        for gate in old.values():
            await gate.stop()
        for name, gate in gates.items():
            LOG.info("event=gate-watch gate=%s", name)
            await gate.start(self._on_gate_change)
        self._refresh_conditions()
