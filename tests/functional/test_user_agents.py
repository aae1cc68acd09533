"""`hvsupervisor run` with an agent as its own user, through the real spawn path.

A real user (useradd, removed after), a real supervisor process, a stand-in
agent that makes a real oslo.privsep call: the broker inside the supervisor
starts privsep-helper for it, and the daemon runs as root while the agent
has uid != 0 and no capabilities.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from hvsupervisor.privsep.broker import ROOT_PATH
from tests.fixtures.supervisor import Node
from tests.functional.privsep_rig import (
    AGENT,
    BINDIR,
    CONTEXT,
    PY,
    PYTHONPATH,
    make_user,
    remove_user,
    venv_traversable,
)
from tests.util import wait_until

pytestmark = pytest.mark.functional

USER = "hvsptest-sup"
NET_ADMIN = 1 << 12


@pytest.fixture
def user():
    ident = make_user(USER)
    yield ident
    remove_user(USER)


@pytest.fixture
def user_node(fake_notify):
    """A node under a traversable base (pytest's tmp dirs are 0700)."""
    venv_traversable()
    base = Path(tempfile.mkdtemp(prefix="hvsp-node-"))
    base.chmod(0o755)
    n = Node(base, fake_notify)
    n.short.chmod(0o711)  # the run dir's parent, as /run is
    yield n
    n.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def test_agent_runs_unprivileged_and_the_broker_starts_its_privsep_helper(user, user_node):
    node = user_node
    report = node.state_dir / "agent-a" / "report.json"
    node.agent("agent-a", f"{PY} {AGENT} serve {report}", ready="alive:0.5",
               user=USER, directories="{state_dir}/agent-a",
               privsep_contexts=f"{CONTEXT}:hvsup_test_privsep",
               environment=f"PYTHONPATH:{PYTHONPATH},PATH:{BINDIR}:{ROOT_PATH}")
    # A root-era leftover in its directory, and a secret override file.
    (node.state_dir / "agent-a").mkdir(parents=True)
    (node.state_dir / "agent-a" / "old.state").write_text("x")
    site = node.snippet("svc/common.conf.d/50-site.conf", "[DEFAULT]\ntransport_url = x\n")
    site.chmod(0o600)
    try:
        node.start()
    except AssertionError:
        log = node.log_dir / "agent-a.log"
        raise AssertionError(node.output()[-3000:] + "\n--- agent log:\n"
                             + (log.read_text()[-3000:] if log.exists() else "")) from None

    data = json.loads(wait_until(lambda: report.exists() and report.read_text(), 30,
                                 what="the agent's report"))
    me = data["self"]
    assert me["Uid"] == [str(user.uid)] * 4
    assert int(me["CapEff"][0], 16) == 0 and int(me["CapBnd"][0], 16) == 0
    assert me["NoNewPrivs"] == ["1"]
    assert data["daemon"]["uid"] == 0
    assert int(data["daemon"]["capeff"], 16) == NET_ADMIN

    # The main pid the supervisor reports is the agent itself (setpriv exec'd it).
    pid = node.pids()["agent-a"]
    with open(f"/proc/{pid}/status") as f:
        assert f"Uid:\t{user.uid}" in f.read()
    # Ownership: its directory and the root-era file are its own; the
    # override file is root:<group> 0640; its log file is its own.
    for path in (node.state_dir / "agent-a", node.state_dir / "agent-a" / "old.state"):
        assert (path.stat().st_uid, path.stat().st_gid) == (user.uid, user.gid)
    st = site.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, user.gid, 0o640)
    assert (node.log_dir / "agent-a.log").stat().st_uid == user.uid
    # The broker socket: the agent's user only.
    sock = node.run_dir / "privsep" / "agent-a.sock"
    assert (sock.stat().st_uid, stat.S_IMODE(sock.stat().st_mode)) == (user.uid, 0o600)
    out = node.output()
    assert "event=privsep-start agent=agent-a" in out and CONTEXT in out

    # config plan names the supervisor as the source of helper_command.
    plan = node.hv("config", "plan", "agent-a")
    assert "OS_HVSUP_TEST_PRIVSEP__HELPER_COMMAND=" in plan.stdout
    assert "supplied by the supervisor" in plan.stdout
    assert f"user:   {USER}({user.uid})" in plan.stdout

    # check: a row for the user, its ownership and its sockets' reachability.
    rows = {r["name"]: r for r in json.loads(node.hv("check", "--format", "json").stdout)["checks"]}
    assert rows["user agent-a"]["status"] == "ok"
    assert rows["user agent-a"]["detail"].startswith(f"{USER}({user.uid})")
    assert rows["ownership agent-a"]["detail"].endswith("agent-a: owned")
    assert rows["socket access dirs"]["status"] == "ok"

    assert node.stop() == 0
    assert not os.path.exists(sock)
