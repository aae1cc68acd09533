"""Signals that arrive before the supervisor's event loop runs.

``hvsupervisor run`` spends its first few hundred milliseconds importing
oslo.config and resolving plans. With the default dispositions, a SIGHUP in
that window (a `systemctl reload` racing the start, a config-management run
sending HUP to every supervisor) killed it with rc 129. So the very first
thing `run` does is install these handlers; they only remember what came:

* SIGHUP: a reload is due once the loop runs (the config may have changed
  after it was read);
* SIGTERM / SIGINT: stop; checked before anything is started, and handed to
  the loop, which then stops whatever it had begun.

The asyncio loop replaces them with its own handlers (``loop.add_signal_handler``)
and calls ``handover`` to act on what was remembered. Kept free of imports
beyond the standard library so that installing it costs nothing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable


class EarlySignals:
    def __init__(self) -> None:
        self.stop: int | None = None
        self.reload = False

    def install(self) -> None:
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._remember)

    def _remember(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        else:
            self.stop = signum

    def handover(self, on_stop: Callable[[], None], on_reload: Callable[[], None]) -> None:
        """Act once on what arrived early (the loop's own handlers are installed)."""
        if self.stop is not None:
            on_stop()
        elif self.reload:
            on_reload()
        self.stop, self.reload = None, False


PENDING = EarlySignals()
