"""Waiting helper for host tests: ``GateRunner`` (``wait_until`` is in tests/util.py).

GateRunner runs a gate's asyncio watch in a background thread and record what it reports.

Functional tests drive daemons with blocking calls (subprocess) while the gate
watches on its own loop; ``wait_for`` waits on the recorded ``on_change``
calls (a condition variable, no sleeps), and each record carries its
monotonic time so latencies can be measured.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from hvsupervisor.host.gate import Gate, GateStatus


class GateRunner:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.events: list[tuple[float, GateStatus]] = []
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _record(self, status: GateStatus) -> None:
        with self._cond:
            self.events.append((time.monotonic(), status))
            self._cond.notify_all()

    def start(self) -> GateRunner:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.gate.start(self._record), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.gate.stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def wait_for(self, pred: Callable[[GateStatus], bool], timeout: float,
                 after: int = 0) -> tuple[float, GateStatus]:
        """The first recorded status at index >= ``after`` matching ``pred``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for when, st in self.events[after:]:
                    if pred(st):
                        return when, st
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [s.reason for _, s in self.events]
                    raise TimeoutError(f"no matching gate status within {timeout} s; saw {seen}")
                self._cond.wait(left)

    def mark(self) -> int:
        with self._cond:
            return len(self.events)
