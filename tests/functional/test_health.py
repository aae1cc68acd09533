"""Readiness and liveness on a real RabbitMQ: an RPC stand-in that answers, goes mute
(SIGSTOP), and a bus that stops and comes back.

Real: RabbitMQ (Debian), oslo.messaging on both sides (tests/rpc_standin.py is an
oslo.messaging RPC server reading its transport_url from its --config-file, as the
agents do), the supervisor, its prober process, promtool. Nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.util import wait_until

ROOT = Path(__file__).resolve().parents[2]
RPC_STANDIN = str(ROOT / "tests" / "rpc_standin.py")
INTERVAL, FAILURES, TIMEOUT = 1.0, 2, 1.0


def _node(node, rabbit) -> None:
    (node.defaults / "svc" / "common.conf").write_text(
        f"[DEFAULT]\ntransport_url = {rabbit.url}\nhost = hvtest\n")
    if rabbit.tls is not None:  # the agent's own TLS settings, in its conf.d
        node.snippet("svc/common.conf.d/10-tls.conf", f"""\
            [oslo_messaging_rabbit]
            ssl = true
            ssl_ca_file = {rabbit.tls['ca']}
            """)
    node.supervisor_opts.update(
        health_interval=str(INTERVAL), health_failures=str(FAILURES),
        health_timeout=str(TIMEOUT), metrics_textfile=str(node.base / "prom" / "hv.prom"),
        restart_sec="0.2", restart_max_delay="1")
    (node.base / "prom").mkdir()
    node.agent("rpc-agent", f"{sys.executable} {RPC_STANDIN} --topic hvtest_agent "
                            "--endpoint-version 1.2", ready="rpc:standin/hvtest_agent@1.0")


def test_ready_only_when_answering_then_a_mute_agent_is_restarted(node, rabbit):
    _node(node, rabbit)
    node.start(wait_ready=False)
    node.wait_ready_message(timeout=60)
    first = node.agent_status("rpc-agent")
    assert first["ready"] and first["health"]["last_outcome"] == "answered"
    assert "RemoteError NoSuchMethod" not in (first["health"]["last_error"] or "")
    healthy = node.wait_agent("rpc-agent", lambda a: a["health"]["state"] == "ok", 15)
    assert node.status()["control_plane"] == "reachable"

    os.kill(healthy["pid"], signal.SIGSTOP)  # alive but mute
    stopped_at = time.monotonic()
    failing = node.wait_agent("rpc-agent", lambda a: a["health"]["state"] == "failing", 15)
    assert failing["health"]["label"] == f"failing 1/{FAILURES}"
    back = node.wait_agent("rpc-agent", lambda a: a["pid"] != healthy["pid"] and a["ready"], 30)
    took = time.monotonic() - stopped_at
    # health_failures x (interval + jitter + probe timeout + login checks) + backoff + start
    assert took < FAILURES * (INTERVAL * 1.1 + TIMEOUT + 3) + 1 + 10, took
    assert back["restarts"] == 1
    assert "SIGKILL" in back["last_exit"] and "hung" in back["last_exit"]
    assert not Path(f"/proc/{healthy['pid']}").exists()
    assert "event=hung agent=rpc-agent" in node.output()


def test_bus_outage_degrades_without_restarts_and_recovers(node, rabbit):
    _node(node, rabbit)
    node.start(wait_ready=False)
    node.wait_ready_message(timeout=60)
    before = node.wait_agent("rpc-agent", lambda a: a["health"]["state"] == "ok", 15)

    rabbit.stop_broker()
    wait_until(lambda: node.status()["control_plane"] == "unreachable", 20, "unreachable")
    wait_until(lambda: any(m.startswith("degraded: control plane unreachable")
                           for m in node.status_messages()), 10, "STATUS= degraded")
    probed = node.agent_status("rpc-agent")["health"]["last_probe"]
    # Several more probes during the outage: none counts, nothing restarts.
    wait_until(lambda: node.agent_status("rpc-agent")["health"]["last_probe"]
               > probed + 3 * INTERVAL, 30, "probes during the outage")
    during = node.agent_status("rpc-agent")
    assert during["pid"] == before["pid"] and during["restarts"] == 0
    assert during["health"]["failures"] == 0
    assert during["health"]["last_error"].startswith("bus-down")
    prom = node.base / "prom" / "hv.prom"  # rewritten within 1 s of a change
    wait_until(lambda: "hvsupervisor_control_plane_reachable 0.0" in prom.read_text(), 5,
               "the textfile shows the outage")

    rabbit.start()
    wait_until(lambda: node.status()["control_plane"] == "reachable", 60, "reachable again")
    after = node.wait_agent("rpc-agent", lambda a: a["health"]["state"] == "ok", 60)
    assert after["pid"] == before["pid"] and after["restarts"] == 0
    wait_until(lambda: not node.status()["status"].startswith("degraded"), 10, "STATUS= clean")

    wait_until(lambda: 'hvsupervisor_agent_healthy{agent="rpc-agent"} 1.0' in prom.read_text()
               and "hvsupervisor_control_plane_reachable 1.0" in prom.read_text(), 5,
               "the textfile shows the recovery")
    text = prom.read_text()
    assert "hvsupervisor_control_plane_reachable 1.0" in text
    assert 'hvsupervisor_agent_healthy{agent="rpc-agent"} 1.0' in text
    assert 'hvsupervisor_agent_restarts_total{agent="rpc-agent"} 0.0' in text
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian prometheus) is needed"
    check = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                           capture_output=True)
    assert check.returncode == 0, check.stderr


def test_tls_bus_is_probed_over_tls_with_the_agents_own_settings(node, rabbit_tls):
    """A bus that speaks TLS only: the probe must use the agent's [oslo_messaging_rabbit]
    ssl options (from its conf.d), or every probe would read "bus-down" and the agent
    would never be ready. Real TLS RabbitMQ, real oslo.messaging on both sides."""
    _node(node, rabbit_tls)
    node.start(wait_ready=False)
    node.wait_ready_message(timeout=60)
    agent = node.wait_agent("rpc-agent", lambda a: a["health"]["state"] == "ok", 15)
    assert agent["ready"] and agent["health"]["last_outcome"] == "answered"
    assert node.status()["control_plane"] == "reachable"
    assert "bus-down" not in (agent["health"]["last_error"] or "")
