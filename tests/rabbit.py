"""A real RabbitMQ (Debian's) on loopback ports of its own, that can stop and come back.

Used by the functional tests (fixture ``rabbit`` in tests/fixtures/rabbit.py) and
benchmarks/health.py; no pytest here.

Started in the root network namespace with its own epmd on a private port
(``ERL_EPMD_PORT``), so it touches neither the host's 4369 nor another
test's broker. ``stop()`` kills the broker's process group (a throwaway
broker loses nothing; testcloud/hvtestcloud/services.py says why not SIGTERM);
``start()`` again brings the same node back on the same port.

``Rabbit(base, tls=True)`` listens with TLS only (no plain AMQP port), with a
CA and a server certificate for 127.0.0.1 made by the openssl command.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

from hvtestcloud.services import RABBIT, rabbit_env, scrubbed_env
from hvtestcloud.waiting import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def make_tls(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate (SAN IP:127.0.0.1) made with openssl."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in
                                  ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem"))
    ext = directory / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")
    for argv in (
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=hvsupervisor test CA", "-keyout", ca_key, "-out", ca],
        ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", key, "-out", csr],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
         "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", cert],
    ):
        subprocess.run([str(a) for a in argv], check=True, capture_output=True)
    return {"ca": ca, "cert": cert, "key": key}


class Rabbit:
    def __init__(self, base: Path, tls: bool = False):
        self.base = base
        self.tls = make_tls(base / "tls") if tls else None
        self.port = free_port()
        self.epmd_port = free_port()
        self.dist_port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.env = scrubbed_env() | rabbit_env(base, self.port, self.dist_port) | {
            "ERL_EPMD_PORT": str(self.epmd_port)}
        for d in ("mnesia", "log"):
            (base / d).mkdir(parents=True, exist_ok=True)
        (base / "enabled_plugins").write_text("[].\n")
        if self.tls is not None:
            # TLS only: a client that speaks plain AMQP finds nothing listening.
            (base / "rabbitmq.conf").write_text(
                "listeners.tcp = none\n"
                f"listeners.ssl.default = {self.port}\n"
                f"ssl_options.cacertfile = {self.tls['ca']}\n"
                f"ssl_options.certfile = {self.tls['cert']}\n"
                f"ssl_options.keyfile = {self.tls['key']}\n"
                "ssl_options.verify = verify_none\n"
                "ssl_options.fail_if_no_peer_cert = false\n")
            self.env.pop("RABBITMQ_NODE_PORT", None)

    @property
    def url(self) -> str:
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        out = open(self.base / f"{name}.out", "ab")
        try:
            return subprocess.Popen(argv, env=self.env, cwd=self.base, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    def start(self, timeout: float = 60.0) -> None:
        if not any(p.poll() is None and p.args[0] == "epmd" for p in self.procs):
            self.procs.append(self._spawn("epmd", ["epmd", "-address", "127.0.0.1",
                                                   "-port", str(self.epmd_port)]))
        self.procs.append(self._spawn("rabbit", [str(RABBIT)]))
        wait_until(lambda: _open(self.port), timeout, f"RabbitMQ on {self.port}")

    def stop_broker(self) -> None:
        """Kill the broker only (epmd stays): the bus is down until start()."""
        for p in self.procs:
            if p.args[0] != "epmd" and p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)
        wait_until(lambda: not _open(self.port), 10, "RabbitMQ port closed")

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(10)
