"""The control socket: one JSON request line in, one JSON reply line out.

A unix stream socket in the run dir, mode 0600 (root only: these verbs stop
and restart the node's agents). ``reload`` replies only once the new plan is
applied or refused, so ``ExecReload=hvsupervisor reload`` makes ``systemctl
reload`` fail visibly on a bad snippet.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from hvsupervisor.lifecycle import OPERATOR_VERBS
from hvsupervisor.supervisor import ShuttingDown

LOG = logging.getLogger("hvsupervisor.control")

MAX_REQUEST = 64 * 1024


class ControlServer:
    def __init__(self, supervisor, path: Path):
        self.supervisor = supervisor
        self.path = path
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        old = os.umask(0o177)  # created 0600 from the start, no chmod race
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, str(self.path), limit=MAX_REQUEST)
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line or b"{}")
                reply = await self.dispatch(request)
            except (ValueError, TypeError) as exc:
                reply = {"ok": False, "error": f"bad request: {exc}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def dispatch(self, request: dict) -> dict:
        sup = self.supervisor
        cmd = request.get("cmd")
        if cmd == "status":
            sup.refresh_pending()
            return {"ok": True, **sup.node_status().to_primitive()}
        if cmd == "plans":
            return {"ok": True, "agents": sup.plans_json()}
        if cmd == "reload":
            return await sup.reload()
        if cmd in OPERATOR_VERBS:
            names = request.get("agents") or []
            if not names and cmd == "stop":
                names = list(sup.agents)
            unknown = [n for n in names if n not in sup.agents]
            if unknown or not names:
                known = ", ".join(sup.agents)
                return {"ok": False, "error": f"unknown agent {', '.join(unknown) or '(none)'} "
                                              f"(known: {known})"}
            try:
                for name in names:
                    sup.request(name, cmd)
            except ShuttingDown as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "agents": names}
        return {"ok": False, "error": f"unknown command {cmd!r}"}
