#!/usr/bin/env python3
"""An RPC stand-in agent: an oslo.messaging RPC server, like the real agents'.

It reads its ``--config-file`` files with oslo.config exactly as nova and
neutron do (``[DEFAULT] transport_url``, ``host``, ``control_exchange``) and
serves Target(topic=--topic, server=host) with one endpoint at --version, so
the supervisor's ``rpc`` probe sees what it sees with a real agent: a
NoSuchMethod reply while it consumes, silence under SIGSTOP.
"""

from __future__ import annotations

import signal
import sys
import threading

import oslo_messaging
from oslo_config import cfg


class Endpoint:
    def __init__(self, version: str):
        self.target = oslo_messaging.Target(version=version)


def main(argv: list[str]) -> int:
    # The global CONF, as the real agents use: oslo.messaging 18.3 reads its
    # [oslo_messaging_tracing] options from it only.
    conf = cfg.CONF
    conf.register_cli_opts([cfg.StrOpt("topic", default="standin"),
                            cfg.StrOpt("endpoint-version", default="1.0")])
    conf.register_opts([cfg.StrOpt("host", default="standin-host")])
    oslo_messaging.set_transport_defaults(control_exchange="standin")
    conf(argv, project="standin", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_rpc_transport(conf)
    target = oslo_messaging.Target(topic=conf.topic, server=conf.host)
    server = oslo_messaging.get_rpc_server(transport, target, [Endpoint(conf.endpoint_version)],
                                           executor="threading")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"rpc-standin: serving {conf.topic}.{conf.host}", flush=True)
    stop.wait()
    server.stop()
    print("rpc-standin: stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
