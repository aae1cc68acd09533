"""The demo node's override dir: conf.d snippets over the shipped defaults.

The shipped defaults stay as they are; the demo only adds snippets, as an
operator would (README.md, "Configuration"): the site values that join the node to
the demo cloud (hvtestcloud/cloud.py: bus, databases, Placement, neutron, glance,
the metadata secret) and what this machine kind cannot provide:

- no OVS kernel module: ``datapath_type = netdev``;
- no kernel conntrack for the OVS firewall: ``firewall_driver = noop``;
- no tunnels: a flat ``physnet1`` on ``br-phys``, made by the supervisor
  (``[supervisor] ensure_bridges``), metadata from the DHCP namespace;
- the demo's private libvirtd (``connection_uri``) and ``virt_type = qemu``
  unless KVM really boots a guest here (hvtestcloud/boot.py ``kvm_boots``);
- a short nova ``graceful_shutdown_timeout``: with the libvirt driver,
  nova-compute leaves on SIGTERM only when that runs out (nova's default
  180 s; doc/upstream-behaviour.md section 13), and its stop budget follows
  the option (core/stopbudget.py), so Ctrl-C takes seconds, not three minutes.
  A demo VM has nothing in flight worth waiting for.

nova-compute keeps the shipped libvirt driver and libvirt gate.

One deviation is not about the machine: the agents run as root
(``50-demo-root.conf``, the documented opt-out), where the shipped catalog
runs them as nova/neutron (doc/upstream-behaviour.md section 15). Not yet
verified for the demo: nova-compute as nova reaching the demo's private
libvirtd socket (root:root 0770) and its instances through libvirt, os-vif
plugging through the broker, and the demo cloud's nova sqlite shared with
group nova for nova-api-metadata; ``hvsupervisor demo`` also must not create
system users on a developer's machine as a side effect.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path

from hvtestcloud import cloud
from hvtestcloud.ini import write_ini

SNIPPET = "50-demo.conf"
ROOT_SNIPPET = "50-demo-root.conf"
AGENTS = ("nova-compute", "nova-api-metadata", "neutron-openvswitch-agent",
          "neutron-dhcp-agent", "neutron-l3-agent", "neutron-metadata-agent")
# [DEFAULT] graceful_shutdown_timeout for the demo's nova-compute; its stop
# budget is this + [supervisor] stop_margin (10 s by default).
NOVA_GRACEFUL_SHUTDOWN_TIMEOUT = 5


def write_compute_id(state_dir: Path, host: str) -> str:
    """The node identity PredictableNodeUUIDDriver reports, fixed in nova's state dir."""
    node_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS, host))
    nova_state = state_dir / "nova"
    nova_state.mkdir(parents=True, exist_ok=True)
    (nova_state / "compute_id").write_text(node_uuid)
    return node_uuid


def root_opt_out(target: Path, why: str) -> Path:
    """``user = root`` for the six agents (etc/examples/hvsupervisor.conf.d/50-root.conf.example),
    with ``why`` as the file's comment."""
    target.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {line}".rstrip() for line in why.strip().splitlines()]
    for agent in AGENTS:
        lines += ["", f"[agent:{agent}]", "user = root"]
    target.write_text("\n".join(lines) + "\n")
    return target


DEMO_ROOT_WHY = """\
hvsupervisor demo: the opt-out of the shipped nova/neutron users (README,
"Agents as their own users"). Not yet verified for the demo: nova-compute as
nova on the demo's private libvirtd (socket root:root 0770) and the VM's
os-vif plugging through the broker; nova-api-metadata as nova needs the demo
cloud's nova sqlite shared with group nova; and the demo does not create
system users on the machine it runs on."""


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


def write_profile(override: Path, cp, host: str, libvirt_uri: str,
                  virt_type: str, dnsmasq_conf: Path | None = None) -> list[Path]:
    """Every demo snippet under ``override`` for a node of cloud ``cp``; the files.

    ``dnsmasq_conf``: a dnsmasq config file for the DHCP agent
    (``dnsmasq_config_file``), see node.py ``_dnsmasq_conf``.
    """
    files = cloud.node_snippets(cp, override, host, compute_driver="libvirt.LibvirtDriver",
                                flat_network=True, name=SNIPPET)
    if dnsmasq_conf is not None:
        files.append(write_ini(override / "neutron" / "neutron.conf.d" / "60-demo-dnsmasq.conf",
                               {"DEFAULT": {"dnsmasq_config_file": dnsmasq_conf}}))
    files.append(write_ini(override / "nova" / "nova.conf.d" / "60-demo-libvirt.conf", {
        "DEFAULT": {"graceful_shutdown_timeout": NOVA_GRACEFUL_SHUTDOWN_TIMEOUT},
        "libvirt": {"virt_type": virt_type, "cpu_mode": "none", "connection_uri": libvirt_uri},
    }))
    files.append(catalog_env_snippet(
        override / "hvsupervisor.conf.d" / SNIPPET, cp.ovs_env(),
        {"supervisor": {"ensure_bridges": "true"}}))
    files.append(root_opt_out(override / "hvsupervisor.conf.d" / ROOT_SNIPPET, DEMO_ROOT_WHY))
    return files
