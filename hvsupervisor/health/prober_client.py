"""The supervisor's side of the prober: spawn it, talk to it, respawn it.

All asyncio, nothing blocks: a request is a line written to the socketpair
and a future resolved by the reader task. If the prober dies or stops
answering, pending probes resolve as ``error`` (neither success nor
failure, so a broken prober never gets an agent restarted), and the next
probe spawns a fresh prober, at most once per ``RESPAWN_MIN`` seconds.

The prober is our child (so it shows in ``systemctl status`` under the
unit), in its own session, with the supervisor's stderr as its stdout and
stderr. The Reaper reaps it like any descendant; we notice its death from
the EOF on the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time

from hvsupervisor.health import outcome as oc
from hvsupervisor.health.protocol import (
    MAX_LINE,
    RpcRequest,
    decode_reply,
    encode_request,
)
from hvsupervisor.process import children

LOG = logging.getLogger("hvsupervisor.health")
RESPAWN_MIN = 1.0
# Beyond the probe's own timeout: the login checks before and after the call.
SLACK = 8.0


class ProberClient:
    def __init__(self, argv: list[str] | None = None):
        self.argv = argv or [sys.executable, "-m", "hvsupervisor.health.prober"]
        self.pid: int | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._last_spawn = -RESPAWN_MIN
        self._closed = False

    @property
    def running(self) -> bool:
        return self._writer is not None

    async def _spawn(self) -> None:
        parent, child = socket.socketpair()
        try:
            env = children.child_env(os.environ, {})
            proc = subprocess.Popen(
                self.argv, stdin=child.fileno(), stdout=2, stderr=2, env=env,
                close_fds=True, start_new_session=True, restore_signals=True)
        except OSError as exc:
            parent.close()
            LOG.error("event=prober-spawn-failed error=%s", exc)
            return
        finally:
            child.close()
        proc.returncode = 0  # the supervisor's Reaper owns waitpid() (children.spawn says why)
        self.pid = proc.pid
        self._reader, self._writer = await asyncio.open_connection(sock=parent, limit=MAX_LINE)
        self._task = asyncio.ensure_future(self._read(self._reader))
        LOG.info("event=prober-spawn pid=%d", proc.pid)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    req_id, result = decode_reply(line)
                except (ValueError, KeyError, TypeError) as exc:
                    LOG.warning("prober sent a bad line: %s", exc)
                    continue
                fut = self._pending.pop(req_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(result)
        except (OSError, asyncio.LimitOverrunError, ValueError) as exc:
            LOG.warning("prober connection failed: %s", exc)
        finally:
            if not self._closed:
                LOG.warning("event=prober-exit pid=%s: pending probes count as errors; "
                            "respawned on the next probe", self.pid)
            self._drop("prober exited")

    def _drop(self, why: str) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = self._reader = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result(oc.ProbeResult(oc.ERROR, why))
        self._pending.clear()

    def _kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def probe(self, req: RpcRequest) -> oc.ProbeResult:
        """One RPC probe; never raises, never waits much beyond ``req.timeout``."""
        if self._closed:
            return oc.ProbeResult(oc.ERROR, "supervisor stopping")
        if self._writer is None:
            if time.monotonic() - self._last_spawn < RESPAWN_MIN:
                return oc.ProbeResult(oc.ERROR, "prober restarting")
            self._last_spawn = time.monotonic()
            await self._spawn()
            if self._writer is None:
                return oc.ProbeResult(oc.ERROR, "prober could not start")
        req_id = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        start = time.monotonic()
        try:
            self._writer.write(encode_request(req_id, req))
        except (OSError, RuntimeError) as exc:
            self._pending.pop(req_id, None)
            return oc.ProbeResult(oc.ERROR, f"prober write failed: {exc}")
        try:
            return await asyncio.wait_for(asyncio.shield(fut), req.timeout + SLACK)
        except TimeoutError:
            self._pending.pop(req_id, None)
            LOG.warning("event=prober-stuck pid=%s: no reply in %.0fs, killing it",
                        self.pid, time.monotonic() - start)
            self._kill()
            return oc.ProbeResult(oc.ERROR, "prober did not reply")

    async def close(self) -> None:
        """Stop the prober (before the supervisor stops what its agents left)."""
        self._closed = True
        self._drop("supervisor stopping")
        self._kill()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2.0)
