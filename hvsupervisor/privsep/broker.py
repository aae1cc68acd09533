"""The privsep broker: the root side, inside the supervisor's event loop.

Agents that run as their own users cannot start oslo.privsep's helper (no
sudo, no capabilities) nor neutron's ``ip netns exec`` data-plane daemons.
The supervisor is root already, so it starts them for the agent, and only
what ``grants.decide`` allows:

* one SOCK_SEQPACKET listening socket per agent, ``<sock_dir>/<agent>.sock``,
  owned by the agent's user and mode 0600 (so no other unprivileged user can
  even connect), in a root-owned 0711 directory;
* the peer is authenticated by ``SO_PEERCRED`` (uid, and a pid that must be
  the agent's main pid or a descendant of it: that closes the race where a
  caller swaps its socket directory after the check, since only the agent
  itself could);
* the client's stdin/stdout/stderr come over ``SCM_RIGHTS`` and become the
  helper's, so its output reaches the agent as if it had run the helper;
* the helper is our child: the supervisor's reaper hands its exit to
  ``on_exit`` and the code goes back to the client; the daemon it forks is
  orphaned to us (the supervisor is a child subreaper) and reaped there.

SEQPACKET keeps each request one message (no framing, no partial reads in
the loop). Refusals are logged as ``event=privsep-refused`` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import stat
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path

from hvsupervisor.privsep import grants

LOG = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
REQUEST_TIMEOUT = 5.0
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_UCRED = struct.Struct("3i")


def peer_cred(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected (SO_PEERCRED)."""
    return _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    return int(fields[1]) if len(fields) >= 2 else None


def in_tree(pid: int, root: int | None) -> bool:
    """Is ``pid`` ``root`` or one of its descendants (ppid links in /proc)?"""
    if root is None or root <= 1:
        return False
    seen = 0
    while pid > 1 and seen < 4096:
        if pid == root:
            return True
        nxt = _ppid(pid)
        if nxt is None:
            return False
        pid, seen = nxt, seen + 1
    return False


def _receive_fds(ancdata: list) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", data[:usable]))
    return fds


