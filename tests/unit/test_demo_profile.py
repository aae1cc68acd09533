"""The demo's override snippets, read back through the real settings loader."""

from __future__ import annotations

import uuid
from pathlib import Path

from hvsupervisor.config.settings import load_settings
from hvsupervisor.demo import profile

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path) -> tuple[Path, Path]:
    override, state = tmp_path / "override", tmp_path / "state"
    profile.write_profile(override, state, "demo-host",
                          "rabbit://guest:guest@127.0.0.1:5672/", "unix:/x/db.sock",
                          "sqlite:////x/nova.sqlite", {"OVS_RUNDIR": "/x"})
    return override, state


def test_catalog_snippet_adds_ovs_rundir_and_drops_the_libvirt_gate(tmp_path):
    override, state = _write(tmp_path)
    settings = load_settings(REPO / "etc", override, str(state), str(tmp_path / "log"),
                             str(tmp_path / "run"))
    shipped = load_settings(REPO / "etc", tmp_path / "none", str(state),
                            str(tmp_path / "log"), str(tmp_path / "run"))
    assert set(settings.agents) == set(shipped.agents)
    for name, spec in settings.agents.items():
        env = dict(spec.environment)
        assert env["OVS_RUNDIR"] == "/x", name
        # The shipped variables are kept: [agent_defaults] environment merges key by key.
        assert dict(shipped.agents[name].environment).items() <= env.items(), name
    assert settings.agents["nova-compute"].host_gates == ()
    assert shipped.agents["nova-compute"].host_gates == ("libvirt",)


def test_compute_id_is_the_fake_drivers_node_uuid(tmp_path):
    _, state = _write(tmp_path)
    assert (state / "nova" / "compute_id").read_text() == str(
        uuid.uuid5(uuid.NAMESPACE_DNS, "demo-host"))


def test_snippets_set_the_fake_driver_netdev_and_noop_firewall(tmp_path):
    override, _ = _write(tmp_path)
    nova = (override / "nova" / "nova.conf.d" / profile.SNIPPET).read_text()
    neutron = (override / "neutron" / "neutron.conf.d" / profile.SNIPPET).read_text()
    assert "compute_driver = fake.PredictableNodeUUIDDriver" in nova
    assert "datapath_type = netdev" in neutron and "firewall_driver = noop" in neutron


def test_catalog_env_snippet_is_one_line(tmp_path):
    p = profile.catalog_env_snippet(tmp_path / "x.conf", {"OVS_RUNDIR": "/x"})
    lines = [line for line in p.read_text().splitlines() if line and not line.startswith("[")]
    assert lines == ["environment = OVS_RUNDIR:/x"]


def test_database_only_in_the_metadata_agents_own_dir(tmp_path):
    from hvsupervisor.config.explain import effective
    from hvsupervisor.config.plan import build_plans

    override, state = _write(tmp_path)
    plans = build_plans(load_settings(REPO / "etc", override, str(state),
                                      str(tmp_path / "log"), str(tmp_path / "run")))
    meta = effective(plans["nova-api-metadata"]).explain("database", "connection")
    assert meta.value == "sqlite:////x/nova.sqlite"
    assert "nova-api-metadata.conf.d" in meta.file
    assert effective(plans["nova-compute"]).explain("database", "connection").value is None
