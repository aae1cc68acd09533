"""The supervisor's own settings and the agent catalog, read with oslo.config.

``hvsupervisor.conf`` and ``hvsupervisor.conf.d/*.conf`` are layered by the
same rules as the agents' files (config/layers.py) and read by a private
``cfg.ConfigOpts``. Agent sections (``[agent:NAME]``) are discovered from the
parsed files, then their options registered, so adding an agent is data,
not code.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from oslo_config import cfg
from oslo_log import log as oslo_log

from hvsupervisor import deps, opts, paths
from hvsupervisor.config import layers
from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.parse import ParsedFile, parse_file

CONF_D = "hvsupervisor.conf.d"


@dataclass(frozen=True)
class ReadyRule:
    """How an agent's readiness is decided (DESIGN.md section 2)."""

    kind: str  # notify | alive | tcp | unix
    seconds: float | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    bridge: str | None = None

    @classmethod
    def parse(cls, text: str) -> ReadyRule:
        """Parse ``notify | alive:SECONDS | tcp:HOST:PORT | unix:PATH | ovsdb-bridge:NAME``."""
        kind, _, rest = text.strip().partition(":")
        if kind == "notify" and not rest:
            return cls("notify")
        if kind == "alive":
            seconds = float(rest)
            if seconds < 0:
                raise ValueError("alive seconds must be >= 0")
            return cls("alive", seconds=seconds)
        if kind == "tcp":
            host, _, port = rest.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("expected tcp:HOST:PORT")
            return cls("tcp", host=host.strip("[]"), port=int(port))
        if kind == "unix" and rest:
            return cls("unix", path=rest)
        if kind == "ovsdb-bridge" and rest:
            return cls("ovsdb-bridge", bridge=rest)
        raise ValueError("expected notify, alive:SECONDS, tcp:HOST:PORT, unix:PATH or "
                         "ovsdb-bridge:NAME")

    def __str__(self) -> str:
        if self.kind == "alive":
            return f"alive:{self.seconds:g}"
        if self.kind == "tcp":
            return f"tcp:{self.host}:{self.port}"
        if self.kind == "unix":
            return f"unix:{self.path}"
        if self.kind == "ovsdb-bridge":
            return f"ovsdb-bridge:{self.bridge}"
        return self.kind


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
    stop_timeout: float
    environment: tuple[tuple[str, str], ...]
    directories: tuple[str, ...] = ()


@dataclass(frozen=True)
class SupervisorSettings:
    ready_timeout: float
    reload_timeout: float
    stop_dataplane: bool
    ensure_bridges: bool
    restart_sec: float
    restart_max_delay: float
    restart_steps: int
    restart_jitter: float
    stable_period: float
    flap_max: int
    flap_window: float
    journal_socket: str


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


class _Locator:
    """Find the file:line that set an option, for error messages."""

    def __init__(self, parsed: list[ParsedFile]):
        self._parsed = parsed

    def find(self, section: str, option: str) -> tuple[str | None, int | None]:
        for pf in reversed(self._parsed):  # the last file wins in oslo
            line = pf.line_of(section, option)
            if line is not None:
                return str(pf.path), line
        return None, None

    def section(self, section: str) -> tuple[str | None, int | None]:
        for pf in self._parsed:
            if section in pf.sections:
                return str(pf.path), None
        return None, None


def _get(conf: cfg.ConfigOpts, loc: _Locator, group: str, option: str):
    """Read one value, turning oslo's type errors into a located ConfigError."""
    try:
        if group == "DEFAULT":
            return conf[option]
        return conf[group][option]
    except (cfg.ConfigFileValueError, ValueError) as exc:
        path, line = loc.find(group, option)
        reason = str(exc).split("is not valid: ", 1)[-1]
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
        raise ConfigError(exc.msg, exc.config_file) from None
    except cfg.Error as exc:
        raise ConfigError(str(exc)) from None
    return conf


def _agent(conf: cfg.ConfigOpts, loc: _Locator, section: str) -> AgentSpec:
    name = section[len(opts.AGENT_GROUP_PREFIX):]
    conf.register_opts(opts.agent_opts, group=section)
    spath, _ = loc.section(section)
    raw_command = _get(conf, loc, section, "command")
    if not raw_command:
        raise ConfigError(f"[{section}] has no command", spath)
    try:
        command = tuple(shlex.split(raw_command))
    except ValueError as exc:
        path, line = loc.find(section, "command")
        raise ConfigError(f"[{section}] command: {exc}", path, line) from None
    ready = _get(conf, loc, section, "ready")
    try:
        ReadyRule.parse(ready)
    except ValueError as exc:
        path, line = loc.find(section, "ready")
        raise ConfigError(f"[{section}] ready = {ready!r}: {exc}", path, line) from None
    env = _get(conf, loc, section, "environment") or {}
    return AgentSpec(
        name=name,
        command=command,
        config_files=tuple(_get(conf, loc, section, "config_files")),
        config_dirs=tuple(_get(conf, loc, section, "config_dirs")),
        after=tuple(_get(conf, loc, section, "after")),
        host_gates=tuple(_get(conf, loc, section, "host_gates")),
        ready=ready,
        stop_timeout=_get(conf, loc, section, "stop_timeout"),
        environment=tuple(sorted(env.items())),
        directories=tuple(_get(conf, loc, section, "directories")),
    )


def _check_graph(agents: dict[str, AgentSpec], enabled: list[str], loc: _Locator) -> None:
    """Every ``after`` names an enabled agent, and there is no cycle (deps.py decides)."""
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

    sections = sorted(
        {s for pf in parsed for s in pf.sections if s.startswith(opts.AGENT_GROUP_PREFIX)}
    )
    agents = {}
    for section in sections:
        spec = _agent(conf, loc, section)
        agents[spec.name] = spec

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
    )
