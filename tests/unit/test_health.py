"""The pure health core: ready-rule parsing, line protocol, liveness policy, metrics text."""

from __future__ import annotations

import random
import shutil
import subprocess

import pytest

from hvsupervisor.config.settings import ReadyRule
from hvsupervisor.core.agent_status import AgentStatus, NodeStatus
from hvsupervisor.health import health_policy as hp
from hvsupervisor.health import outcome as oc
from hvsupervisor.health.metrics import MetricsSink, build_registry, exit_code
from hvsupervisor.health.protocol import (
    RpcRequest,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)


@pytest.mark.parametrize("text,fields", [
    ("rpc:nova/compute@6.0", dict(exchange="nova", topic="compute", version="6.0")),
    ("rpc:neutron/dhcp_agent", dict(exchange="neutron", topic="dhcp_agent", version="1.0")),
    ("http:http://127.0.0.1:8775/:200", dict(url="http://127.0.0.1:8775/", status=200)),
    ("http:http://127.0.0.1:8775/", dict(url="http://127.0.0.1:8775/", status=None)),
    ("http:http+unix:///var/lib/x/metadata_proxy:404",
     dict(url="http+unix:///var/lib/x/metadata_proxy", status=404)),
])
def test_ready_rule_parses_rpc_and_http(text, fields):
    rule = ReadyRule.parse(text)
    for key, value in fields.items():
        assert getattr(rule, key) == value
    assert ReadyRule.parse(str(rule)) == rule


@pytest.mark.parametrize("text", [
    "rpc:compute", "rpc:nova/", "rpc:nova/compute@x", "rpc:nova/com pute",
    "http:ftp://x/", "http:http://host/", "http:http+unix://relative", "http:",
    "http:http://h:80/:999",
])
def test_ready_rule_refuses_bad_rpc_and_http(text):
    with pytest.raises(ValueError):
        ReadyRule.parse(text)


def test_protocol_round_trip():
    req = RpcRequest("rabbit://u:p@h:5672/", "nova", "compute", "node1", "6.0", 5.0)
    assert decode_request(encode_request(7, req)) == (7, req)
    tls = RpcRequest("rabbit://u:p@h:5671/", "nova", "compute", "node1", "6.0", 5.0,
                     (("ssl", "true"), ("ssl_ca_file", "/etc/ssl/ca.pem")))
    assert decode_request(encode_request(8, tls)) == (8, tls)
    result = oc.ProbeResult(oc.UNANSWERED, "no reply", 5.01)
    line = encode_reply(7, result)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode_reply(line) == (7, result)
    with pytest.raises(ValueError):
        decode_reply(b'{"id": 1, "outcome": "maybe"}\n')
    with pytest.raises(ValueError):
        decode_request(b'{"id": 1}\n')


def _probe(outcome: str) -> oc.ProbeResult:
    return oc.ProbeResult(outcome, "detail", 0.01)


def test_hung_after_threshold_consecutive_unanswered():
    h = hp.AgentHealth(threshold=3)
    assert h.label() == "unknown"
    assert not h.record(_probe(oc.UNANSWERED), 1.0)
    assert h.label() == "failing 1/3"
    assert not h.record(_probe(oc.UNANSWERED), 2.0)
    assert h.record(_probe(oc.UNANSWERED), 3.0)
    assert h.last_error == "unanswered: detail" and h.last_probe == 3.0


def test_an_answer_resets_the_count():
    h = hp.AgentHealth(threshold=2)
    h.record(_probe(oc.UNANSWERED), 1.0)
    h.record(_probe(oc.ANSWERED), 2.0)
    assert h.label() == "ok" and h.failures == 0
    assert not h.record(_probe(oc.UNANSWERED), 3.0)


def test_bus_down_and_errors_never_count():
    h = hp.AgentHealth(threshold=1)
    for outcome in (oc.BUS_DOWN, oc.ERROR, oc.BUS_DOWN):
        assert not h.record(_probe(outcome), 1.0)
    assert h.failures == 0
    # An unanswered HTTP probe while the control plane is out is not counted either.
    assert not h.record(_probe(oc.UNANSWERED), 2.0, control_plane=hp.UNREACHABLE)
    assert h.failures == 0


def test_after_an_outage_an_agent_gets_threshold_probes_to_reconnect():
    """The bus is back before the agent's consumer is: oslo.messaging reconnects with a
    growing delay. Those first unanswered probes must not make every agent "hung"."""
    h = hp.AgentHealth(threshold=2)
    assert not h.record(_probe(oc.ANSWERED), 1.0)
    assert not h.record(_probe(oc.BUS_DOWN), 2.0)
    # Bus back, agent still reconnecting: two probes of grace, not counted.
    assert not h.record(_probe(oc.UNANSWERED), 3.0)
    assert not h.record(_probe(oc.UNANSWERED), 4.0)
    assert h.failures == 0
    # Still mute after the grace: now it counts, and two in a row make it hung.
    assert not h.record(_probe(oc.UNANSWERED), 5.0)
    assert h.record(_probe(oc.UNANSWERED), 6.0)
    # An answer ends the grace at once: a later hang is counted from its first probe.
    h.reset()
    h.record(_probe(oc.BUS_DOWN), 7.0)
    h.record(_probe(oc.ANSWERED), 8.0)
    assert not h.record(_probe(oc.UNANSWERED), 9.0)
    assert h.record(_probe(oc.UNANSWERED), 10.0)


