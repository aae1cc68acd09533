"""The preloader (agents/preloader.py) and its client (process/preload.py), real processes.

A stand-in console script (``from tests.preload_standin import main``) is
preloaded and forked; the forked agent is checked from outside (/proc) and
from inside (what it wrote to PRELOAD_MARK): reparented to us as subreaper,
its own session, comm and argv of the script, the given env replacing the
preloader's, fds 1/2 the ones passed, imported once in the preloader, gc frozen.
"""

from __future__ import annotations

import ctypes
import json
import os
import pathlib
import signal
import sys

import pytest

from hvsupervisor.core.preload_groups import entry_point, groups
from hvsupervisor.process.preload import Preloader, PreloadError, read_entry
from tests.fixtures.supervisor import PY
from tests.util import wait_until

pytestmark = pytest.mark.functional

ROOT = pathlib.Path(__file__).resolve().parents[2]
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def console_script(tmp_path: pathlib.Path, module: str = "tests.preload_standin") -> pathlib.Path:
    script = tmp_path / "preload-standin-agent"
    script.write_text(f"#!{sys.executable}\nimport re\nimport sys\nfrom {module} import main\n"
                      "if __name__ == '__main__':\n"
                      "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                      "    sys.exit(main())\n")
    script.chmod(0o755)
    return script


def started(tmp_path, script) -> tuple[Preloader, object]:
    entry = read_entry(str(script))
    assert entry is not None
    group = groups([("a", entry, "root"), ("b", entry, "root")])["a"]
    pre = Preloader(group, [str(script)])
    log = os.open(tmp_path / "preloader.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    pre.start([], env, log, log)
    os.close(log)
    return pre, entry


def reap(pid: int, timeout: float = 10) -> int:
    def done():
        wpid, status = os.waitpid(pid, os.WNOHANG)
        return (status,) if wpid else None  # a tuple: status 0 is falsy
    (status,) = wait_until(done, timeout)
    return os.waitstatus_to_exitcode(status)


def test_forked_agent_is_as_if_execd(tmp_path, subreaper):
    script = console_script(tmp_path)
    pre, entry = started(tmp_path, script)
    forked: list[int] = []
    try:
        wait_until(pre.poll, 30)
        mark = tmp_path / "mark.json"
        out = os.open(tmp_path / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "PRELOAD_MARK": str(mark),
               "ONLY_IN_PLAN": "1"}
        argv = [str(script), "--ready-after", "0", "--config-file", "/etc/x.conf"]
        pid = pre.fork(argv, env, out, out, str(tmp_path), entry)
        forked.append(pid)
        os.close(out)
        wait_until(mark.exists, 20)
        seen = json.loads(mark.read_text())
        assert seen["imported_in"] == pre.pid != pid == seen["pid"]
        assert seen["argv"] == argv and seen["path0"] == str(tmp_path)
        assert seen["env"] == env  # replaced, nothing of the preloader's left
        assert seen["cwd"] == str(tmp_path) and seen["sid"] == pid
        assert seen["frozen"] > 0  # gc.freeze() ran after the imports
        wait_until(lambda: os.stat(f"/proc/{pid}").st_uid == 0 and
                   pathlib.Path(f"/proc/{pid}/status").read_text().count(
                       f"PPid:\t{os.getpid()}") == 1, 10)  # reparented to us, the subreaper
        assert pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == script.name[:15]
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        assert f"{script} --ready-after 0".encode() in cmdline
        fds = {int(f) for f in os.listdir(f"/proc/{pid}/fd")}
        assert os.readlink(f"/proc/{pid}/fd/1") == str(tmp_path / "agent.log")
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert {0, 1, 2} <= fds
        wait_until(lambda: b"standin: started" in (tmp_path / "agent.log").read_bytes(), 20)
        os.kill(pid, signal.SIGTERM)
        assert reap(pid) == 0
        # a second start from the same preloader
        out = os.open(tmp_path / "agent.log", os.O_WRONLY | os.O_APPEND)
        pid2 = pre.fork(argv, env, out, out, str(tmp_path), entry)
        forked.append(pid2)
        os.close(out)
        assert pid2 != pid
        os.kill(pid2, signal.SIGKILL)
        assert reap(pid2) == -signal.SIGKILL
    finally:
        pre.stop()
        reap(pre.pid)
        for child in forked:  # a failed assertion must not leave a forked agent behind
            try:
                os.kill(child, signal.SIGKILL)
                reap(child)
            except (ProcessLookupError, ChildProcessError):
                pass


def test_failed_import_is_a_preload_error(tmp_path, subreaper):
    script = console_script(tmp_path, module="tests.no_such_module_here")
    pre, entry = started(tmp_path, script)
    try:
        wait_until(lambda: pre.poll() or pre.error, 30)
        assert "No module named" in pre.error and not pre.ready
        with pytest.raises(PreloadError, match="No module named"):
            pre.fork([str(script)], {}, 1, 2, str(tmp_path), entry)
        assert reap(pre.pid) == 2
    finally:
        pre.stop()


def test_code_change_makes_it_stale(tmp_path, subreaper):
    script = console_script(tmp_path)
    pre, _entry = started(tmp_path, script)
    try:
        wait_until(pre.poll, 30)
        assert pre.stale_reason() is None
        later = pre.started + 5
        os.utime(script, (later, later))  # what an upgrade's rewrite of the script does
        assert "code changed" in pre.stale_reason()
    finally:
        pre.stop()
        reap(pre.pid)


def _supervisor_log(node) -> str:
    return node.output() + "".join(p.read_text() for p in node.log_dir.glob("hvsupervisor*.log"))


def test_supervisor_forks_restarts_and_falls_back(node, tmp_path):
    """``hvsupervisor run``: two agents of one preloader; a restart is forked, is the
    supervisor's child with the script's comm, comes back after a crash; an agent that
    asks for preload but is no console script runs by exec, said once."""
    good = console_script(tmp_path)
    for name in ("a", "b"):
        node.agent(name, f"{good} --ready-after 0", start="preload", ready="alive:0.2")
    node.agent("c", f"{PY} {ROOT / 'tests' / 'standin.py'} --ready-after 0", start="preload",
               ready="alive:0.2")  # not a console script: exec, said once
    node.start(env={"PYTHONPATH": str(ROOT)})
    wait_until(lambda: "event=preloader-start" in node.output(), 10)
    old = node.pids()["a"]
    # The cold start may have come before the preloader was ready; restarts come after.
    wait_until(lambda: (node.ctl({"cmd": "restart", "agents": ["a"]}) and
                        f"event=preloaded agent=a pid={node.pids()['a']}" in node.output()), 30)
    pid = node.wait_agent("a", lambda a: a["ready"] and a["pid"] != old)["pid"]
    assert pathlib.Path(f"/proc/{pid}/comm").read_text().strip() == good.name[:15]
    assert f"PPid:\t{node.proc.pid}\n" in pathlib.Path(f"/proc/{pid}/status").read_text()
    os.kill(pid, signal.SIGKILL)  # a crash: the Reaper sees it and the agent comes back
    node.wait_agent("a", lambda a: a["ready"] and a["pid"] not in (None, pid), 20)
    node.ctl({"cmd": "restart", "agents": ["c"]})
    node.wait_agent("c", lambda a: a["ready"], 20)
    assert node.output().count("event=preload-failed agent=c") == 1, node.output()[-2000:]


def test_not_a_console_script():
    assert entry_point("#!/bin/sh\nexec python -m x\n") is None
