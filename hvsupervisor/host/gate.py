"""The host-gate interface: one small contract that each host service implements.

A gate answers one question for the supervisor: "is the host service this agent
needs usable right now, and if not, why?". nova-compute needs libvirtd,
the neutron agents need ovsdb. The shape follows os-vif's ``plugin.py``: an
abstract class with a handful of typed methods whose docstrings are the contract,
so that the supervisor loop (and ``hvsupervisor check``) never learns how a
particular service is reached.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Any

OnChange = Callable[["GateStatus"], None]


@dataclasses.dataclass(frozen=True)
class GateStatus:
    """One observation of a gate.

    ``reason`` is a single human line meant for the status line and the log, e.g.
    ``"ovsdb unix:/run/openvswitch/db.sock: connection refused"``; it is set
    whether the gate is open or shut. ``details`` carries machine-readable facts
    (hypervisor type, missing bridges, ...) for ``check --json`` and the status API.
    """

    name: str
    open: bool
    reason: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class Gate(abc.ABC):
    """A host service an agent depends on.

    Life cycle: ``probe()`` may be called at any time for a one-shot answer (used
    by ``hvsupervisor check``). ``start()`` begins watching; the gate then calls
    ``on_change`` on the event loop thread each time ``open`` or ``reason``
    changes, first with the initial observation. ``stop()`` ends the watch.
    """

    #: Short identifier, as used in ``host_gates`` of the agent catalog.
    name: str

    @abc.abstractmethod
    def probe(self) -> GateStatus:
        """Check the service once, synchronously, and return what was seen.

        Must not leave any connection, thread or timer behind, must not change
        the host (no bridge creation), and must return within a few seconds
        even if the service hangs. Never raises for service faults: they are
        reported as a shut status with a reason.
        """

    @abc.abstractmethod
    async def start(self, on_change: OnChange) -> None:
        """Start watching the service from the running asyncio loop.

        Returns once the watch is set up (not when the gate opens). After
        that, ``on_change(status)`` is called from the loop thread for the first
        observation and for every later change of ``open`` or ``reason``; never
        twice in a row with an equal status. While shut the gate retries with
        a capped backoff; while open it should cost no periodic wakeups.
        Calling ``start`` twice without ``stop`` is an error.
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop watching and release every connection, fd and task.

        Idempotent. No ``on_change`` call happens after it returns.
        """

    @property
    @abc.abstractmethod
    def status(self) -> GateStatus:
        """The last observation (a shut "not checked yet" status before start)."""