class Broker:
    """Per-agent listening sockets and the helpers started for them."""

    def __init__(self, sock_dir: Path, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.sock_dir = Path(sock_dir)
        self._loop = loop or asyncio.get_running_loop()
        self._grants: dict[str, grants.Grant] = {}
        self._listeners: dict[str, socket.socket] = {}
        self._main_pids: dict[str, int | None] = {}
        self._pending: dict[int, tuple[str, socket.socket]] = {}
        self.started = 0
        self.refused = 0

    # ------------------------------------------------------------ setup

    def sock_path(self, agent: str) -> Path:
        return self.sock_dir / f"{agent}.sock"

    def configure(self, allowed: Mapping[str, grants.Grant]) -> None:
        """Listen for exactly these agents; a changed uid/gid gets a new socket."""
        self.sock_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
        os.chmod(self.sock_dir, 0o711)
        for name in list(self._listeners):
            old = self._grants.get(name)
            new = allowed.get(name)
            if new is None or (old and (old.uid, old.gid) != (new.uid, new.gid)):
                self._unlisten(name)
        self._grants = dict(allowed)
        for name, grant in allowed.items():
            if name not in self._listeners:
                self._listen(grant)

    def _listen(self, grant: grants.Grant) -> None:
        path = self.sock_path(grant.agent)
        path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        old_umask = os.umask(0o177)  # never a moment when others may connect
        try:
            sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chown(path, grant.uid, grant.gid)
        os.chmod(path, 0o600)
        sock.listen(16)
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept, grant.agent, sock)
        self._listeners[grant.agent] = sock
        LOG.info("event=privsep-listen agent=%s socket=%s uid=%d", grant.agent, path, grant.uid)

    def _unlisten(self, name: str) -> None:
        sock = self._listeners.pop(name)
        self._loop.remove_reader(sock.fileno())
        sock.close()
        self.sock_path(name).unlink(missing_ok=True)

    def set_main_pid(self, agent: str, pid: int | None) -> None:
        """The supervisor tells us the agent's main pid (None when it is not running)."""
        self._main_pids[agent] = pid

    def close(self) -> None:
        for name in list(self._listeners):
            self._unlisten(name)
        for _, conn in self._pending.values():
            conn.close()
        self._pending.clear()

    # ------------------------------------------------------------ requests

    def _accept(self, agent: str, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        timer = self._loop.call_later(REQUEST_TIMEOUT, self._timeout, agent, conn)
        self._loop.add_reader(conn.fileno(), self._read, agent, conn, timer)

    def _timeout(self, agent: str, conn: socket.socket) -> None:
        if conn.fileno() >= 0:
            self._loop.remove_reader(conn.fileno())
            self._refuse(agent, conn, None, "no request within "
                         f"{REQUEST_TIMEOUT:g} s")

    def _read(self, agent: str, conn: socket.socket, timer: asyncio.TimerHandle) -> None:
        try:
            msg, anc, _flags, _ = conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(3 * 4))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            msg, anc = b"", []
            LOG.warning("event=privsep-refused agent=%s reason=read failed: %s", agent, exc)
        timer.cancel()
        self._loop.remove_reader(conn.fileno())
        fds = _receive_fds(anc)
        try:
            self._handle(agent, conn, msg, fds)
        finally:
            for fd in fds:
                os.close(fd)

    def _handle(self, agent: str, conn: socket.socket, msg: bytes, fds: list[int]) -> None:
        pid, uid, gid = peer_cred(conn)
        grant = self._grants.get(agent)
        if grant is None:
            return self._refuse(agent, conn, pid, "agent no longer configured")
        try:
            request = json.loads(msg.decode())
            verb, args = request["verb"], request["args"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return self._refuse(agent, conn, pid, "malformed request")
        if len(fds) != 3:
            return self._refuse(agent, conn, pid, f"expected 3 fds (stdio), got {len(fds)}")
        peer = grants.Peer(pid=pid, uid=uid, gid=gid,
                           in_agent_tree=in_tree(pid, self._main_pids.get(agent)))
        decision = grants.decide(grant, peer, verb, args)
        if decision.allowed and decision.sock_path is not None:
            problem = self._sock_dir_problem(decision.sock_path, uid)
            if problem:
                decision = grants.refuse(problem)
        if not decision.allowed:
            return self._refuse(agent, conn, pid, decision.reason)
        try:
            child = self._spawn(grant, verb, decision.argv, fds)
        except OSError as exc:
            return self._refuse(agent, conn, pid, f"cannot start {decision.argv[0]}: {exc}")
        self._pending[child] = (agent, conn)
        self.started += 1
        LOG.info("event=privsep-start agent=%s peer=%d pid=%d what=%s", agent, pid, child,
                 decision.reason)

    @staticmethod
    def _sock_dir_problem(path: str, uid: int) -> str | None:
        try:
            st = os.lstat(os.path.dirname(path))
        except OSError as exc:
            return f"socket directory {os.path.dirname(path)}: {exc.strerror}"
        return grants.sock_dir_problem(st.st_mode, st.st_uid, stat.S_ISDIR(st.st_mode), uid)

    def _refuse(self, agent: str, conn: socket.socket, pid: int | None, reason: str) -> None:
        self.refused += 1
        LOG.warning("event=privsep-refused agent=%s peer=%s reason=%s", agent,
                    pid if pid is not None else "?", reason)
        self._reply(conn, grants.REFUSED, reason)

    @staticmethod
    def _reply(conn: socket.socket, rc: int, error: str | None = None) -> None:
        body = {"rc": rc}
        if error:
            body["error"] = error
        try:
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.send(json.dumps(body).encode())
        except OSError:
            pass
        conn.close()

    def _spawn(self, grant: grants.Grant, verb: str, argv: tuple[str, ...],
               fds: list[int]) -> int:
        env = {"PATH": ROOT_PATH, "LANG": "C.UTF-8"}
        if verb == "privsep-helper":
            env.update(grant.env)  # the agent's own plan: state_path etc. resolve alike
        path = env.get("PATH", ROOT_PATH)
        exe = shutil.which(argv[0], path=path)
        if exe is None:
            raise FileNotFoundError(f"{argv[0]} not found in PATH {path}")
        proc = subprocess.Popen(
            list(argv), executable=exe, env=env, cwd="/",
            stdin=fds[0], stdout=fds[1], stderr=fds[2],
            close_fds=True, start_new_session=True, restore_signals=True)
        proc.returncode = 0  # the supervisor's reaper owns waitpid() for this pid
        return proc.pid

    def on_exit(self, pid: int, returncode: int | None, sig: int | None) -> bool:
        """Called for every reaped pid; True when it was a helper we started."""
        entry = self._pending.pop(pid, None)
        if entry is None:
            return False
        agent, conn = entry
        rc = returncode if returncode is not None else 128 + (sig or 0)
        LOG.info("event=privsep-exit agent=%s pid=%d rc=%d", agent, pid, rc)
        self._reply(conn, rc)
        return True
