"""The watch loop shared by gates: connect, wait for loss, retry with capped backoff.

Each concrete gate supplies two coroutines: ``_connect()`` (one attempt; returns a
status, open or shut) and ``_until_lost()`` (returns the shut status once an open
connection is lost or the service no longer fits). This module owns the policy
around them: deduplicated ``on_change`` calls, a backoff that restarts small
after each success and is capped (so a service coming back is noticed within
``max_delay``), and clean cancellation on ``stop()``.
"""

from __future__ import annotations

import abc
import asyncio
import logging

from hvsupervisor.core.restart_policy import next_delay
from hvsupervisor.host.gate import Gate, GateStatus, OnChange

LOG = logging.getLogger(__name__)


class RetryingGate(Gate):
    """A gate whose watch is "try, hold while open, back off while shut"."""

    def __init__(self, name: str, initial_delay: float = 0.05, max_delay: float = 0.5) -> None:
        self.name = name
        self._initial = initial_delay
        self._cap = max_delay
        self._status = GateStatus(name, False, f"{name}: not checked yet", {})
        self._on_change: OnChange | None = None
        self._task: asyncio.Task[None] | None = None
        self._reported = False
        self.retry_delay = 0.0  # the current wait between attempts while shut

    @property
    def status(self) -> GateStatus:
        return self._status

    async def start(self, on_change: OnChange) -> None:
        if self._task is not None:
            raise RuntimeError(f"gate {self.name} already started")
        self._on_change = on_change
        self._reported = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"gate-{self.name}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._on_change = None
        while task is not None and not task.done():
            # Repeat: a cancellation racing with a completed inner future can
            # be swallowed by library code (e.g. 3.11's wait_for).
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled() and task.exception() is not None:
            LOG.error("gate %s watch had failed: %s", self.name, task.exception())
        await self._disconnect()

    def _emit(self, status: GateStatus) -> None:
        changed = (status.open, status.reason) != (self._status.open, self._status.reason)
        first, self._reported = not self._reported, True
        self._status = status
        if (changed or first) and self._on_change is not None:
            try:
                self._on_change(status)
            except Exception:  # a broken observer must not kill the watch
                LOG.exception("on_change for gate %s failed", self.name)

    async def _run(self) -> None:
        delay = 0.0
        while True:
            try:
                status = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # defensive: report, never die silently
                LOG.exception("gate %s: connect attempt failed", self.name)
                status = GateStatus(self.name, False, f"{self.name}: {exc}", {})
            self._emit(status)
            if status.open:
                delay = 0.0
                try:
                    lost = await self._until_lost()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # defensive, as above
                    LOG.exception("gate %s: watch failed", self.name)
                    lost = GateStatus(self.name, False, f"{self.name}: {exc}", {})
                self._emit(lost)
                await self._disconnect()
                continue
            await self._disconnect()
            delay = next_delay(delay, self._initial, self._cap)
            self.retry_delay = delay
            await asyncio.sleep(delay)

    @abc.abstractmethod
    async def _connect(self) -> GateStatus:
        """One attempt: connect and check; keep the connection only if open."""

    @abc.abstractmethod
    async def _until_lost(self) -> GateStatus:
        """Wait (without polling where possible) until the open gate shuts."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Drop whatever ``_connect`` kept. Idempotent."""
