"""The libvirt gate: nova-compute may run only while the libvirtd it will use answers.

How it watches (event-driven, no polling while open): libvirt-python's
``libvirtaio`` event implementation runs on one private asyncio loop in a
daemon thread (``_EventThread``). Every libvirt call of this module happens on
that thread, because libvirt's event callbacks are process-global and libvirtaio
is not thread-safe; and a blocking ``virConnectOpen`` (libvirtd answers only
after its drivers are up, 8-16 s on a cold start) then never stalls the
supervisor loop. An open gate holds one connection with a close callback
(``virConnectRegisterCloseCallback``): libvirtd exiting closes the socket, the
event loop sees EOF and the callback fires, so the gate shuts at once. Keepalive
is off by default (it would wake every few seconds); a killed or restarted
libvirtd is noticed through EOF. A *hung* libvirtd is only noticed with
``keepalive=(interval, count)``.

libvirt-python is optional: it is imported lazily, and without it the gate
reports NOT_INSTALLED.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from typing import Any

from hvsupervisor.host.gate import GateStatus
from hvsupervisor.host.watch import RetryingGate

Lookup = Callable[[str, str], "str | None"]

# nova's rule (nova/virt/libvirt/driver.py, LibvirtDriver._uri): an explicit
# [libvirt] connection_uri wins; otherwise the URI follows [libvirt] virt_type
# (default "kvm"): uml -> uml:///system, xen -> xen:///, lxc -> lxc:///,
# parallels -> parallels:///system, anything else (kvm, qemu) -> qemu:///system.
_URI_BY_VIRT_TYPE = {
    "uml": "uml:///system",
    "xen": "xen:///",
    "lxc": "lxc:///",
    "parallels": "parallels:///system",
}
DEFAULT_URI = "qemu:///system"


def libvirt_uri(lookup: Lookup) -> str:
    """The URI nova-compute will open, from its effective configuration."""
    explicit = lookup("libvirt", "connection_uri")
    if explicit:
        return explicit
    virt_type = (lookup("libvirt", "virt_type") or "kvm").strip().lower()
    return _URI_BY_VIRT_TYPE.get(virt_type, DEFAULT_URI)


# What the gate and ``check`` say when libvirt-python is absent: the module
# name, the interpreter that looked for it, and the install line that adds it.
NOT_INSTALLED = (
    "libvirt-python not installed: python module 'libvirt' not importable by "
    f"{sys.executable} (pip install 'hvsupervisor[libvirt]')"
)


def _import_libvirt() -> Any | None:
    try:
        import libvirt
    except ImportError:
        return None
    # libvirt prints every error to stderr by default; we report them ourselves.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _version(n: int) -> str:
    return f"{n // 1_000_000}.{n // 1000 % 1000}.{n % 1000}"


def parse_capabilities(xml_text: str) -> dict[str, Any]:
    """Host arch, and per guest arch the domain types (qemu, kvm, ...) libvirt offers."""
    root = ET.fromstring(xml_text)
    host_arch = root.findtext("host/cpu/arch") or ""
    guests: dict[str, list[str]] = {}
    for arch in root.findall("guest/arch"):
        types = guests.setdefault(arch.get("name", ""), [])
        for dom in arch.findall("domain"):
            dtype = dom.get("type", "")
            if dtype and dtype not in types:
                types.append(dtype)
    domain_types = guests.get(host_arch, [])
    return {
        "arch": host_arch,
        "domain_types": domain_types,
        "kvm": "kvm" in domain_types,
        "guest_arches": sorted(guests),
    }


def describe(uri: str, conn: Any) -> GateStatus:
    """Read what nova needs to know from an open connection (an open status)."""
    caps = parse_capabilities(conn.getCapabilities())
    details: dict[str, Any] = {
        "uri": uri,
        "hypervisor": conn.getType(),
        "hypervisor_version": _version(conn.getVersion()),
        "libvirt_version": _version(conn.getLibVersion()),
        **caps,
    }
    types = ",".join(caps["domain_types"]) or "none"
    kvm = "KVM usable" if caps["kvm"] else "no KVM (TCG only)"
    reason = (
        f"libvirt {uri}: {details['hypervisor']} {details['hypervisor_version']}, "
        f"domain types {types}, {kvm}"
    )
    return GateStatus("libvirt", True, reason, details)


def _error(uri: str, exc: BaseException) -> GateStatus:
    msg = exc.get_error_message() if hasattr(exc, "get_error_message") else str(exc)
    return GateStatus("libvirt", False, f"libvirt {uri}: {msg}", {"uri": uri})


class _EventThread:
    """The one thread (per process) that owns libvirt's asyncio event loop."""

    _lock = threading.Lock()
    _instance: _EventThread | None = None

    def __init__(self, libvirt: Any) -> None:
        import libvirtaio

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            libvirtaio.virEventRegisterAsyncIOImpl(self.loop)
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, name="libvirt-events", daemon=True)
        self.thread.start()
        ready.wait()

    @classmethod
    def get(cls, libvirt: Any) -> _EventThread:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(libvirt)
            return cls._instance

    @classmethod
    def running(cls) -> _EventThread | None:
        return cls._instance

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


