"""The supervisor's own options, declared as oslo.config data.

They are read from ``hvsupervisor.conf`` and ``hvsupervisor.conf.d/*.conf``
layered like every other file. ``list_opts()`` feeds oslo-config-generator
(entry point ``oslo.config.opts = hvsupervisor``), so the sample file and
these declarations cannot drift apart.
"""

from __future__ import annotations

import re

from oslo_config import cfg, types

from hvsupervisor.config import paths
from hvsupervisor.config import types as hvtypes

AGENT_GROUP_PREFIX = "agent:"
# Every [agent:NAME] inherits the options of this section that it does not set
# itself; `environment` merges key by key (config/settings.py).
AGENT_DEFAULTS = "agent_defaults"

# Agent names, modelled on systemd's unit-name rules: lower-case ASCII letters,
# digits and "_.@-", starting with a letter or digit (so never "-x", "." or
# ".."), no "/", at most 64 bytes. Lower case because oslo.config folds section
# names: [agent:Foo] and [agent:foo] would be one section with two log files.
# The name becomes <log_dir>/<name>.log and the unix socket
# <run_dir>/notify/<name>.sock, so it must be a plain file name, short enough
# that the socket path fits sockaddr_un's 108 bytes under a normal run dir.
AGENT_NAME_MAX = 64
AGENT_NAME = re.compile(r"[a-z0-9][a-z0-9_.@-]*\Z")


