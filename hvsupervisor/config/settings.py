"""The supervisor's own settings and the agent catalog, read with oslo.config.

``hvsupervisor.conf`` and ``hvsupervisor.conf.d/*.conf`` are layered by the
same rules as the agents' files (config/layers.py) and read by a private
``cfg.ConfigOpts``. Agent sections (``[agent:NAME]``) are discovered from the
parsed files, then their options registered, so adding an agent is data,
not code.

Why over 400 lines: reading, [agent_defaults] inheritance, the key-by-key
environment merge and the located errors all walk the same parsed files and
locator; split apart they would each re-index them.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path

from oslo_config import cfg
from oslo_log import log as oslo_log

from hvsupervisor.config import layers, opts, paths
from hvsupervisor.config import types as hvtypes
from hvsupervisor.config.errors import ConfigError, ConfigWarning
from hvsupervisor.config.parse import ParsedFile, norm_group, parse_file
from hvsupervisor.config.ready import ReadyRule
from hvsupervisor.config.unknown_keys import unknown_keys
from hvsupervisor.core import deps

__all__ = ["CONF_D", "AgentSpec", "ReadyRule", "Settings", "SupervisorSettings",
           "load_settings"]

CONF_D = paths.CATALOG_CONF_D


@dataclass(frozen=True)
class AgentSpec:
    """One ``[agent:NAME]`` section, validated but not yet substituted."""

    name: str
    command: tuple[str, ...]
    config_files: tuple[str, ...]
    config_dirs: tuple[str, ...]
    after: tuple[str, ...]
    host_gates: tuple[str, ...]
    ready: str
    stop_timeout: float | None
    environment: tuple[tuple[str, str], ...]
    directories: tuple[str, ...] = ()
    stop_signal: int = signal.SIGTERM
    # The drained-line rule (core/stop_drain.py): "" is off.
    stop_drained: str = ""
    stop_drained_signal: int = signal.SIGKILL
    start: str = "exec"  # exec | preload (process/preload.py)
    stop_margin: float = 10.0
    graceful_shutdown_default: float = 60.0
    # Who the agent runs as (privsep/identity.py); "" = root, as before.
    user: str = ""
    group: str = ""
    supplementary_groups: tuple[str, ...] = ()
    privsep_contexts: tuple[tuple[str, str], ...] = ()  # (context pypath, section)
    root_helper: bool = False
    # Where each environment key was set: (key, file, line), for plan/explain.
    env_origin: tuple[tuple[str, str, int], ...] = ()
    # Where command, ready and directories were set: (option, file, line), so
    # that a placeholder error found while planning names its line.
    origins: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class SupervisorSettings:
    ready_timeout: float
    reload_timeout: float
    stop_dataplane: bool
    dataplane_helpers: list
    ensure_bridges: bool
    restart_sec: float
    restart_max_delay: float
    restart_steps: int
    restart_jitter: float
    stable_period: float
    flap_max: int
    flap_window: float
    journal_socket: str
    health_interval: float = 60.0
    health_failures: int = 3
    health_timeout: float = 10.0
    code_check_interval: float = 60.0
    metrics_textfile: str = ""
    metrics_listen: str = ""
    upgrade_timeout: float = 600.0
    release_root: str = "/opt/hvsupervisor"
    upgrade_gate_command: list = field(default_factory=list)


@dataclass
class Settings:
    """Everything the supervisor needs from its own config, plus where it came from."""

    defaults_dir: Path
    override_dir: Path
    state_dir: Path
    log_dir: Path
    run_dir: Path
    enabled_agents: list[str]
    agents: dict[str, AgentSpec]
    supervisor: SupervisorSettings
    files: list[layers.LayerFile] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    conf: cfg.ConfigOpts | None = None
    # Unknown sections and keys: reported, never applied (see unknown_keys).
    warnings: list[ConfigWarning] = field(default_factory=list)


class _Locator:
    """Find the file:line that set an option, for error messages and inheritance.

    Indexed once by (normalized group, key), in plan order: a catalog of 200
    agents asks about ten options each.
    """

    def __init__(self, parsed: list[ParsedFile]):
        self._parsed = parsed
        self._index: dict[tuple[str, str], list[tuple[ParsedFile, str, str, int]]] = {}
        for pf in parsed:
            for sec, keys in pf.sections.items():
                group = norm_group(sec)
                for key, values in keys.items():
                    slot = self._index.setdefault((group, key), [])
                    slot.extend((pf, sec, raw, line) for raw, line in values)

    def _occurrences(self, group: str, option: str):
        return self._index.get((group, option), ())

    def find(self, section: str, option: str) -> tuple[str | None, int | None]:
        found = list(self._occurrences(norm_group(section), option))
        if found:  # the last file wins in oslo
            pf, _, _, line = found[-1]
            return str(pf.path), line
        return None, None

    def is_set(self, section: str, option: str) -> bool:
        return any(True for _ in self._occurrences(norm_group(section), option))

    def raw_values(self, section: str, option: str) -> list[str]:
        return [raw for _, _, raw, _ in self._occurrences(norm_group(section), option)]

    def occurrences(self, section: str, option: str):
        """(file, section as written, raw value, line) of every assignment, in plan order."""
        for pf, sec, raw, line in self._occurrences(norm_group(section), option):
            yield str(pf.path), sec, raw, line

    def section(self, section: str) -> tuple[str | None, int | None]:
        group = norm_group(section)
        for pf in self._parsed:
            for sec, line in pf.section_lines.items():
                if norm_group(sec) == group:
                    return str(pf.path), line
        return None, None


def _get(conf: cfg.ConfigOpts, loc: _Locator, group: str, option: str):
    """Read one value, turning oslo's type errors into a located ConfigError.

    The reason never carries the value: oslo's own messages quote it, and a
    value may be a secret.
    """
    try:
        if group == "DEFAULT":
            return conf[option]
        return conf[group][option]
    except (cfg.ConfigFileValueError, ValueError) as exc:
        path, line = loc.find(group, option)
        reason = str(exc).split("is not valid: ", 1)[-1]
        for raw in loc.raw_values(group, option):
            for quoted in (repr(raw), repr(raw.strip()), f'"{raw}"'):
                reason = reason.replace(quoted, "the value")
        raise ConfigError(f"[{group}] {option}: invalid value: {reason}", path, line) from None


def _load_conf(files: list[layers.LayerFile]) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    # oslo.log's options ([DEFAULT] debug, log_file, ...) configure our own logs.
    oslo_log.register_options(conf)
    conf.set_default("log_dir", opts.DEFAULT_LOG_DIR)
    conf.set_default("log_file", "hvsupervisor.log")  # relative: joined to log_dir
    # Our own lines also go to stderr (the journal under systemd) when a log
    # file is written too.
    conf.set_default("use_stderr", True)
    conf.register_opts(opts.default_opts)
    conf.register_opts(opts.supervisor_opts, group="supervisor")
    args: list[str] = []
    for lf in files:
        args += ["--config-file", str(lf.path)]
    try:
        # use_env=False: our own behaviour must follow from files we can show.
        conf(args=args, project="hvsupervisor", default_config_files=[],
             default_config_dirs=[], use_env=False)
    except cfg.ConfigFileParseError as exc:
        # Our own parse (parse_file) reports these first, by line; oslo's message
        # quotes the offending line, which may hold a secret: keep only its head.
        raise ConfigError(exc.msg.split(":", 1)[0], exc.config_file) from None
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from None
    return conf


_ENVIRONMENT = hvtypes.Environment()


def merged_environment(
    loc: _Locator, groups: list[str]
) -> tuple[dict[str, str], dict[str, tuple[str, int]]]:
    """``environment`` merged key by key: each group in turn, each file in plan order.

    Later assignments replace a key, an empty value removes it. So
    ``[agent_defaults] environment = HTTP_PROXY:...`` in one snippet reaches
    every agent, and ``[agent:X] environment = HTTP_PROXY:`` takes it away
    from X again. Returns the environment and, per key, the file:line that set it.
    """
    env: dict[str, str] = {}
    origin: dict[str, tuple[str, int]] = {}
    for group in groups:
        for path, sec, raw, line in loc.occurrences(group, "environment"):
            try:
                pairs = _ENVIRONMENT(raw)
            except ValueError as exc:
                raise ConfigError(f"[{sec}] environment: invalid value: {exc}",
                                  path, line) from None
            for key, value in pairs.items():
                if value == "":
                    env.pop(key, None)
                    origin.pop(key, None)
                else:
                    env[key] = value
                    origin[key] = (path, line)
    return env, origin


_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def service_of(config_files: tuple[str, ...] | list[str]) -> str | None:
    """``{service}``: the first directory of the agent's first config file
    (``neutron/dhcp_agent.ini`` -> ``neutron``), so that [agent_defaults] can say
    ``{state_dir}/{service}`` and ``{service}/{service}.conf.d`` once for all."""
    if config_files and "/" in config_files[0]:
        return config_files[0].split("/", 1)[0]
    return None


def _expand(text: str, values: dict[str, str], loc: _Locator, group: str, option: str,
            allowed: dict[str, str]) -> str:
    """Substitute the placeholders a file path may use ({agent}, and {service} in
    config_dirs); any other is a located error."""
    def repl(m: re.Match[str]) -> str:
        if m.group(1) in allowed:
            return allowed[m.group(1)]
        path, line = loc.find(group, option)
        known = " ".join(f"{{{k}}}" for k in sorted(allowed))
        why = ("(the agent has no config_files with a directory)"
               if m.group(1) == "service" else f"(known here: {known})")
        raise ConfigError(f"[{group}] {option}: unknown placeholder {{{m.group(1)}}} {why}",
                          path, line)

    return _PLACEHOLDER.sub(repl, text)


def _agent(conf: cfg.ConfigOpts, loc: _Locator, name: str) -> AgentSpec:
    """One agent: each option from [agent:NAME] if set there, else [agent_defaults]."""
    section = opts.AGENT_GROUP_PREFIX + name
    conf.register_opts(opts.agent_opts, group=section)

    origins: list[tuple[str, str, int]] = []

    def get(option: str):
        group = section
        if not loc.is_set(section, option) and loc.is_set(opts.AGENT_DEFAULTS, option):
            group = opts.AGENT_DEFAULTS
        path, line = loc.find(group, option)
        if path is not None and line is not None:
            origins.append((option, path, line))
        return _get(conf, loc, group, option), group

    raw_command, cgroup = get("command")
    if not raw_command:
        spath, sline = loc.section(section)
        raise ConfigError(f"[{section}] has no command (nor has [{opts.AGENT_DEFAULTS}])",
                          spath, sline)
    try:
        command = tuple(shlex.split(raw_command))
    except ValueError as exc:
        path, line = loc.find(cgroup, "command")
        raise ConfigError(f"[{cgroup}] command: {exc}", path, line) from None
    env, origin = merged_environment(loc, [opts.AGENT_DEFAULTS, section])
    config_files, fgroup = get("config_files")
    values = {"agent": name}
    if svc := service_of(config_files):
        values["service"] = svc
    config_dirs, dgroup = get("config_dirs")
    spec = AgentSpec(
        name=name,
        command=command,
        config_files=tuple(_expand(f, values, loc, fgroup, "config_files", {"agent": name})
                           for f in config_files),
        config_dirs=tuple(_expand(d, values, loc, dgroup, "config_dirs", values)
                          for d in config_dirs),
        after=tuple(get("after")[0]),
        host_gates=tuple(get("host_gates")[0]),
        ready=get("ready")[0],
        stop_timeout=get("stop_timeout")[0],
        stop_signal=signal.Signals[get("stop_signal")[0]].value,
        stop_drained=get("stop_drained")[0],
        stop_drained_signal=signal.Signals[get("stop_drained_signal")[0]].value,
        stop_margin=get("stop_margin")[0],
        start=get("start")[0],
        graceful_shutdown_default=get("graceful_shutdown_default")[0],
        environment=tuple(sorted(env.items())),
        directories=tuple(get("directories")[0]),
        env_origin=tuple((k, *origin[k]) for k in sorted(origin)),
        user=get("user")[0].strip(),
        group=get("group")[0].strip(),
        supplementary_groups=tuple(get("supplementary_groups")[0]),
        privsep_contexts=tuple(sorted((get("privsep_contexts")[0] or {}).items())),
        root_helper=get("root_helper")[0],
    )
    return dataclasses.replace(spec, origins=tuple(origins))


def _refuse_nul(parsed: list[ParsedFile]) -> None:
    """A NUL byte cannot reach an argv, an environment or a path: refuse it by line."""
    for pf in parsed:
        for sec, keys in pf.sections.items():
            for key, occurrences in keys.items():
                for raw, line in occurrences:
                    if "\0" in raw:
                        raise ConfigError(f"[{sec}] {key}: the value contains a NUL byte",
                                          pf.path, line)


def _agent_names(parsed: list[ParsedFile]) -> list[str]:
    """Every [agent:NAME] section, its NAME checked against opts.AGENT_NAME."""
    names: set[str] = set()
    for pf in parsed:
        for sec, line in pf.section_lines.items():
            if not norm_group(sec).startswith(opts.AGENT_GROUP_PREFIX):
                continue
            name = sec[len(opts.AGENT_GROUP_PREFIX):]
            problem = opts.agent_name_problem(name)
            if problem:
                shown = name if name.isascii() and name.isprintable() else ascii(name)
                raise ConfigError(f"[agent:{shown[:80]}]: invalid agent name: {problem}",
                                  pf.path, line)
            names.add(name)
    return sorted(names)


def _check_graph(agents: dict[str, AgentSpec], enabled: list[str], loc: _Locator) -> None:
    """Every ``after`` names an enabled agent, and there is no cycle (core/deps.py decides)."""
    for name in enabled:
        for dep in agents[name].after:
            if dep not in enabled:
                path, line = loc.find(opts.AGENT_GROUP_PREFIX + name, "after")
                state = "not in enabled_agents" if dep in agents else "not a known agent"
                raise ConfigError(f"{name}: after names {dep!r}, which is {state}", path, line)
    try:
        deps.start_order({name: list(agents[name].after) for name in enabled})
    except deps.DependencyError as exc:
        first = next((n for n in enabled if agents[n].after), enabled[0])
        path, line = loc.find(opts.AGENT_GROUP_PREFIX + first, "after")
        raise ConfigError(str(exc), path, line) from None


def load_settings(
    defaults_dir: Path | None = None,
    override_dir: Path | None = None,
    state_dir: str | None = None,
    log_dir: str | None = None,
    run_dir: str | None = None,
) -> Settings:
    """Resolve, parse and validate the supervisor's config. Raises ConfigError."""
    defaults_dir = Path(defaults_dir or paths.defaults_dir()).absolute()
    override_dir = Path(override_dir or paths.DEFAULT_OVERRIDE_DIR).absolute()
    res = layers.resolve(defaults_dir, override_dir, [paths.CATALOG_NAME], [CONF_D])
    parsed = [parse_file(lf.path) for lf in res.files]
    loc = _Locator(parsed)
    conf = _load_conf(res.files)
    if log_dir:
        conf.set_override("log_dir", log_dir)  # oslo.log's file for ourselves follows it

    _refuse_nul(parsed)
    conf.register_opts(opts.agent_opts, group=opts.AGENT_DEFAULTS)
    agents = {name: _agent(conf, loc, name) for name in _agent_names(parsed)}
    warnings = unknown_keys(parsed, conf)

    enabled = list(dict.fromkeys(_get(conf, loc, "DEFAULT", "enabled_agents")))
    for name in enabled:
        if name not in agents:
            path, line = loc.find("DEFAULT", "enabled_agents")
            raise ConfigError(
                f"enabled_agents names {name!r}, but there is no [agent:{name}] section",
                path, line,
            )
    _check_graph(agents, enabled, loc)

    supervisor = SupervisorSettings(**{
        name: _get(conf, loc, "supervisor", name)
        for name in SupervisorSettings.__dataclass_fields__
    })
    return Settings(
        defaults_dir=defaults_dir,
        override_dir=override_dir,
        state_dir=Path(state_dir or _get(conf, loc, "DEFAULT", "state_dir")).absolute(),
        log_dir=Path(log_dir or _get(conf, loc, "DEFAULT", "log_dir")).absolute(),
        run_dir=Path(run_dir or _get(conf, loc, "DEFAULT", "run_dir")).absolute(),
        enabled_agents=enabled,
        agents=agents,
        supervisor=supervisor,
        files=res.files,
        ignored=res.ignored,
        conf=conf,
        warnings=warnings,
    )
