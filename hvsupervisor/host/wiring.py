"""Which host gates a node needs, built from the agents' effective config.

The libvirt URI and the ovsdb remote/bridges are what nova and neutron will
use, so they are read from those agents' plans through oslo.config
(config/explain.py), not from a setting of ours that could disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.explain import effective
from hvsupervisor.config.plan import Plan
from hvsupervisor.config.settings import Settings
from hvsupervisor.host.libvirt import LibvirtGate, libvirt_uri
from hvsupervisor.host.ovsdb import OvsdbGate, SettingsError, ovsdb_settings


@dataclass(frozen=True)
class GateSettings:
    """The inputs of the gates; a reload rebuilds a gate only when these change."""

    libvirt_uri: str | None
    ovsdb: tuple[str, tuple[str, ...], str, str] | None
    ensure_bridges: bool


def _owner(plans: dict[str, Plan], gate: str, prefer: tuple[str, str] | None) -> Plan | None:
    """The plan whose config defines the gate: the first whose files set ``prefer``, else
    the first. (A look at the parsed files, not a full oslo resolution per plan: with a
    thousand snippets that would parse them all again for every agent.)"""
    users = [p for p in plans.values() if gate in p.host_gates]
    if prefer is not None:
        section, option = prefer
        for plan in users:
            if any(pf.line_of(section, option) is not None for pf in plan.parsed):
                return plan
    return users[0] if users else None


def gate_settings(settings: Settings, plans: dict[str, Plan]) -> GateSettings:
    """Derive the gates' inputs; ConfigError (naming the agent) if the config is unusable."""
    uri = None
    owner = _owner(plans, "libvirt", None)
    if owner is not None:
        uri = libvirt_uri(effective(owner).lookup)
    ovs = None
    owner = _owner(plans, "ovsdb", ("ovs", "bridge_mappings"))
    if owner is not None:
        try:
            remote, bridges, dp_type, integration = ovsdb_settings(effective(owner).lookup)
        except SettingsError as exc:
            raise ConfigError(f"{owner.agent}: {exc}") from None
        ovs = (remote, tuple(bridges), dp_type, integration)
    return GateSettings(uri, ovs, settings.supervisor.ensure_bridges)


def make_gates(settings: Settings, plans: dict[str, Plan]) -> tuple[GateSettings, dict]:
    """Gate objects by name ("libvirt", "ovsdb") for the agents that need them.

    Returns (their inputs, the gates): the supervisor compares the inputs at a
    reload and keeps the running gates when nothing they read changed.
    """
    gs = gate_settings(settings, plans)
    gates: dict = {}
    if gs.libvirt_uri is not None:
        gates["libvirt"] = LibvirtGate(gs.libvirt_uri)
    if gs.ovsdb is not None:
        remote, bridges, dp_type, integration = gs.ovsdb
        gates["ovsdb"] = OvsdbGate(remote, list(bridges), ensure=gs.ensure_bridges,
                                   datapath_type=dp_type, integration_bridge=integration)
    return gs, gates