def agent_name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid agent name, or None."""
    if not name:
        return "an agent name must not be empty"
    if len(name) > AGENT_NAME_MAX:
        return f"an agent name is at most {AGENT_NAME_MAX} characters"
    if not name.isascii() or not AGENT_NAME.match(name):
        return ("an agent name is lower-case ASCII letters, digits and '_.@-', starting "
                "with a letter or digit")
    if ".." in name:
        return "an agent name must not contain '..'"
    return None

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
        default=paths.DEFAULT_RUN_DIR,
        help="Sockets (control, per-agent notify) and the lock. Overridden by --run-dir.",
    ),
]

supervisor_opts = [
    cfg.Opt(
        "ready_timeout",
        type=hvtypes.Seconds(),
        default=300.0,
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
        default=False,
        help="On a full stop, also stop the data-plane helpers the agents left "
        "running (dnsmasq, haproxy, keepalived, neutron-keepalived-state-change). "
        "False (the default) keeps DHCP, metadata and HA routers serving across a "
        "stop, restart or upgrade of the supervisor; the agents adopt the helpers "
        "when they start again, and the survivors are listed in the log. Other "
        "leftovers (privsep daemons, stray workers) are always stopped. A single "
        "agent restart never touches the helpers.",
    ),
    cfg.ListOpt(
        "dataplane_helpers",
        default=["dnsmasq", "haproxy", "keepalived", "neutron-keepalived-state-change",
                 "radvd", "conntrackd"],
        help="Program names (argv[0], or the script after an interpreter) of the "
        "data-plane helpers the agents start and leave running on purpose. With "
        "stop_dataplane = false they, and what runs below them, outlive a stop of "
        "the supervisor; any other leftover is stopped.",
    ),
    cfg.BoolOpt(
        "ensure_bridges",
        default=False,
        help="Create the bridges named in the OVS agent's bridge_mappings (and the "
        "integration bridge) when they are missing, instead of waiting for them.",
    ),
    cfg.Opt("restart_sec", type=hvtypes.Seconds(max=3600), default=0.1,
            help="First restart delay (seconds)."),
    cfg.Opt("restart_max_delay", type=hvtypes.Seconds(max=3600), default=30.0,
            help="Cap of the restart delay (seconds); below restart_sec, restart_sec is used."),
    cfg.Opt(
        "restart_steps",
        type=hvtypes.Count(min=1, max=1000),
        default=5,
        help="Steps from restart_sec to restart_max_delay, geometric as systemd's "
        "RestartSteps=.",
    ),
    cfg.Opt("restart_jitter", type=hvtypes.Fraction(), default=0.1,
            help="Random jitter, a fraction of the delay (0 to 1)."),
    cfg.Opt(
        "stable_period",
        type=hvtypes.Seconds(),
        default=30.0,
        help="Seconds an agent must stay ready before its failure count (and backoff) resets.",
    ),
    cfg.Opt(
        "flap_max",
        type=hvtypes.Count(min=1, max=1000),
        default=5,
        help="This many failures within flap_window make the agent 'failed' (no more "
        "automatic restarts; 'hvsupervisor restart AGENT' revives it).",
    ),
    cfg.Opt("flap_window", type=hvtypes.Seconds(min=1), default=60.0,
            help="Window for flap_max (seconds, at least 1)."),
    cfg.StrOpt(
        "journal_socket",
        default="/run/systemd/journal/stdout",
        help="journald's stream socket. Each agent's stdout/stderr is connected to it "
        "under the agent's name; without it, output goes to <log_dir>/<agent>.log.",
    ),
]

# Liveness and metrics (doc/health.md); part of [supervisor].
health_opts = [
    cfg.Opt(
        "health_interval",
        type=hvtypes.Seconds(min=1, max=86400),
        default=60.0,
        help="Seconds between liveness probes of a ready agent whose ready rule is rpc "
        "or http (+/-10 %% jitter). Each probe is one RPC call to the agent's own queue "
        "or one HTTP request.",
    ),
    cfg.Opt(
        "health_failures",
        type=hvtypes.Count(min=1, max=1000),
        default=3,
        help="Consecutive unanswered probes, while the control plane is reachable, that "
        "make an agent hung: it is killed and restarted like a crash (backoff and "
        "flapping apply). While the bus is unreachable nothing is restarted.",
    ),
    cfg.Opt(
        "health_timeout",
        type=hvtypes.Seconds(min=0.5, max=3600),
        default=10.0,
        help="Seconds one probe waits for the agent's answer.",
    ),
    cfg.Opt(
        "code_check_interval",
        type=hvtypes.Seconds(min=0, max=86400),
        default=60.0,
        help="Seconds between looks for an agent whose code changed under it (a package "
        "upgrade: 'restart pending' in status, STATUS= and the metrics). Done on a "
        "watchdog tick, when the loop is awake anyway, and on every 'status'. 0: only "
        "on 'status'.",
    ),
    cfg.Opt(
        "upgrade_timeout",
        type=hvtypes.Seconds(min=10, max=86400),
        default=600.0,
        help="How long `hvsupervisor release switch` waits for the node to serve on the "
        "new release (READY, every agent ready and its health probe answering, and "
        "upgrade_gate_command if set) before it rolls back to the previous release by "
        "itself.",
    ),
    cfg.StrOpt(
        "release_root",
        default="/opt/hvsupervisor",
        help="Where releases are installed (<release_root>/releases/<id>/) and the "
        "current/previous links live (doc/release.md). The unit runs "
        "<release_root>/current/bin/hvsupervisor.",
    ),
    cfg.ListOpt(
        "upgrade_gate_command",
        default=[],
        help="Optional argv (comma-separated) run once the agents are ready after a "
        "switch, until it exits 0 or upgrade_timeout passes: the site's check that the "
        "control plane sees this node (e.g. nova lists its nova-compute up at the new "
        "version, neutron its agents alive). The node has no control-plane credentials of "
        "its own; without it the gate says 'control plane not checked'. The environment "
        "has HVSUP_RELEASE (the release id) and HVSUP_HOST.",
    ),
    cfg.StrOpt(
        "metrics_textfile",
        default="/var/lib/prometheus/node-exporter/hvsupervisor.prom",
        help="Prometheus metrics written atomically for node_exporter's textfile "
        "collector (Debian's directory by default). Empty: no file. A missing "
        "directory is logged once and skipped.",
    ),
    cfg.StrOpt(
        "metrics_listen",
        default="",
        regex=r"^(|\[?[A-Za-z0-9.:_-]*\]?:[0-9]{1,5})$",
        help="HOST:PORT to serve the same metrics over HTTP (/metrics). Empty (the "
        "default): no listener.",
    ),
]
supervisor_opts += health_opts

agent_opts = [
    cfg.StrOpt(
        "command",
        required=True,
        help="The agent's command line, split like a shell would but never run by "
        "one. Substitutions (also in environment and ready): {state_dir} {log_dir} "
        "{run_dir} {agent} {bindir} {config_files} (;-joined) {use_stderr} (true when "
        "the output goes to the journal) {service} (the first directory of the first of "
        "config_files: nova, neutron). A bare name is looked up in {bindir} first, then PATH.",
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
        help="conf.d dirs (relative) whose *.conf snippets follow the base files, sorted by "
        "name across all of them. {service} and {agent} are substituted, so "
        "{service}/{agent}.conf.d is a directory only this agent reads.",
    ),
    cfg.ListOpt("after", default=[], help="Agents that must be ready before this one starts."),
    cfg.ListOpt(
        "host_gates",
        default=[],
        item_type=types.String(choices=["libvirt", "ovsdb"]),
        help="Host services this agent needs: libvirt, ovsdb.",
    ),
    cfg.Opt(
        "ready",
        type=hvtypes.ReadyText(),
        default="alive:5",
        help="When the agent counts as ready: notify (READY=1 from its main pid on its "
        "own notify socket) | alive:SECONDS | tcp:HOST:PORT | unix:PATH (listening) | "
        "ovsdb-bridge:NAME (the bridge is in the node's ovsdb and its OpenFlow controller, "
        "if any, is connected: the neutron OVS agent's own).",
    ),
    cfg.StrOpt(
        "stop_signal",
        default="SIGTERM",
        choices=["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL"],
        help="The signal that asks the agent to stop, as systemd's KillSignal=. "
        "SIGKILL follows after stop_timeout. The shipped values are measured per "
        "daemon (doc/upstream-behaviour.md).",
    ),
    cfg.StrOpt(
        "start",
        default="exec",
        choices=["exec", "preload"],
        help="How a new process of the agent is made: exec (its console script, a fresh "
        "interpreter that imports everything) | preload (forked from a warm preloader "
        "of its service and user that imported the console script's module once: "
        "process/preload.py; any preload failure falls back to exec, said once in the "
        "journal).",
    ),
    cfg.Opt(
        "stop_drained",
        type=hvtypes.Pattern(),
        default="",
        help="A regular expression for the line an agent writes to its own log "
        "(<log_dir>/<agent>.log) once its graceful stop has nothing left in flight. "
        "When a line written after stop_signal matches, stop_drained_signal goes to its "
        "main pid at once; SIGKILL after stop_timeout stays the backstop. For a daemon "
        "that finishes its work and then hangs in its own teardown (nova-compute 34 "
        "with the libvirt driver: doc/upstream-behaviour.md section 18). Empty: off.",
    ),
    cfg.StrOpt(
        "stop_drained_signal",
        default="SIGKILL",
        choices=["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL"],
        help="The signal sent when the stop_drained line appears.",
    ),
    cfg.Opt(
        "stop_timeout",
        type=hvtypes.Seconds(max=3600),
        default=None,
        help="Seconds between stop_signal and SIGKILL (0 to 3600). Unset: the agent's "
        "own effective [DEFAULT] graceful_shutdown_timeout (from its plan's files; "
        "graceful_shutdown_default when none sets it) plus stop_margin, so a daemon "
        "that drains in-flight work is given the time its config asks for.",
    ),
    cfg.Opt(
        "graceful_shutdown_default",
        type=hvtypes.Seconds(max=3600),
        default=60.0,
        help="The daemon's own default for [DEFAULT] graceful_shutdown_timeout, used "
        "for stop_timeout when no file of its plan sets it: oslo.service's is 60, "
        "nova overrides it to 180 (nova/conf/base.py).",
    ),
    cfg.Opt(
        "stop_margin",
        type=hvtypes.Seconds(max=600),
        default=10.0,
        help="Added to graceful_shutdown_timeout when stop_timeout is unset: the "
        "daemon's own timer starts after it has seen the signal, and its exit "
        "(threads joined, logs flushed) takes a moment after that.",
    ),
    cfg.ListOpt(
        "directories",
        default=[],
        help="Directories the agent needs but does not create itself, made (mode 0711, "
        "so libvirt's qemu can reach instance disks) before each start: nova creates "
        "neither its state_path nor its instances_path. Substitutions as in command.",
    ),
    cfg.StrOpt(
        "user",
        default="",
        help="Run the agent as this user, with no capabilities at all (groups, gid, uid "
        "set by setpriv, empty bounding set, no_new_privs); its privsep helpers and "
        "neutron's namespace daemons are then started by the supervisor's privsep "
        "broker. Empty or root: run as root, as before. A user that does not exist "
        "is a config error (exit 78).",
    ),
    cfg.StrOpt("group", default="", help="Primary group (default: the user's own)."),
    cfg.ListOpt(
        "supplementary_groups",
        default=[],
        help="Extra groups for the agent, e.g. openvswitch (the ovsdb socket) or "
        "libvirt (libvirtd's socket).",
    ),
    cfg.DictOpt(
        "privsep_contexts",
        default={},
        help="The oslo.privsep contexts the broker starts for this agent when it runs "
        "as a user, CONTEXT:SECTION (e.g. neutron.privileged.default:privsep). The "
        "plan sets helper_command in each SECTION; any other context is refused.",
    ),
    cfg.BoolOpt(
        "root_helper",
        default=False,
        help="When the agent runs as a user: set neutron's [agent] root_helper to the "
        "broker, which runs only 'ip netns exec q*-UUID [env K=V] dnsmasq|haproxy|"
        "keepalived|radvd|conntrackd|neutron-keepalived-state-change'.",
    ),
        cfg.Opt(
        "environment",
        type=hvtypes.Environment(),
        default={},
        help="Extra environment, KEY:VALUE pairs (KEY: letters, digits, '_'). Merged key "
        "by key over [agent_defaults] and across files, in plan order; an empty VALUE "
        "(KEY:) removes KEY. OS_<GROUP>__<OPT> variables not set here are removed from "
        "the agent's environment.",
    ),
]


def list_opts() -> list[tuple[str, list[cfg.Opt]]]:
    """Options for oslo-config-generator (one example agent section)."""
    return [
        ("DEFAULT", default_opts),
        ("supervisor", supervisor_opts),
        (AGENT_DEFAULTS, agent_opts),
        (AGENT_GROUP_PREFIX + "NAME", agent_opts),
    ]
