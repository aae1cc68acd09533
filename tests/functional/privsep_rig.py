"""A broker and agent stand-ins under real users, on one asyncio loop.

Shared by the broker tests and the broker benchmark. The rig does what the
supervisor does around the broker: reaps every child (the helpers included,
handing their exits to ``Broker.on_exit``), and tells the broker each
agent's main pid. The stand-ins run as real users through
``identity.drop_argv`` (setpriv), exactly as the supervisor spawns agents.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hvsupervisor.privsep import broker as broker_mod
from hvsupervisor.privsep import identity
from hvsupervisor.privsep.grants import Grant
from hvsupervisor.process import children
from hvsupervisor.systemd.journal import log_file_fd

ROOT = Path(__file__).resolve().parents[2]


PY = sys.executable
PYTHONPATH = str(ROOT)
BINDIR = str(Path(sys.executable).parent)  # privsep-helper, run by the broker as root
AGENT = str(ROOT / "tests" / "privsep_agent.py")
CONTEXT = "tests.privsep_ctx.context"
SECTION_ENV = "OS_HVSUP_TEST_PRIVSEP__HELPER_COMMAND"


def venv_traversable() -> None:
    """Let unprivileged users run this interpreter and its venv (tox makes .tox 0700).

    Only the search (x) bit is added, on the ancestors of the venv and of
    the real interpreter (a pyenv build under /root on a developer box):
    what an install in /opt/hvsupervisor has anyway for agents run as users.
    """
    for top in (Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent):
        for directory in [top, *top.parents]:
            mode = directory.stat().st_mode
            if mode & 0o001 == 0:
                directory.chmod((mode & 0o7777) | 0o011)


def make_user(name: str) -> identity.Identity:
    """A system user for the test (removed again by ``remove_user``)."""
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["groupdel", name], capture_output=True)
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                    "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
                   check=True)
    ident = identity.resolve(name)
    assert ident is not None
    return ident


def remove_user(name: str) -> None:
    subprocess.run(["userdel", name], capture_output=True)
    subprocess.run(["groupdel", name], capture_output=True)


def grant(agent: str, ident: identity.Identity, contexts=(CONTEXT,),
          root_helper: bool = False) -> Grant:
    return Grant(agent=agent, uid=ident.uid, gid=ident.gid, contexts=frozenset(contexts),
                 root_helper=root_helper, config_args=(),
                 env={"PATH": f"{BINDIR}:{broker_mod.ROOT_PATH}", "PYTHONPATH": str(ROOT)})


def client_argv(sock: Path, verb: str, *args: str) -> list[str]:
    return [PY, "-m", "hvsupervisor.privsep.helper_client", "--broker", str(sock), verb, *args]


class Rig:
    """``async with Rig(tmp) as rig``: a broker on this loop, children reaped."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.waiters: dict[int, asyncio.Future] = {}
        self.spawned: list[int] = []
        self.n = 0

    async def __aenter__(self) -> Rig:
        loop = asyncio.get_running_loop()
        venv_traversable()
        children.set_child_subreaper(True)  # the privsep daemons come back to us
        # What pytest already runs (session fixtures: the libvirtd namespace holder,
        # ovsdb-server, RabbitMQ) is not ours to kill on the way out.
        self.before = set(children.descendants())
        # Outside pytest's 0700 tmp dir: the users must reach their sockets.
        self.run_dir = Path(tempfile.mkdtemp(prefix="hvsp-"))
        self.run_dir.chmod(0o711)
        self.broker = broker_mod.Broker(self.run_dir / "privsep", loop)
        self.reaper = children.Reaper(self._on_exit, loop)
        self.reaper.install()
        return self

    async def __aexit__(self, *exc) -> None:
        self.broker.close()
        left = [pid for pid in children.descendants() if pid not in self.before]
        children.signal_all(left, 9)
        self.reaper.close()
        for pid in left:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        children.set_child_subreaper(False)
        shutil.rmtree(self.run_dir)

    def _on_exit(self, pid: int, rc, sig) -> None:
        if self.broker.on_exit(pid, rc, sig):
            return
        fut = self.waiters.pop(pid, None)
        if fut is not None and not fut.done():
            fut.set_result(rc if rc is not None else 128 + (sig or 0))

    def env(self, agent: str, **extra: str) -> dict[str, str]:
        sock = self.broker.sock_path(agent)
        return {"PATH": f"{BINDIR}:{broker_mod.ROOT_PATH}", "PYTHONPATH": PYTHONPATH,
                "HOME": "/nonexistent", "TMPDIR": "/tmp",
                SECTION_ENV: f"{PY} -m hvsupervisor.privsep.helper_client --broker {sock} "
                             "privsep-helper", **extra}

    def start(self, agent: str, ident: identity.Identity, argv: list[str],
              register: bool = True) -> tuple[int, asyncio.Future, Path]:
        """Spawn ``argv`` as ``ident``; the future resolves to its exit code."""
        self.n += 1
        out = self.tmp / f"{agent}-{self.n}.out"
        fd = log_file_fd(str(out))
        try:
            pid = children.spawn(identity.drop_argv(ident, argv), self.env(agent), fd, fd)
        finally:
            os.close(fd)
        fut = asyncio.get_running_loop().create_future()
        self.waiters[pid] = fut
        if register:
            self.broker.set_main_pid(agent, pid)
        return pid, fut, out

    async def agent(self, agent: str, ident: identity.Identity, *args: str,
                    register: bool = True, timeout: float = 60) -> tuple[int, str]:
        """Run the stand-in to its end; (exit code, its output)."""
        _, fut, out = self.start(agent, ident, [PY, AGENT, *args], register)
        rc = await asyncio.wait_for(fut, timeout)
        return rc, out.read_text()

    async def client(self, agent: str, ident: identity.Identity, sock_agent: str | None,
                     verb: str, *args: str, register: bool = True) -> tuple[int, str]:
        """The broker client, run as a child of an agent stand-in; (client rc, output)."""
        sock = self.broker.sock_path(sock_agent or agent)
        rc, out = await self.agent(agent, ident, "run", *client_argv(sock, verb, *args),
                                   register=register)
        assert rc == 0, out
        last = [line for line in out.splitlines() if line.startswith("{")][-1]
        return json.loads(last)["rc"], out
