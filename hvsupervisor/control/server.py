"""The control socket: one JSON request line in, one JSON reply line out.

A unix stream socket in the run dir, mode 0600 (root only: these verbs stop
and restart the node's agents). ``reload`` replies only once the new plan is
in effect or refused (see Supervisor.reload), so ``ExecReload=hvsupervisor
reload`` makes ``systemctl reload`` fail visibly on a bad snippet.

Every input gets a reply, never a traceback in the log: a line that is not a
JSON object, a line over ``MAX_REQUEST``, a field of the wrong type. The
socket is root-only, but a confused script must not take the node down:

* at most ``MAX_CLIENTS`` connections are served at once; one more gets an
  error reply and is closed at once, so idle clients cannot use up the
  supervisor's fds (which its agents' respawns need);
* a client has ``REQUEST_TIMEOUT`` seconds to send its line;
* running out of fds is logged once per episode, not per accept (asyncio
  would log a traceback for every failed accept).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import resource
import socket
from pathlib import Path

from hvsupervisor.core.lifecycle import OPERATOR_VERBS
from hvsupervisor.supervisor import ShuttingDown

LOG = logging.getLogger("hvsupervisor.control")

MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 64
REQUEST_TIMEOUT = 5.0
# The answer to a request the stop cut short (ControlServer.close()).
STOPPED_REPLY = {"ok": False, "error": "the supervisor is stopping; the request was not completed"}
# plans: each agent's running plan snapshot, for `config diff` / `reload --dry-run`.
VERBS = ("status", "plans", "reload", "reexec", *OPERATOR_VERBS)


def _busy(conn: socket.socket, cap: int) -> None:
    """Answer a client beyond the cap at once, without the loop: its fd is gone
    before the next accept."""
    try:
        conn.setblocking(False)
        conn.send(json.dumps({"ok": False, "error": f"busy: {cap} control clients are "
                              "connected; try again"}).encode() + b"\n")
    except OSError:
        pass
    finally:
        conn.close()


class BadRequest(ValueError):
    """A request that is not what the protocol allows; the reply says why."""


def parse_request(line: bytes, known_agents: list[str]) -> dict:
    """Validate one request line (pure): a JSON object with a known ``cmd`` and,
    for start/stop/restart, ``agents`` as a list of known names."""
    try:
        request = json.loads(line or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest(f"expected a JSON object, got {type(request).__name__}")
    cmd = request.get("cmd")
    if cmd not in VERBS:
        raise BadRequest(f"unknown command {cmd!r} (known: {', '.join(VERBS)})")
    if cmd in OPERATOR_VERBS:
        names = request.get("agents")
        if names is None:
            names = []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise BadRequest("agents must be a list of agent names")
        if not names and cmd == "stop":
            names = list(known_agents)
        unknown = [n for n in names if n not in known_agents]
        if unknown or not names:
            raise BadRequest(f"unknown agent {', '.join(unknown) or '(none)'} "
                             f"(known: {', '.join(known_agents)})")
        request = {**request, "agents": list(dict.fromkeys(names))}
    return request


class _FdExhaustion:
    """Log "out of file descriptors" once per episode, with the limit."""

    def __init__(self) -> None:
        self.active = False

    def hit(self, where: str) -> None:
        if not self.active:
            self.active = True
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            LOG.error("event=fd-exhausted where=%s: out of file descriptors (limit %d, hard "
                      "%d); control clients wait until some close (LimitNOFILE= in the unit)",
                      where, soft, hard)

    def ok(self) -> None:
        if self.active:
            self.active = False
            LOG.info("event=fd-recovered: file descriptors available again")


FD_EXHAUSTION = _FdExhaustion()
ACCEPT_RETRY = 1.0  # seconds before accepting again after EMFILE (asyncio's own choice)


class ControlServer:
    """Our own accept loop rather than asyncio.start_unix_server: it bounds the fds
    clients can hold (one beyond the cap, for the "busy" reply) and logs EMFILE once,
    where asyncio's server would accept a whole backlog at once and log a traceback
    for every failed accept."""

    def __init__(self, supervisor, path: Path, max_clients: int = MAX_CLIENTS):
        self.supervisor = supervisor
        self.path = path
        self.max_clients = max_clients
        self._clients: set[asyncio.Task] = set()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)  # created 0600 from the start, no chmod race
        try:
            sock.bind(str(self.path))
        except BaseException:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.listen(128)
        sock.setblocking(False)
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._accept)

    async def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        if self._sock is not None and self._loop is not None:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(self._clients, timeout=5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def _accept(self) -> None:
        assert self._sock is not None and self._loop is not None
        for _ in range(16):  # a few per wakeup: the loop stays fair to the agents
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    LOG.error("event=control-accept-error error=%s", exc)
                    return
                FD_EXHAUSTION.hit("control socket accept")
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(ACCEPT_RETRY, self._resume)
                return
            FD_EXHAUSTION.ok()
            if len(self._clients) >= self.max_clients:
                _busy(conn, self.max_clients)
                continue
            task = self._loop.create_task(self._client(conn))
            self._clients.add(task)
            task.add_done_callback(self._clients.discard)

    def _resume(self) -> None:
        self._retry = None
        if self._sock is not None and self._loop is not None:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    async def _client(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(sock=conn, limit=MAX_REQUEST)
        except OSError:
            conn.close()
            return
        await self._handle(reader, writer)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            reply = await self._serve_one(reader)
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() at the end of a stop: a request still in flight (a reload
            # queued behind another) gets an answer that says why, not a closed
            # socket the client could only call "no reply". The write is one
            # send() on a unix socket: it does not wait.
            with contextlib.suppress(OSError, RuntimeError):
                writer.write(json.dumps(STOPPED_REPLY).encode() + b"\n")
            raise
        except Exception:  # never an unanswered client and an asyncio traceback
            LOG.exception("event=control-error")
        finally:
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader) -> dict:
        try:
            line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT)
        except TimeoutError:
            return {"ok": False, "error": f"no request line within {REQUEST_TIMEOUT:g}s"}
        except ValueError:  # StreamReader's LimitOverrunError, as readline raises it
            return {"ok": False, "error": f"bad request: line longer than {MAX_REQUEST} bytes"}
        try:
            request = parse_request(line, list(self.supervisor.agents))
        except BadRequest as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            return await self.dispatch(request)
        except Exception as exc:
            LOG.exception("event=control-error cmd=%s", request.get("cmd"))
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}

    async def dispatch(self, request: dict) -> dict:
        """Carry out a request that ``parse_request`` accepted."""
        sup = self.supervisor
        cmd = request["cmd"]
        if cmd == "status":
            sup.refresh_pending()
            await sup.refresh_instances()
            return {"ok": True, **sup.node_status().to_primitive()}
        if cmd == "plans":
            return {"ok": True, "agents": sup.plans_json()}
        if cmd == "reload":
            return await sup.reload()
        if cmd == "reexec":  # release switch (release/switch.py): back from the current link
            return sup.request_reexec()
        names = request["agents"]
        try:
            for name in names:
                sup.request(name, cmd)
        except ShuttingDown as exc:
            return {"ok": False, "error": str(exc)}
        except KeyError as exc:  # removed by a reload meanwhile
            return {"ok": False, "error": f"unknown agent {exc.args[0]}"}
        return {"ok": True, "agents": names}
