"""This node's guests as the supervisor reports them, and what a stop says about them.

The count is libvirt's (the active domains on nova-compute's libvirt URI,
through the libvirt gate's open connection: no control-plane credential).
It is read when someone asks (``status``), on a watchdog tick at most every
``code_check_interval`` (the loop is awake then anyway: the metrics follow
without a timer of their own), and when a stop begins. A stop of the
supervisor or of nova-compute never ends a guest: qemu is libvirtd's child,
not ours, so the journal says how many keep running unmanaged.

Whether nova has this compute service disabled is the control plane's record
(doc/upstream-behaviour.md section 17): the cell database, placement's
``COMPUTE_STATUS_DISABLED`` trait, reached through nova-conductor. The
supervisor asks none of them, so it reports ``unknown`` and says why.
"""

from __future__ import annotations

import asyncio
import logging

LOG = logging.getLogger("hvsupervisor.supervisor")  # one logger for the package

COUNT_TIMEOUT = 2.0  # numOfDomains answers in ms; a hung libvirtd must not hold a stop
DISABLED_UNKNOWN = ("nova keeps it in the cell database and placement; the supervisor does "
                    "not ask them (doc/upstream-behaviour.md section 17)")


class Instances:
    """Mixin of :class:`~hvsupervisor.supervisor.loop.Supervisor`: the guest count.

    Reads the loop's ``gates``; calls ``_metrics_changed``.
    """

    instances: int | None = None

    def compute_disabled(self) -> tuple[str, str]:
        """("yes" | "no" | "unknown", why unknown); "" reason on a node without the gate."""
        if "libvirt" not in self.gates:
            return "unknown", ""
        return "unknown", DISABLED_UNKNOWN

    async def refresh_instances(self) -> int | None:
        """Count the guests now; None (and the count forgotten) if libvirtd does not say."""
        gate = self.gates.get("libvirt")
        future = gate.count_instances() if gate is not None else None
        count = None
        if future is not None:
            try:
                async with asyncio.timeout(COUNT_TIMEOUT):
                    count = await asyncio.wrap_future(future)
            except Exception as exc:  # libvirtError, a hung libvirtd: not known
                LOG.debug("instance count: %s", exc)
        if count != self.instances:
            self.instances = count
            self._metrics_changed()
        return count

    async def note_instances_on_stop(self, what: str) -> None:
        """Say in the journal that ``what`` stopping leaves the guests running."""
        count = await self.refresh_instances()
        if count:
            LOG.warning("event=instances-left-running count=%d stopping=%s: the guests keep "
                        "running (qemu is libvirtd's, not ours); nova does not manage them "
                        "until nova-compute runs again", count, what)
