"""The privsep broker with real users, real processes and a real privsep-helper.

Users are created with useradd for the module and removed after it. Agent
stand-ins run as those users through the same setpriv drop the supervisor
uses; the broker client runs as their child, as it does under an agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import uuid

import pytest

from tests.functional.privsep_rig import (
    CONTEXT,
    Rig,
    grant,
    make_user,
    remove_user,
)

pytestmark = pytest.mark.functional

USERS = ("hvsptest-a", "hvsptest-b")
NET_ADMIN = 1 << 12


@pytest.fixture(scope="module")
def users():
    idents = [make_user(name) for name in USERS]
    yield idents
    for name in USERS:
        remove_user(name)


@pytest.fixture
def netns():
    name = f"qdhcp-{uuid.uuid4()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], check=True)


def refused(caplog, reason: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if "event=privsep-refused" in r.getMessage() and reason in r.getMessage()]


def run(coro):
    return asyncio.run(coro)


def test_unprivileged_agent_gets_a_root_privsep_daemon(users, tmp_path, caplog):
    """The stand-in runs at a non-zero uid with no capabilities; its privsep call runs as root."""
    a, _ = users
    caplog.set_level(logging.INFO, "hvsupervisor.privsep.broker")

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a)})
            return await rig.agent("agent-a", a, "whoami")

    rc, out = run(scenario())
    assert rc == 0, out
    report = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    me = report["self"]
    assert me["Uid"] == [str(a.uid)] * 4
    assert me["Gid"] == [str(a.gid)] * 4
    assert int(me["CapEff"][0], 16) == 0
    assert int(me["CapPrm"][0], 16) == 0
    assert int(me["CapBnd"][0], 16) == 0
    assert me["NoNewPrivs"] == ["1"]
    # The daemon: root, with exactly the context's capability (NET_ADMIN).
    assert report["daemon"]["uid"] == 0
    assert int(report["daemon"]["capeff"], 16) == NET_ADMIN
    assert [r for r in caplog.records if "event=privsep-start agent=agent-a" in r.getMessage()
            and CONTEXT in r.getMessage()]


def test_another_agents_context_is_refused(users, tmp_path, caplog):
    a, b = users

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a),
                                  "agent-b": grant("agent-b", b, contexts=("other.ctx.x",))})
            own = await rig.client("agent-b", b, None, "privsep-helper", "--privsep_context",
                                   CONTEXT, "--privsep_sock_path", "/tmp/x/privsep.sock")
            # And b cannot even connect to a's socket (0600, owned by a): the
            # kernel refuses, so the broker never sees it.
            foreign = await rig.client("agent-b", b, "agent-a", "privsep-helper",
                                       "--privsep_context", CONTEXT,
                                       "--privsep_sock_path", "/tmp/x/privsep.sock")
            return own, foreign

    (rc, out), (rc2, out2) = run(scenario())
    assert rc == 126 and "refused: privsep context tests.privsep_ctx.context" in out
    assert refused(caplog, f"privsep context {CONTEXT} is not one of agent-b's")
    assert rc2 == 126 and "Permission denied" in out2


def test_unknown_context_is_refused(users, tmp_path, caplog):
    a, _ = users

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a)})
            return await rig.client("agent-a", a, None, "privsep-helper", "--privsep_context",
                                    "tests.privsep_ctx.nope", "--privsep_sock_path",
                                    "/tmp/x/privsep.sock")

    rc, out = run(scenario())
    assert rc == 126, out
    assert refused(caplog, "privsep context tests.privsep_ctx.nope is not one of agent-a's")


@pytest.mark.parametrize("owner, mode, reason", [
    ("root", 0o700, "owned by uid 0"),
    ("self", 0o755, "mode is 0755, not 0700"),
])
def test_foreign_socket_directory_is_refused(users, tmp_path, caplog, owner, mode, reason):
    a, _ = users
    sock_dir = tmp_path / "sockdir"
    sock_dir.mkdir()
    os.chmod(sock_dir, mode)
    if owner == "self":
        os.chown(sock_dir, a.uid, a.gid)

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a)})
            return await rig.client("agent-a", a, None, "privsep-helper", "--privsep_context",
                                    CONTEXT, "--privsep_sock_path",
                                    str(sock_dir / "privsep.sock"))

    rc, out = run(scenario())
    assert rc == 126, out
    assert refused(caplog, reason)


def test_forged_peer_outside_the_agents_tree_is_refused(users, tmp_path, caplog):
    """Same uid, right socket, but not the agent's main pid nor below it."""
    a, _ = users

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a)})
            main, _, _ = rig.start("agent-a", a, ["sleep", "60"])
            result = await rig.client("agent-a", a, None, "privsep-helper",
                                      "--privsep_context", CONTEXT, "--privsep_sock_path",
                                      "/tmp/x/privsep.sock", register=False)
            os.kill(main, 9)
            return main, result

    main, (rc, out) = run(scenario())
    assert rc == 126, out
    assert refused(caplog, "is not in agent-a's process tree")


@pytest.mark.parametrize("argv, reason", [
    (["cat", "/etc/shadow"], "root-helper allows only"),
    (["ip", "netns", "exec", "{ns}", "sh", "-c", "id"], "program 'sh' is not one of"),
    (["ip", "netns", "exec", "{ns}", "env", "LD_PRELOAD=/tmp/x.so", "dnsmasq"],
     "environment variable 'LD_PRELOAD' is not allowed"),
    (["ip", "netns", "exec", "myns", "dnsmasq"], "is not a neutron q*-<uuid> namespace"),
])
def test_root_helper_outside_the_whitelist_is_refused(users, tmp_path, caplog, netns,
                                                       argv, reason):
    a, _ = users
    argv = [x.replace("{ns}", netns) for x in argv]

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a, root_helper=True)})
            return await rig.client("agent-a", a, None, "root-helper", *argv)

    rc, out = run(scenario())
    assert rc == 126, out
    assert refused(caplog, reason)


def test_root_helper_runs_in_the_namespace_and_returns_the_exit_code(users, tmp_path,
                                                                      caplog, netns):
    a, _ = users
    caplog.set_level(logging.INFO, "hvsupervisor.privsep.broker")

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a, root_helper=True)})
            ok = await rig.client("agent-a", a, None, "root-helper", "ip", "netns", "exec",
                                  netns, "env", "NEUTRON_NETWORK_ID=x", "dnsmasq", "--version")
            bad = await rig.client("agent-a", a, None, "root-helper", "ip", "netns", "exec",
                                   netns, "dnsmasq", "--no-such-option")
            return ok, bad

    (rc, out), (rc2, out2) = run(scenario())
    assert rc == 0 and "Dnsmasq version" in out
    assert rc2 not in (0, 126), out2  # dnsmasq's own exit code, passed back
    assert [r for r in caplog.records if f"ip netns exec {netns} dnsmasq" in r.getMessage()]


def test_root_helper_needs_its_grant(users, tmp_path, caplog, netns):
    a, _ = users

    async def scenario():
        async with Rig(tmp_path) as rig:
            rig.broker.configure({"agent-a": grant("agent-a", a)})
            return await rig.client("agent-a", a, None, "root-helper", "ip", "netns", "exec",
                                    netns, "dnsmasq", "--version")

    rc, out = run(scenario())
    assert rc == 126, out
    assert refused(caplog, "agent-a has no root_helper grant")