class LibvirtGate(RetryingGate):
    """Open while ``uri`` accepts a connection and returns its capabilities."""

    def __init__(
        self,
        uri: str,
        *,
        keepalive: tuple[int, int] | None = None,
        probe_timeout: float = 30.0,
    ) -> None:
        super().__init__("libvirt")
        self.uri = uri
        self._keepalive = keepalive
        self._probe_timeout = probe_timeout
        self._conn: Any = None
        self._lost: asyncio.Future[GateStatus] | None = None

    # -- one-shot ---------------------------------------------------------
    def probe(self) -> GateStatus:
        """Open, read capabilities, close. Runs on the event thread if one exists.

        A cold-starting libvirtd answers only after its drivers are up, so
        the wait is bounded by ``probe_timeout`` (the open itself cannot be
        interrupted; on timeout a daemon thread is left to finish it).
        """
        libvirt = _import_libvirt()
        if libvirt is None:
            return GateStatus("libvirt", False, NOT_INSTALLED, {"uri": self.uri})
        events = _EventThread.running()
        if events is not None:
            future = events.submit(self._probe_async(libvirt))
        else:
            future = concurrent.futures.Future()

            def work() -> None:
                try:
                    future.set_result(self._probe_sync(libvirt))
                except BaseException as exc:  # handed to the waiting caller
                    future.set_exception(exc)

            threading.Thread(target=work, name="libvirt-probe", daemon=True).start()
        try:
            return future.result(self._probe_timeout)
        except concurrent.futures.TimeoutError:
            return GateStatus(
                "libvirt",
                False,
                f"libvirt {self.uri}: no answer within {self._probe_timeout:g} s "
                "(libvirtd starting or hung)",
                {"uri": self.uri},
            )

    def _probe_sync(self, libvirt: Any) -> GateStatus:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            return _error(self.uri, exc)
        try:
            return describe(self.uri, conn)
        except libvirt.libvirtError as exc:
            return _error(self.uri, exc)
        finally:
            conn.close()

    async def _probe_async(self, libvirt: Any) -> GateStatus:
        return self._probe_sync(libvirt)

    def count_instances(self) -> concurrent.futures.Future[int] | None:
        """The active domains on the open connection (nova's own instance count,
        doc/upstream-behaviour.md section 17), on the event thread; None while shut."""
        conn = self._conn
        events = _EventThread.running()
        if conn is None or events is None:
            return None

        async def count() -> int:
            return int(conn.numOfDomains())

        return events.submit(count())

    # -- watch ------------------------------------------------------------
    async def start(self, on_change: Callable[[GateStatus], None]) -> None:
        if _import_libvirt() is None:
            # Nothing will ever change without a restart of the supervisor.
            self._on_change = on_change
            self._emit(
                GateStatus("libvirt", False, NOT_INSTALLED, {"uri": self.uri})
            )
            return
        await super().start(on_change)

    async def _connect(self) -> GateStatus:
        libvirt = _import_libvirt()
        events = _EventThread.get(libvirt)
        main_loop = asyncio.get_running_loop()
        lost: asyncio.Future[GateStatus] = main_loop.create_future()
        self._lost = lost

        def closed(_conn: Any, reason: int, _opaque: Any) -> None:
            # Runs on the event thread when libvirtd goes away.
            why = {
                libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "connection closed by libvirtd",
                libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timeout",
                libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "connection lost (libvirtd went away?)",
            }.get(reason, f"connection closed (reason {reason})")
            status = GateStatus("libvirt", False, f"libvirt {self.uri}: {why}", {"uri": self.uri})

            def resolve() -> None:
                if not lost.done():
                    lost.set_result(status)

            main_loop.call_soon_threadsafe(resolve)

        async def open_and_watch() -> tuple[Any, GateStatus]:
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                return None, _error(self.uri, exc)
            try:
                status = describe(self.uri, conn)
                if self._keepalive:
                    conn.setKeepAlive(*self._keepalive)
                else:
                    conn.setKeepAlive(-1, 0)  # no idle wakeups; EOF still closes
                conn.registerCloseCallback(closed, None)
            except libvirt.libvirtError as exc:
                conn.close()
                return None, _error(self.uri, exc)
            return conn, status

        self._conn, status = await asyncio.wrap_future(events.submit(open_and_watch()))
        return status

    async def _until_lost(self) -> GateStatus:
        assert self._lost is not None
        return await self._lost

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        libvirt = _import_libvirt()
        events = _EventThread.get(libvirt)

        async def close() -> None:
            try:
                conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass
            try:
                conn.close()
            except libvirt.libvirtError:
                pass

        # Bounded: the event thread may be stuck in an open() to a hung libvirtd.
        try:
            async with asyncio.timeout(5):
                await asyncio.wrap_future(events.submit(close()))
        except TimeoutError:
            pass
