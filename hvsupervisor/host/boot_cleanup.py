"""neutron-ovs-cleanup and neutron-netns-cleanup with the node's resolved config.

Why: both tools read the agents' options (integration bridge, interface
driver, state_path, ovsdb connection, privsep helper). Run with only
neutron.conf they miss a custom integration bridge or cannot unplug a port,
so they get exactly the files the agents get, from the agents' own plans.
They run once at boot before the agents (``hvsupervisor-cleanup.service``),
never on an agent restart: at the wrong time they delete live tap ports and
namespaces. ``neutron-netns-cleanup`` acts on every matching namespace of the
host, which is what a boot-time cleanup wants and what tests must fence off
(they run it under ``unshare --mount`` with a private /run/netns).

Commands are argv lists built from plans (pure), then run without a shell.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.process.children import child_env

OVS_AGENT = "neutron-openvswitch-agent"
NETNS_AGENTS = ("neutron-dhcp-agent", "neutron-l3-agent")
OVS_CLEANUP = "neutron-ovs-cleanup"
NETNS_CLEANUP = "neutron-netns-cleanup"

NETNS_NO_MONITOR = ("OS_AGENT__CHECK_CHILD_PROCESSES_INTERVAL", "0")
# Bound on one cleanup run: it must never hold the boot up forever.
CLEANUP_TIMEOUT = 300.0

@dataclass(frozen=True)
class CleanupCommand:
    """One cleanup run: argv (no shell) and the environment the plans set."""

    tool: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def _is_snippet(path: str) -> bool:
    return Path(path).parent.name.endswith(".conf.d")


def merge_config_files(file_lists: Iterable[Sequence[str]]) -> list[str]:
    """Union of several agents' ordered files, base files first, snippets last.

    Each agent's order is base files then conf.d snippets. Concatenating two
    agents would put the second agent's ini after the shared snippets and let
    it override them; so bases (in first-seen order) come before snippets
    (in first-seen order, which is name order within a conf.d).
    """
    bases: list[str] = []
    snippets: list[str] = []
    for files in file_lists:
        for path in files:
            target = snippets if _is_snippet(path) else bases
            if path not in target:
                target.append(path)
    return bases + snippets


def root_env(plan) -> dict[str, str]:
    """The plan's environment without what the supervisor supplies for a user-run agent.

    The cleanup tools run as root, before the supervisor (no privsep broker
    yet): their privsep contexts start helpers directly, as a root agent's do
    (doc/upstream-behaviour.md section 15). The broker client that the plan
    sets as ``helper_command``/``root_helper`` would be refused (wrong uid) or
    find no socket.
    """
    return {k: v for k, v in plan.env.items() if k not in plan.supplied}


def _tool(bindir: Path, name: str) -> str:
    candidate = bindir / name
    return str(candidate) if os.access(candidate, os.X_OK) else name


def build_ovs_cleanup(
    plans: Mapping[str, object], bindir: Path, log_dir: Path, extra: Sequence[str] = ()
) -> CleanupCommand:
    """neutron-ovs-cleanup with the OVS agent's files (neutron.conf, ini, conf.d)."""
    plan = _plan(plans, OVS_AGENT)
    files = [f.path for f in plan.files]
    argv = [_tool(bindir, OVS_CLEANUP), "--log-file", str(log_dir / f"{OVS_CLEANUP}.log")]
    for path in files:
        argv += ["--config-file", path]
    return CleanupCommand(OVS_CLEANUP, tuple(argv + list(extra)), root_env(plan))


def build_netns_cleanup(
    plans: Mapping[str, object], bindir: Path, log_dir: Path, extra: Sequence[str] = ()
) -> CleanupCommand:
    """neutron-netns-cleanup with the DHCP and L3 agents' files merged.

    It needs both inis: ``interface_driver`` to unplug qdhcp/qrouter ports and
    the dhcp/l3 state paths to stop their helpers.
    """
    found = [plans[name] for name in NETNS_AGENTS if name in plans]
    if not found:
        raise ConfigError(f"{NETNS_CLEANUP}: no [agent:{NETNS_AGENTS[0]}] or "
                          f"[agent:{NETNS_AGENTS[1]}] in the catalog")
    files = merge_config_files([f.path for f in p.files] for p in found)
    env: dict[str, str] = {}
    for p in found:
        env.update(root_env(p))
    # neutron 29: with --force, killing a DHCP namespace's dnsmasq builds an
    # external_process.ProcessMonitor whose non-daemon checking thread loops
    # until stop(), which netns_cleanup.main never calls: the tool does its
    # work and then never exits. Interval 0 starts no thread. Only this run
    # gets it (oslo's environment source, above the files).
    env[NETNS_NO_MONITOR[0]] = NETNS_NO_MONITOR[1]
    argv = [_tool(bindir, NETNS_CLEANUP), "--log-file", str(log_dir / f"{NETNS_CLEANUP}.log")]
    for path in files:
        argv += ["--config-file", path]
    return CleanupCommand(NETNS_CLEANUP, tuple(argv + list(extra)), env)


def _plan(plans: Mapping[str, object], name: str):
    try:
        return plans[name]
    except KeyError:
        raise ConfigError(f"cleanup needs [agent:{name}] in the catalog") from None


def run(cmd: CleanupCommand, timeout: float = CLEANUP_TIMEOUT) -> int:
    """Run one cleanup to completion (bounded); its output goes where ours goes."""
    try:
        return subprocess.run(list(cmd.argv), env=child_env(os.environ, cmd.env),
                              check=False,
                              timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        print(f"{cmd.tool}: still running after {timeout:.0f}s, killed", file=sys.stderr)
        return 124
