"""The demo node's override dir: conf.d snippets over the shipped defaults.

The shipped defaults stay as they are; the demo only adds snippets, as an
operator would (README.md, "Configuration"): site values (host, bus, private
ovsdb) and what a fresh machine without a cloud cannot provide:

- no OVS kernel module: ``datapath_type = netdev`` (doc/upstream-behaviour.md section 11);
- no kernel conntrack for the OVS firewall: ``firewall_driver = noop``;
- no libvirtd/KVM promised: nova's ``fake.PredictableNodeUUIDDriver``, whose
  node uuid is uuid5(DNS, host), with that uuid in ``$state_path/compute_id``
  (so a restart keeps the node identity), and the libvirt gate emptied for
  nova-compute in a catalog snippet;
- no cloud database: a local sqlite nova DB (demo/database.py) so that
  nova-api-metadata can load, in ``nova/nova-api-metadata.conf.d`` (the
  directory only that agent reads).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

SNIPPET = "50-demo.conf"
FAKE_DRIVER = "fake.PredictableNodeUUIDDriver"


def write_ini(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    """Write an oslo-style ini (sections in the given order) from a dict of sections."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in options.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def write_compute_id(state_dir: Path, host: str) -> str:
    """The node identity PredictableNodeUUIDDriver reports, fixed in nova's state dir."""
    node_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, host))
    nova_state = state_dir / "nova"
    nova_state.mkdir(parents=True, exist_ok=True)
    (nova_state / "compute_id").write_text(node_uuid)
    return node_uuid


def catalog_env_snippet(target: Path, extra_env: Mapping[str, str],
                        extra: Mapping[str, Mapping[str, str]] = ()) -> Path:
    """A catalog snippet adding ``extra_env`` to every agent: one ``[agent_defaults]
    environment`` line, which merges key by key into each agent's environment
    (config/settings.py). ``extra`` adds options per section."""
    sections: dict[str, dict[str, str]] = {}
    if extra_env:
        sections["agent_defaults"] = {
            "environment": ",".join(f"{k}:{v}" for k, v in extra_env.items())}
    for section, options in dict(extra).items():
        sections.setdefault(section, {}).update(options)
    return write_ini(target, sections)


def write_profile(override: Path, state_dir: Path, host: str,
                  transport_url: str, ovsdb_connection: str, nova_db: str,
                  ovs_env: Mapping[str, str]) -> list[Path]:
    """Every demo snippet under ``override``; returns the files written."""
    files = [
        write_ini(override / "nova" / "nova.conf.d" / SNIPPET, {
            "DEFAULT": {"host": host, "transport_url": transport_url,
                        "compute_driver": FAKE_DRIVER},
            "os_vif_ovs": {"ovsdb_connection": ovsdb_connection},
        }),
        # nova-api-metadata's worker needs it to boot (demo/database.py); only
        # that agent reads this dir, so nova-compute never sees the credentials.
        write_ini(override / "nova" / "nova-api-metadata.conf.d" / SNIPPET, {
            "database": {"connection": nova_db},
        }),
        write_ini(override / "neutron" / "neutron.conf.d" / SNIPPET, {
            "DEFAULT": {"host": host, "transport_url": transport_url},
            "ovs": {"ovsdb_connection": ovsdb_connection, "datapath_type": "netdev"},
            "securitygroup": {"firewall_driver": "noop"},
        }),
        catalog_env_snippet(override / "hvsupervisor.conf.d" / SNIPPET, ovs_env,
                            {"agent:nova-compute": {"host_gates": ""},
                             # the demo's metrics stay in the demo dir, not the host's
                             # node_exporter textfile dir
                             "supervisor": {"metrics_textfile":
                                            str(state_dir / "hvsupervisor.prom")}}),
    ]
    write_compute_id(state_dir, host)
    return files
