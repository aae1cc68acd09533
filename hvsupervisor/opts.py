"""The supervisor's own options, declared as oslo.config data.

They are read from ``hvsupervisor.conf`` and ``hvsupervisor.conf.d/*.conf``
layered like every other file. ``list_opts()`` feeds oslo-config-generator
(entry point ``oslo.config.opts = hvsupervisor``), so the sample file and
these declarations cannot drift apart.
"""

from __future__ import annotations

from oslo_config import cfg, types

AGENT_GROUP_PREFIX = "agent:"

SIX_AGENTS = [
    "nova-compute",
    "nova-api-metadata",
    "neutron-openvswitch-agent",
    "neutron-dhcp-agent",
    "neutron-l3-agent",
    "neutron-metadata-agent",
]

# [DEFAULT] log_dir is oslo.log's own option (registered with oslo.log's
# options): the same directory holds every agent's <agent>.log and, through
# oslo.log, the supervisor's hvsupervisor.log. Its default is set in
# config/settings.py (DEFAULT_LOG_DIR).
DEFAULT_LOG_DIR = "/var/log/hvsupervisor"

default_opts = [
    cfg.ListOpt(
        "enabled_agents",
        default=SIX_AGENTS,
        help="Agents to run, by the NAME of their [agent:NAME] section. An agent "
        "left out is not started; removing one and reloading stops it.",
    ),
    cfg.StrOpt(
        "state_dir",
        default="/var/lib/hvsupervisor",
        help="Persistent state of the agents (nova's compute_id lives here: never "
        "clean it). Overridden by --state-dir.",
    ),
    cfg.StrOpt(
        "run_dir",
        default="/run/hvsupervisor",
        help="Sockets (control, per-agent notify) and the lock. Overridden by --run-dir.",
    ),
]

supervisor_opts = [
    cfg.FloatOpt(
        "ready_timeout",
        default=300.0,
        min=0,
        help="Seconds to wait for every enabled agent to be ready before telling "
        "systemd READY=1 anyway, with a degraded STATUS=. Some readiness needs the "
        "control plane, and a node must not block boot forever without it.",
    ),
    cfg.FloatOpt(
        "reload_timeout",
        default=120.0,
        min=0,
        help="How long `hvsupervisor reload` (= `systemctl reload`) waits for the agents "
        "it restarted or started to be ready again (or failed) before it returns; the reply "
        "says, per agent, which happened. Keep it below the unit's TimeoutStartSec=, which "
        "systemd also applies to ExecReload=.",
    ),
    cfg.BoolOpt(
        "stop_dataplane",
        default=True,
        help="On a full stop, also stop what the agents left running (dnsmasq, "
        "haproxy, keepalived). False keeps the data plane up across a stop; the "
        "survivors are listed in the log. A single agent restart never touches them.",
    ),
    cfg.BoolOpt(
        "ensure_bridges",
        default=False,
        help="Create the bridges named in the OVS agent's bridge_mappings (and the "
        "integration bridge) when they are missing, instead of waiting for them.",
    ),
    cfg.FloatOpt("restart_sec", default=0.1, min=0, help="First restart delay (seconds)."),
    cfg.FloatOpt(
        "restart_max_delay", default=30.0, min=0, help="Cap of the restart delay (seconds)."
    ),
    cfg.IntOpt(
        "restart_steps",
        default=5,
        min=1,
        help="Steps from restart_sec to restart_max_delay, geometric as systemd's "
        "RestartSteps=.",
    ),
    cfg.FloatOpt(
        "restart_jitter", default=0.1, min=0, max=1, help="Random jitter, a fraction of the delay."
    ),
    cfg.FloatOpt(
        "stable_period",
        default=30.0,
        min=0,
        help="Seconds an agent must stay ready before its failure count (and backoff) resets.",
    ),
    cfg.IntOpt(
        "flap_max",
        default=5,
        min=1,
        help="This many failures within flap_window make the agent 'failed' (no more "
        "automatic restarts; 'hvsupervisor restart AGENT' revives it).",
    ),
    cfg.FloatOpt("flap_window", default=60.0, min=0, help="Window for flap_max (seconds)."),
    cfg.StrOpt(
        "journal_socket",
        default="/run/systemd/journal/stdout",
        help="journald's stream socket. Each agent's stdout/stderr is connected to it "
        "under the agent's name; without it, output goes to <log_dir>/<agent>.log.",
    ),
]

agent_opts = [
    cfg.StrOpt(
        "command",
        required=True,
        help="The agent's command line, split like a shell would but never run by "
        "one. Substitutions (also in environment and ready): {state_dir} {log_dir} "
        "{run_dir} {agent} {bindir} {config_files} (;-joined) {use_stderr} (true when "
        "the output goes to the journal). A bare name is looked up in {bindir} first, then PATH.",
    ),
    cfg.ListOpt(
        "config_files",
        default=[],
        help="Base config files, relative to the defaults/override dirs, in order. "
        "Each becomes --config-file.",
    ),
    cfg.ListOpt(
        "config_dirs",
        default=[],
        help="conf.d dirs (relative) whose *.conf snippets follow the base files, sorted by name.",
    ),
    cfg.ListOpt("after", default=[], help="Agents that must be ready before this one starts."),
    cfg.ListOpt(
        "host_gates",
        default=[],
        item_type=types.String(choices=["libvirt", "ovsdb"]),
        help="Host services this agent needs: libvirt, ovsdb.",
    ),
    cfg.StrOpt(
        "ready",
        default="alive:5",
        help="When the agent counts as ready: notify (READY=1 from its main pid on its "
        "own notify socket) | alive:SECONDS | tcp:HOST:PORT | unix:PATH (listening) | "
        "ovsdb-bridge:NAME (the bridge is in the node's ovsdb and its OpenFlow controller, "
        "if any, is connected: the neutron OVS agent's own).",
    ),
    cfg.FloatOpt(
        "stop_timeout",
        default=30.0,
        min=0,
        help="Seconds between SIGTERM and SIGKILL when stopping the agent.",
    ),
    cfg.ListOpt(
        "directories",
        default=[],
        help="Directories the agent needs but does not create itself, made (mode 0711, "
        "so libvirt's qemu can reach instance disks) before each start: nova creates "
        "neither its state_path nor its instances_path. Substitutions as in command.",
    ),
    cfg.DictOpt(
        "environment",
        default={},
        help="Extra environment, KEY:VALUE pairs. OS_<GROUP>__<OPT> variables not set "
        "here are removed from the agent's environment.",
    ),
]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options for oslo-config-generator (one example agent section)."""
    return [
        ("DEFAULT", default_opts),
        ("supervisor", supervisor_opts),
        (AGENT_GROUP_PREFIX + "NAME", agent_opts),
    ]
