"""A request still in flight when the control socket closes gets an answer.

The socket is real (a unix socket in tmp_path); the supervisor is a stand-in
whose reload waits forever, as a reload queued behind another one does while
the supervisor stops (tests/functional/test_runtime_edges.py shows the whole
case with a real supervisor).
"""

from __future__ import annotations

import asyncio
import json

from hvsupervisor.control.server import STOPPED_REPLY, ControlServer


class _ReloadNeverEnds:
    agents: dict = {}

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def reload(self) -> dict:
        self.entered.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")


def test_a_request_cut_short_by_close_is_answered_stopping(tmp_path):
    async def scenario() -> dict:
        sup = _ReloadNeverEnds()
        server = ControlServer(sup, tmp_path / "control.sock")
        await server.start()
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "control.sock"))
        writer.write(b'{"cmd": "reload"}\n')
        await writer.drain()
        await asyncio.wait_for(sup.entered.wait(), 5)
        await server.close()
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert not (tmp_path / "control.sock").exists()
        return json.loads(line)

    assert asyncio.run(scenario()) == STOPPED_REPLY
