"""The ovsdb gate: neutron's OVS agents may run only while their ovsdb answers
and the bridges named in ``bridge_mappings`` exist.

How it watches (event-driven): the ``ovs`` IDL is driven from the asyncio loop
through ``_AsyncPoller``, which records what the IDL asks to wait for (its
socket fds and its next timer) and turns that into ``loop.add_reader`` /
``add_writer`` and one ``call_later`` timer. Inactivity probes are disabled
(``probe_interval=0``; OVS already disables them for unix sockets), so an open,
idle gate registers one fd and no timer: zero periodic wakeups. ovsdb-server
exiting closes the socket; the IDL sees EOF and the gate shuts. A bridge deleted
while open shuts the gate too (or is re-created with ``ensure``).

One module, over 400 lines, on purpose: the gate, the bridge checks and the
OpenFlow-controller readiness check share the IDL session and its rules.

While shut, each attempt first connects a plain socket to the remote, which
gives a precise reason ("connection refused", "no such file or directory")
before the IDL is built.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from hvsupervisor.host import ofconn
from hvsupervisor.host.gate import GateStatus
from hvsupervisor.host.watch import RetryingGate

Lookup = Callable[[str, str], "str | None"]

SCHEMA_FILE = "/usr/share/openvswitch/vswitch.ovsschema"

# neutron's defaults (neutron/conf/agent/ovsdb_api.py and
# neutron/conf/plugins/ml2/drivers/ovs_conf.py): [ovs] ovsdb_connection =
# tcp:127.0.0.1:6640, bridge_mappings = [] (physnet:bridge list),
# datapath_type = system, integration_bridge = br-int.
DEFAULT_REMOTE = "tcp:127.0.0.1:6640"
DEFAULT_DATAPATH = "system"
DEFAULT_INTEGRATION_BRIDGE = "br-int"

# Only what the gate reads or writes is replicated.
_COLUMNS = {
    "Open_vSwitch": ["bridges"],
    "Bridge": ["name", "datapath_type", "ports", "controller"],
    "Port": ["name", "interfaces"],
    "Interface": ["name", "type"],
    "Controller": ["target", "is_connected", "status"],
}


class SettingsError(ValueError):
    """An ovs option neutron would also reject; the message names it."""


def parse_bridge_mappings(value: str | None) -> dict[str, str]:
    """``physnet1:br-ex, physnet2:br-eth1`` -> {physnet: bridge} (order kept)."""
    mappings: dict[str, str] = {}
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        physnet, sep, bridge = item.rpartition(":")
        physnet, bridge = physnet.strip(), bridge.strip()
        if not sep or not physnet or not bridge:
            raise SettingsError(
                f"[ovs] bridge_mappings: {item!r} is not <physical_network>:<bridge>"
            )
        if physnet in mappings:
            raise SettingsError(f"[ovs] bridge_mappings: physical network {physnet!r} twice")
        mappings[physnet] = bridge
    return mappings


def ovsdb_settings(lookup: Lookup) -> tuple[str, list[str], str, str]:
    """(remote, bridges, datapath_type, integration_bridge) from neutron's effective config.

    Bridges come from ``[ovs] bridge_mappings`` in order, without duplicates.
    """
    remote = (lookup("ovs", "ovsdb_connection") or DEFAULT_REMOTE).strip()
    if not remote.startswith(("tcp:", "ssl:", "unix:")):
        # neutron's option has regex ^(tcp|ssl|unix):.+
        raise SettingsError(f"[ovs] ovsdb_connection: {remote!r} is not tcp:, ssl: or unix:")
    bridges: list[str] = []
    for bridge in parse_bridge_mappings(lookup("ovs", "bridge_mappings")).values():
        if bridge not in bridges:
            bridges.append(bridge)
    datapath = (lookup("ovs", "datapath_type") or DEFAULT_DATAPATH).strip()
    integration = (lookup("ovs", "integration_bridge") or DEFAULT_INTEGRATION_BRIDGE).strip()
    return remote, bridges, datapath, integration


def _plural(names: list[str]) -> str:
    return ("bridge " if len(names) == 1 else "bridges ") + ", ".join(names)


def _os_reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def _import_ovs_without_green_threads() -> None:
    """Import ``ovs.poller`` (under ``ovs.db.idl``) without eventlet or gevent.

    ovs.poller tries ``import eventlet`` and ``import gevent`` to learn whether
    ``select`` is monkey-patched. On a node eventlet is installed beside neutron,
    and importing it costs about 0.45 s of CPU (measured with ovs 3.x and
    eventlet 0.41, ``python -X importtime -c "import ovs.db.idl"``), in the
    asyncio loop, before the first gated agent can start. This process never
    uses green threads, so the answer is "not patched": both names are blocked
    (``sys.modules[name] = None`` makes the import raise ImportError, which
    ovs.poller catches) for the one import, and restored afterwards.
    """
    if "ovs.poller" in sys.modules:
        return
    blocked = [n for n in ("eventlet", "gevent") if n not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import ovs.poller  # noqa: F401
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


class _AsyncPoller:
    """Stands in for ``ovs.poller.Poller``: records what to wait for."""

    def __init__(self) -> None:
        self.fds: dict[int, int] = {}
        self.timeout = -1  # ms, as ovs.poller.Poller

    def fd_wait(self, fd: Any, events: int) -> None:
        fileno = fd if isinstance(fd, int) else fd.fileno()
        self.fds[fileno] = self.fds.get(fileno, 0) | events

    def timer_wait(self, msec: int) -> None:
        if msec <= 0:
            self.timeout = 0
        elif self.timeout < 0 or msec < self.timeout:
            self.timeout = msec

    def timer_wait_until(self, msec: int) -> None:
        import ovs.timeval

        self.timer_wait(msec - ovs.timeval.msec())

    def immediate_wake(self) -> None:
        self.timeout = 0

    async def block(self, cap: float | None = None) -> None:
        """Wait on the loop until a recorded fd is ready or the timer expires."""
        loop = asyncio.get_running_loop()
        woken = loop.create_future()

        def wake() -> None:
            if not woken.done():
                woken.set_result(None)

        readers, writers = [], []
        for fd, ev in self.fds.items():
            if ev & (select.POLLIN | select.POLLPRI):
                loop.add_reader(fd, wake)
                readers.append(fd)
            if ev & select.POLLOUT:
                loop.add_writer(fd, wake)
                writers.append(fd)
        timeout = None if self.timeout < 0 else self.timeout / 1000
        if cap is not None:
            timeout = cap if timeout is None else min(timeout, cap)
        # A plain timer, not wait_for: Python 3.11's wait_for can swallow a
        # cancellation that races with the fd becoming ready.
        timer = loop.call_later(timeout, wake) if timeout is not None else None
        try:
            await woken
        finally:
            if timer is not None:
                timer.cancel()
            for fd in readers:
                loop.remove_reader(fd)
            for fd in writers:
                loop.remove_writer(fd)


class OvsdbGate(RetryingGate):
    """Open while ``remote`` answers and every bridge in ``bridges`` exists."""

    def __init__(
        self,
        remote: str,
        bridges: list[str],
        ensure: bool = False,
        datapath_type: str = DEFAULT_DATAPATH,
        integration_bridge: str | None = None,
        *,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__("ovsdb")
        self.remote = remote
        self.bridges = list(bridges)
        self.ensure = ensure
        self.datapath_type = datapath_type
        self.integration_bridge = integration_bridge
        self._connect_timeout = connect_timeout
        self._idl: Any = None
        self._schema_json: Any = None

    # -- helpers ----------------------------------------------------------
    def _shut(self, why: str, **details: Any) -> GateStatus:
        return GateStatus(
            "ovsdb", False, f"ovsdb {self.remote}: {why}", {"remote": self.remote, **details}
        )

    def _address(self) -> tuple[int, Any] | None:
        kind, _, rest = self.remote.partition(":")
        if kind == "unix":
            return socket.AF_UNIX, rest
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            return family, (host, int(port))
        return None  # ssl: left to the IDL

    def _new_idl(self) -> Any:
        _import_ovs_without_green_threads()
        import ovs.db.idl
        import ovs.json

        if self._schema_json is None:
            if not os.path.exists(SCHEMA_FILE):
                raise FileNotFoundError(f"{SCHEMA_FILE} (openvswitch-common not installed?)")
            with open(SCHEMA_FILE) as f:
                self._schema_json = ovs.json.from_stream(f)
        helper = ovs.db.idl.SchemaHelper(schema_json=self._schema_json)
        for table, columns in _COLUMNS.items():
            helper.register_columns(table, columns)
        return ovs.db.idl.Idl(self.remote, helper, probe_interval=0)

    def _bridge_names(self) -> set[str]:
        return {row.name for row in self._idl.tables["Bridge"].rows.values()}

    def _evaluate(self) -> GateStatus:
        """Open iff the Open_vSwitch row exists and no required bridge is missing."""
        if not self._idl.tables["Open_vSwitch"].rows:
            return self._shut("database has no Open_vSwitch row (not initialised: ovs-vsctl init)")
        present = self._bridge_names()
        missing = [b for b in self.bridges if b not in present]
        details = {"remote": self.remote, "bridges": sorted(present), "missing": missing}
        if missing:
            return self._shut("missing " + _plural(missing), bridges=sorted(present),
                              missing=missing)
        required = ", ".join(self.bridges) or "none required"
        return GateStatus("ovsdb", True, f"ovsdb {self.remote}: connected, bridges {required}",
                          details)

    def _wanted(self) -> list[str]:
        wanted = list(self.bridges)
        if self.integration_bridge and self.integration_bridge not in wanted:
            wanted.insert(0, self.integration_bridge)
        return wanted

    def _start_ensure_txn(self) -> Any | None:
        """A transaction adding each wanted bridge that is absent (as ``add-br``)."""
        import ovs.db.idl

        present = self._bridge_names()
        todo = [b for b in self._wanted() if b not in present]
        roots = list(self._idl.tables["Open_vSwitch"].rows.values())
        if not todo or not roots:
            return None
        txn = ovs.db.idl.Transaction(self._idl)
        txn.add_comment(f"hvsupervisor: ensure bridges {', '.join(todo)}")
        root = roots[0]
        for name in todo:
            iface = txn.insert(self._idl.tables["Interface"])
            iface.name = name
            iface.type = "internal"
            port = txn.insert(self._idl.tables["Port"])
            port.name = name
            port.interfaces = [iface]
            br = txn.insert(self._idl.tables["Bridge"])
            br.name = name
            br.ports = [port]
            br.datapath_type = self.datapath_type
            root.addvalue("bridges", br.uuid)
        return txn

    # -- async driving ----------------------------------------------------
    async def _step(self, cap: float | None = None) -> None:
        poller = _AsyncPoller()
        self._idl.wait(poller)
        await poller.block(cap)
        self._idl.run()

    async def _until(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        self._idl.run()
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self._step(left)
        return True

    async def _commit(self, txn: Any, timeout: float) -> str:
        import ovs.db.idl

        deadline = time.monotonic() + timeout
        while True:
            status = txn.commit()
            if status != ovs.db.idl.Transaction.INCOMPLETE:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                txn.abort()
                return "timed out"
            await self._step(left)

    async def _ensure(self) -> str | None:
        """Create missing bridges; None on success, else why not."""
        import ovs.db.idl

        txn = self._start_ensure_txn()
        if txn is None:
            return None
        status = await self._commit(txn, self._connect_timeout)
        if status not in (ovs.db.idl.Transaction.SUCCESS, ovs.db.idl.Transaction.UNCHANGED):
            return f"could not create bridges: {status} {txn.get_error() or ''}".strip()
        # Wait for our own insert to come back through the monitor.
        await self._until(lambda: not [b for b in self._wanted()
                                       if b not in self._bridge_names()], self._connect_timeout)
        return None

    async def _connect(self) -> GateStatus:
        address = self._address()
        if address is not None:
            family, addr = address
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await asyncio.get_running_loop().sock_connect(sock, addr)
            except TimeoutError:
                return self._shut(f"no answer within {self._connect_timeout:g} s")
            except OSError as exc:
                return self._shut(_os_reason(exc))
            finally:
                sock.close()
        try:
            self._idl = self._new_idl()
        except (OSError, ValueError) as exc:
            return self._shut(f"cannot load schema: {exc}")
        if not await self._until(self._idl.has_ever_connected, self._connect_timeout):
            return self._shut(f"no database contents within {self._connect_timeout:g} s")
        if self.ensure:
            why = await self._ensure()
            if why:
                return self._shut(why)
        return self._evaluate()

    async def _until_lost(self) -> GateStatus:
        seen = self._idl.change_seqno
        while True:
            await self._step()
            if not self._idl._session.is_connected():
                return self._shut("connection lost (ovsdb-server went away)")
            if self._idl.change_seqno == seen:
                continue
            seen = self._idl.change_seqno
            if self.ensure:
                why = await self._ensure()
                if why:
                    return self._shut(why)
            status = self._evaluate()
            if not status.open:
                return status
            self._emit(status)

    async def _disconnect(self) -> None:
        idl, self._idl = self._idl, None
        if idl is not None:
            idl.close()

    def _bridge_ready(self, bridge: str, max_age: float | None = None,
                      pid: int | None = None) -> tuple[bool, str]:
        row = next((r for r in self._idl.tables["Bridge"].rows.values() if r.name == bridge),
                   None)
        if row is None:
            return False, f"bridge {bridge} not in ovsdb yet"
        controllers = list(row.controller)
        if not controllers:
            return False, (f"bridge {bridge} has no OpenFlow controller yet (the OVS agent "
                           f"sets its own once it has set the bridge up)")
        # The kernel sees this process's connection at once, ovsdb's status rows
        # only at ovs-vswitchd's next refresh (host/ofconn.py).
        if pid is not None and ofconn.connected(pid, [c.target for c in controllers]):
            return True, f"bridge {bridge}: OpenFlow controller connected to pid {pid}"
        if any(c.is_connected and _connected_within(c.status, max_age) for c in controllers):
            return True, f"bridge {bridge}: OpenFlow controller connected"
        targets = ", ".join(sorted(c.target for c in controllers))
        return False, f"bridge {bridge}: controller {targets} not connected"

    # -- one-shot ---------------------------------------------------------
    def probe(self) -> GateStatus:
        """Connect, read the bridges, disconnect. Never creates anything."""
        clone = OvsdbGate(self.remote, self.bridges, False, self.datapath_type,
                          self.integration_bridge, connect_timeout=self._connect_timeout)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(clone._probe_once())
        # Called from a running loop: the probe gets its own loop in a thread.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, clone._probe_once()).result()

    async def _probe_once(self) -> GateStatus:
        try:
            return await self._connect()
        finally:
            await self._disconnect()



def _connected_within(status: dict, max_age: float | None) -> bool:
    """Did this connection start within the last ``max_age`` seconds (None: any)?

    Controller.status:sec_since_connect, refreshed by ovs-vswitchd every few
    seconds; without it (an old OVS) the connection is taken as it is.
    """
    if max_age is None:
        return True
    try:
        since = int(status.get("sec_since_connect", ""))
    except ValueError:
        return True
    return since <= max_age + 1  # whole seconds


async def bridge_ready(remote: str, bridge: str, connect_timeout: float = 5.0,
                       max_age: float | None = None, pid: int | None = None
                       ) -> tuple[bool, str]:
    """Is ``bridge`` in ovsdb with its OpenFlow controller (if it has one) connected?

    That is when the neutron OVS agent is really up: it creates the
    integration bridge and points it at its own OpenFlow controller, to which
    ovs-vswitchd connects (Controller.is_connected) once the agent listens. A
    bridge left over from an earlier run has its controller disconnected
    until the new agent listens, so a restart is not mistaken for ready. A
    bridge with no controller at all is not ready either: ``ensure_bridges``
    (this supervisor) or an operator may have made it before the agent ran,
    and the agent (native OpenFlow, the only interface since neutron 13)
    always sets one (doc/upstream-behaviour.md section 16).
    """
    probe = OvsdbGate(remote, [], connect_timeout=connect_timeout)
    try:
        status = await probe._connect()
        if not status.open:
            return False, status.reason
        return probe._bridge_ready(bridge, max_age, pid)
    finally:
        await probe._disconnect()
