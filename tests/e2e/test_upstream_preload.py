"""The real neutron agents started through their preloader (start = preload).

A second node of the session's cloud (its own host name), shipped catalog
(agents as their users) plus ``start = preload`` for the four neutron agents.
The first start of the group (the OVS agent) execs while the neutron
preloader (process/preload.py) imports; an agent started before the preloader
is ready execs too and says ``event=preload-not-ready`` (how soon the OVS agent
is ready decides that for the DHCP and L3 agents' first start: a fast one on a
br-int that exists already comes before the preloader). Every start once the
preloader is ready is a fork: the test restarts the OVS, DHCP and L3 agents
and checks that each is forked, becomes ready, reports to neutron-server, runs
as neutron with no capabilities, is the supervisor's child, and looks exec'd:
``/proc/PID/comm`` and the command line of its console script.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from hvsupervisor.control.client import call
from tests.e2e.controlplane import wait_until
from tests.fixtures.controlplane import make_node, spawn_supervisor

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

HOST = "e2e-preload-node"
NEUTRON = ("neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent",
           "neutron-metadata-agent")


@pytest.fixture(scope="module")
def preload_node(upstream_controlplane):
    cp = upstream_controlplane
    base = Path(tempfile.mkdtemp(prefix="hvsup-e2e-preload-"))
    base.chmod(0o711)
    conf_d = base / "override" / "hvsupervisor.conf.d"
    conf_d.mkdir(parents=True)
    (conf_d / "70-preload.conf").write_text(
        "".join(f"[agent:{n}]\nstart = preload\n" for n in NEUTRON))
    node = make_node(cp, base, host=HOST)
    spawn_supervisor(cp, node)
    try:
        yield node
    finally:
        node.supervisor.stop(timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _proc(pid: int) -> dict[str, str]:
    status = dict(line.split(":\t", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in line)
    status["comm"] = Path(f"/proc/{pid}/comm").read_text().strip()
    status["cmdline"] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return status


def _preloaded(node, name: str, pid: int) -> bool:
    line = rf"event=preloaded agent={name} pid={pid}\b"
    return re.search(line, node.supervisor_log()) is not None


def _restarted(node, names: list[str], before: dict) -> dict:
    """``restart`` of ``names``; the status once each is ready with a new pid."""
    old = {n: before[n]["pid"] for n in names}
    call(node.control_socket, {"cmd": "restart", "agents": names})

    def again():
        st = node.status()
        return st if all(st[n]["ready"] and st[n]["pid"] != old[n] for n in names) else None
    return wait_until(again, 120, f"{', '.join(names)} ready again")


def test_neutron_agents_forked_from_the_preloader(preload_node, upstream_controlplane):
    node, cp = preload_node, upstream_controlplane
    status = node.all_ready()
    assert "event=preloader-start" in node.supervisor_log()
    log = node.supervisor_log()
    for name in ("neutron-dhcp-agent", "neutron-l3-agent"):  # forked, or said why not
        assert (_preloaded(node, name, status[name]["pid"])
                or f"event=preload-not-ready agent={name}: exec" in log), (name, log[-3000:])
    # Restart the OVS agent, then the DHCP and L3 agents: every start now is a fork.
    for names in (["neutron-openvswitch-agent"], ["neutron-dhcp-agent", "neutron-l3-agent"]):
        t0 = time.monotonic()
        status = _restarted(node, names, status)
        print(f"preloaded {', '.join(names)} ready {time.monotonic() - t0:.1f}s after the restart")
    forked = [n for n in NEUTRON if _preloaded(node, n, status[n]["pid"])]
    assert {"neutron-openvswitch-agent", "neutron-dhcp-agent", "neutron-l3-agent"} <= set(
        forked), node.supervisor_log()[-3000:]
    for name in forked:
        pid = status[name]["pid"]
        st = _proc(pid)
        assert st["PPid"] == str(node.supervisor.pid), (name, st["PPid"])
        assert st["CapEff"] == "0000000000000000" and st["NoNewPrivs"] == "1", name
        assert st["comm"] == name[:15], (name, st["comm"])
        assert f"/{name} --log-file" in st["cmdline"], (name, st["cmdline"])
        assert "--config-file" in st["cmdline"] and "preloader" not in st["cmdline"], name
        sid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
        assert sid == pid, (name, sid)
    # neutron-server hears from every agent of this node, the forked ones included.
    types = {"Open vSwitch agent", "DHCP agent", "L3 agent", "Metadata agent"}
    wait_until(lambda: types <= {a["agent_type"] for a in cp.neutron_agents()
                                 if a["host"] == HOST and a["alive"]}, 120,
               "the node's neutron agents alive at neutron-server")
