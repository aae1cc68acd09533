"""The prober: a child process that holds oslo.messaging for the supervisor.

Why a separate process: oslo.messaging (with kombu, amqp, eventlet-aware
utilities) adds tens of MiB and its calls block a thread for up to the probe
timeout. The supervisor's loop must stay small (RSS goal 40 MiB) and never
block, so it speaks the line protocol of health/protocol.py to this process
over a socketpair (our stdin and stdout) and stays free of that weight.
The supervisor respawns us if we die; we exit when the socket closes.

A probe (doc/health.md, doc/upstream-behaviour.md "What each agent consumes"):

1. Log in to the agent's own bus (every host of its transport_url, with
   kombu, which oslo.messaging's rabbit driver uses). Refused: ``bus-down``.
2. ``call`` method ``hvsupervisor_probe_ignore_errors`` on Target(exchange,
   topic, server=the agent's host, version). The agent's RPC server answers
   with NoSuchMethod (a RemoteError here): that is ``answered``. oslo's
   server logs a NoSuchMethod only at DEBUG when the method name ends in
   ``_ignore_errors``, and the version is the agent's own major so the
   dispatcher reaches NoSuchMethod rather than UnsupportedVersion (which it
   logs as an ERROR with a traceback). Nothing is executed in the agent.
3. The call is published with the mandatory flag (``at_least_once``): when
   no queue is bound for (topic, server) the broker returns it at once
   (``unanswered: no consumer``) instead of letting it time out. A queue
   with nobody reading it (the agent is stopped or hung) times out:
   ``unanswered`` if the bus still takes a login afterwards, else ``bus-down``.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from hvsupervisor.health import outcome as oc
from hvsupervisor.health.protocol import (
    MAX_LINE,
    RpcRequest,
    decode_request,
    encode_reply,
)

METHOD = "hvsupervisor_probe_ignore_errors"
RABBIT_GROUP = "oslo_messaging_rabbit"
# (module, options list = group name) that oslo.messaging registers on cfg.CONF only.
_GLOBAL_ONLY_GROUPS = (("oslo_messaging._tracing.client", "oslo_messaging_tracing"),
                       ("oslo_messaging._metrics.client", "oslo_messaging_metrics"))
WORKERS = 8
LOGIN_TIMEOUT = 3.0

LOG = logging.getLogger("hvsupervisor.prober")


def _agent_conf(rabbit: tuple[tuple[str, str], ...]):
    """A private ConfigOpts holding oslo.messaging's options and the agent's
    ``[oslo_messaging_rabbit]`` values, so two agents with different TLS or
    queue settings never share one global (doc/health.md).

    oslo.messaging 18.3 registers ``[oslo_messaging_tracing]`` and
    ``[oslo_messaging_metrics]`` on the global cfg.CONF only, yet its RPC
    client reads them from the transport's conf (doc/upstream-behaviour.md):
    they are registered here too when those modules exist. An option this
    oslo.messaging does not know is skipped, as the agent's own oslo.config
    ignores it; a value it cannot parse is an error of the probe
    (``ERROR``), never ``bus-down``.
    """
    from oslo_config import cfg
    from oslo_messaging import opts as om_opts

    conf = cfg.ConfigOpts()
    for group, opts in om_opts.list_opts():
        conf.register_opts(opts, group=group)
    for module, name in _GLOBAL_ONLY_GROUPS:
        try:
            opts = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue  # an oslo.messaging without it does not read it either
        conf.register_opts(opts, group=name)
    conf([], project="hvsupervisor-prober", default_config_files=[],
         default_config_dirs=[], use_env=False)
    for name, value in rabbit:
        try:
            conf.set_override(name, value, group=RABBIT_GROUP)
        except cfg.NoSuchOptError:
            LOG.debug("[%s] %s: not an option of this oslo.messaging", RABBIT_GROUP, name)
    return conf


def ssl_params(rabbit_conf, hostname: str | None):
    """kombu's ``ssl=`` for a login check, as oslo.messaging's rabbit driver
    builds it (``Connection._fetch_ssl_params``): False, True, or a dict."""
    if not rabbit_conf.ssl:
        return False
    params: dict = {}
    if rabbit_conf.ssl_version:
        import ssl

        version = getattr(ssl, f"PROTOCOL_{rabbit_conf.ssl_version.upper()}", None)
        if version is None:
            raise ValueError(f"[{RABBIT_GROUP}] ssl_version {rabbit_conf.ssl_version!r} "
                             "is not known to this Python")
        params["ssl_version"] = version
    if rabbit_conf.ssl_key_file:
        params["keyfile"] = rabbit_conf.ssl_key_file
    if rabbit_conf.ssl_cert_file:
        params["certfile"] = rabbit_conf.ssl_cert_file
    if rabbit_conf.ssl_ca_file:
        import ssl

        params["ca_certs"] = rabbit_conf.ssl_ca_file
        params["cert_reqs"] = ssl.CERT_REQUIRED
        params["server_hostname"] = hostname
    return params or True


class Bus:
    """One transport_url with one agent's rabbit options: its oslo.messaging
    transport and a login check."""

    def __init__(self, url: str, rabbit: tuple[tuple[str, str], ...] = ()):
        import oslo_messaging

        self._om = oslo_messaging
        self.conf = _agent_conf(rabbit)
        self.parsed = oslo_messaging.TransportURL.parse(self.conf, url)
        self.transport = oslo_messaging.get_rpc_transport(self.conf, url=url)
        hosts = self.parsed.hosts
        # oslo.messaging checks the broker's name only for a one-host URL.
        self.ssl = ssl_params(self.conf[RABBIT_GROUP],
                              hosts[0].hostname if len(hosts) == 1 else None)

    def login(self, timeout: float) -> tuple[bool, str]:
        """(True, "") if any host of the URL accepts an AMQP login."""
        if self.parsed.transport not in ("rabbit", "amqp", "kombu"):
            return True, ""  # in-memory and other drivers: nothing to reach
        import kombu

        last = "no hosts in transport_url"
        for host in self.parsed.hosts:
            conn = kombu.Connection(
                hostname=host.hostname or "localhost", port=host.port or 5672,
                userid=host.username or "guest", password=host.password or "guest",
                virtual_host=self.parsed.virtual_host or "/", transport="pyamqp",
                connect_timeout=timeout, ssl=self.ssl)
            try:
                conn.connect()
                return True, ""
            except Exception as exc:  # every driver error means "cannot log in"
                tls = " (TLS)" if self.ssl else ""
                last = f"{host.hostname}:{host.port or 5672}{tls}: {type(exc).__name__}: {exc}"
            finally:
                conn.release()
        return False, last

    def call(self, req: RpcRequest) -> oc.ProbeResult:
        om = self._om
        start = time.monotonic()

        def result(outcome: str, detail: str) -> oc.ProbeResult:
            return oc.ProbeResult(outcome, detail, time.monotonic() - start)

        up, why = self.login(min(LOGIN_TIMEOUT, req.timeout))
        if not up:
            return result(oc.BUS_DOWN, why)
        target = om.Target(exchange=req.exchange or None, topic=req.topic,
                           server=req.server, version=req.version)
        client = om.get_rpc_client(
            self.transport, target, timeout=req.timeout, retry=0,
            transport_options=om.TransportOptions(at_least_once=True))
        try:
            client.call({}, METHOD)
            return result(oc.ANSWERED, "replied")
        except om.RemoteError as exc:
            return result(oc.ANSWERED, f"RemoteError {exc.exc_type}")
        except om.MessageUndeliverable:
            return result(oc.UNANSWERED, f"no consumer on {req.topic}.{req.server}")
        except om.MessagingTimeout:
            up, why = self.login(LOGIN_TIMEOUT)
            if not up:
                return result(oc.BUS_DOWN, why)
            return result(oc.UNANSWERED, f"no reply on {req.topic}.{req.server} "
                                         f"within {req.timeout:g}s")
        except Exception as exc:  # a driver error mid-call: the bus decides which
            up, why = self.login(LOGIN_TIMEOUT)
            if not up:
                return result(oc.BUS_DOWN, why)
            return result(oc.ERROR, f"{type(exc).__name__}: {exc}")


class Prober:
    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.write_lock = threading.Lock()
        self.buses: dict[tuple, Bus] = {}
        self.bus_lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="probe")

    def bus(self, req: RpcRequest) -> Bus:
        key = (req.url, req.rabbit)
        with self.bus_lock:
            bus = self.buses.get(key)
            if bus is None:
                bus = self.buses[key] = Bus(req.url, req.rabbit)
            return bus

    def reply(self, req_id: int, result: oc.ProbeResult) -> None:
        data = encode_reply(req_id, result)
        with self.write_lock:
            try:
                self.sock.sendall(data)
            except OSError:
                os._exit(0)  # the supervisor is gone

    def handle(self, line: bytes) -> None:
        try:
            req_id, req = decode_request(line)
        except ValueError as exc:
            LOG.error("bad request: %s", exc)
            return
        try:
            result = self.bus(req).call(req)
        except Exception as exc:  # e.g. an unparsable transport_url
            result = oc.ProbeResult(oc.ERROR, f"{type(exc).__name__}: {exc}")
        self.reply(req_id, result)

    def serve(self) -> None:
        reader = self.sock.makefile("rb")
        while True:
            line = reader.readline(MAX_LINE)
            if not line:
                return
            if line.strip():
                self.pool.submit(self.handle, line)


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="hvsupervisor-prober: %(levelname)s %(name)s: %(message)s")
    # oslo.messaging and kombu log every reconnect attempt of a dead bus at
    # ERROR; the supervisor reports the bus state once per change instead.
    for name in ("oslo.messaging", "oslo_messaging", "kombu", "amqp"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    sock = socket.socket(fileno=0)
    try:
        Prober(sock).serve()
    finally:
        os._exit(0)  # do not wait for in-flight probes or oslo's threads
    return 0


if __name__ == "__main__":
    sys.exit(main())