def test_control_plane_follows_the_latest_rpc_probe():
    cp = hp.UNKNOWN
    cp = hp.control_plane(oc.ERROR, cp)
    assert cp == hp.UNKNOWN
    cp = hp.control_plane(oc.BUS_DOWN, cp)
    assert cp == hp.UNREACHABLE
    cp = hp.control_plane(oc.UNANSWERED, cp)  # the bus took a login: reachable
    assert cp == hp.REACHABLE


def test_jitter_stays_within_ten_percent():
    rng = random.Random(1)
    delays = [hp.next_delay(60.0, rng) for _ in range(200)]
    assert min(delays) >= 54.0 and max(delays) <= 66.0
    assert len(set(delays)) > 100


def test_exit_code_from_last_exit():
    assert exit_code(None) == -1
    assert exit_code("exit 1 (ImportError)") == 1
    assert exit_code("signal 9 (SIGKILL) (hung: 3 probes unanswered)") == 137


def _node(control_plane="reachable", ready=True, agents=None):
    return NodeStatus(ready=ready, status="", control_plane=control_plane, agents=tuple(
        agents if agents is not None else _agents()))


def _agents():
    return [AgentStatus("nova-compute", "ready", True, pid=42, restarts=2,
                        last_exit="signal 9 (SIGKILL)", ready_rule="rpc:compute",
                        health={"state": "ok", "failures": 0, "last_duration": 0.012,
                                "last_probe": 1.7e9}),
            AgentStatus("neutron-dhcp-agent", "waiting", False)]


def test_metrics_render_the_node_status():
    from prometheus_client.exposition import generate_latest

    text = generate_latest(build_registry(_node("unreachable", False))).decode()
    assert 'hvsupervisor_agent_up{agent="nova-compute"} 1.0' in text
    assert 'hvsupervisor_agent_up{agent="neutron-dhcp-agent"} 0.0' in text
    assert 'hvsupervisor_agent_healthy{agent="nova-compute"} 1.0' in text
    assert 'hvsupervisor_agent_healthy{agent="neutron-dhcp-agent"} -1.0' in text
    assert 'hvsupervisor_agent_probe_duration_seconds{agent="nova-compute"} 0.012' in text
    assert 'probe_duration_seconds{agent="neutron-dhcp-agent"}' not in text
    assert "hvsupervisor_ready 0.0" in text


def test_textfile_written_atomically_and_valid(tmp_path):
    path = tmp_path / "hvsupervisor.prom"
    sink = MetricsSink(str(path))
    sink.update(build_registry(_node("unreachable", False)))
    text = path.read_text()
    assert 'hvsupervisor_agent_restarts_total{agent="nova-compute"} 2.0' in text
    assert 'hvsupervisor_agent_last_exit_code{agent="nova-compute"} 137.0' in text
    assert "hvsupervisor_control_plane_reachable 0.0" in text
    assert 'hvsupervisor_info{version="' in text
    assert [p.name for p in tmp_path.iterdir()] == ["hvsupervisor.prom"]  # no temp left
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian prometheus) is not installed")
    check = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                           capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_missing_textfile_dir_is_skipped_with_one_warning(tmp_path, caplog):
    sink = MetricsSink(str(tmp_path / "absent" / "hv.prom"))
    sink.update(build_registry(_node()))
    sink.update(build_registry(_node(agents=_agents()[:1])))
    assert not (tmp_path / "absent").exists()
    assert sum("does not exist" in r.message for r in caplog.records) == 1


def test_bad_metrics_listen_is_a_located_config_error(tmp_path):
    from hvsupervisor.config.errors import ConfigError
    from hvsupervisor.config.settings import load_settings

    defaults, override = tmp_path / "d", tmp_path / "o"
    defaults.mkdir()
    override.mkdir()
    (defaults / "hvsupervisor.conf").write_text(
        "[DEFAULT]\nenabled_agents =\n[supervisor]\nmetrics_listen = everywhere\n")
    with pytest.raises(ConfigError) as err:
        load_settings(defaults, override, str(tmp_path), str(tmp_path), str(tmp_path))
    assert "metrics_listen" in str(err.value) and "hvsupervisor.conf" in str(err.value)
    assert ":4" in str(err.value)  # the line


def test_status_line_prefix_while_the_control_plane_is_unreachable():
    from hvsupervisor.supervisor.health_watch import with_control_plane

    assert with_control_plane("6/6 ready", hp.REACHABLE) == "6/6 ready"
    assert with_control_plane("6/6 ready", hp.UNREACHABLE) == \
        "degraded: control plane unreachable; 6/6 ready"
    # one "degraded:" word, not two, when READY went out at ready_timeout too
    assert with_control_plane("degraded: 5/6 ready; x starting", hp.UNREACHABLE) == \
        "degraded: control plane unreachable; 5/6 ready; x starting"
