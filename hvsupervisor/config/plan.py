"""An agent's plan: pure data saying exactly how it will run.

The plan is argv (the command plus ``--config-file`` for every resolved file,
in order), the environment the plan sets, the files with their layer, and a
digest. The digest (sha256 over argv, env and every file's bytes, in order)
is what a reload compares: equal digest, the agent keeps running; changed,
it is restarted. Anything that can change what the daemon sees must be in
the digest, and nothing else, or reloads restart too much or too little.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hvsupervisor.config import layers, privsep_env
from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.host_facts import HostFacts, Identity
from hvsupervisor.config.parse import ParsedFile, parse_file
from hvsupervisor.config.settings import AgentSpec, ReadyRule, Settings, service_of
from hvsupervisor.core import stopbudget
from hvsupervisor.core.stop_drain import DrainRule

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class PlanFile:
    path: str
    layer: str  # "defaults" | "override"


@dataclass(frozen=True)
class Plan:
    agent: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    files: tuple[PlanFile, ...]
    digest: str
    ready: ReadyRule
    after: tuple[str, ...] = ()
    host_gates: tuple[str, ...] = ()
    stop_timeout: float = 30.0
    # Not in the digest either: how the supervisor stops the daemon is not
    # something the daemon sees while it runs (a changed value applies at
    # the next stop, without a restart).
    stop_signal: int = signal.SIGTERM
    stop_source: str = ""
    # Escalate when the stopping agent logs that it has drained (core/stop_drain.py).
    stop_drain: DrainRule | None = None
    # exec | preload; not in the digest either: forked from a preloader or exec'd,
    # the agent runs the same code with the same argv, env and files.
    start: str = "exec"
    # Made before each start; not in the digest: creating a directory changes
    # nothing the running daemon sees.
    directories: tuple[str, ...] = ()
    parsed: tuple[ParsedFile, ...] = field(default=(), compare=False, repr=False)
    # Who the agent runs as (None: root) and what its privsep broker allows;
    # ``supplied`` are the env keys the supervisor adds (config/privsep_env.py).
    identity: Identity | None = None
    privsep_contexts: tuple[str, ...] = ()
    root_helper: bool = False
    supplied: tuple[str, ...] = ()
    # Which catalog file:line set each env var (merged over [agent_defaults]).
    env_origin: Mapping[str, tuple[str, int]] = field(default_factory=dict, compare=False,
                                                      repr=False)

    def to_json(self) -> dict:
        return {
            "agent": self.agent,
            "argv": list(self.argv),
            "env": dict(self.env),
            "files": [{"path": f.path, "layer": f.layer} for f in self.files],
            "digest": self.digest,
            "user": self.identity.describe() if self.identity else "root",
            "supplied_by_supervisor": list(self.supplied),
        }


class FileCache:
    """Read and parse each file once per resolution pass.

    The four neutron agents share neutron.conf and its conf.d; with a
    thousand snippets, parsing them once instead of four times is most of
    the cost of a no-op reload.
    """

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, ParsedFile]] = {}

    def get(self, path: Path) -> tuple[bytes, ParsedFile]:
        key = str(path)
        hit = self._files.get(key)
        if hit is None:
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError as exc:
                raise ConfigError(f"cannot read: {exc.strerror}", path) from None
            hit = (data, parse_file(path, data))
            self._files[key] = hit
        return hit


def compute_digest(argv: tuple[str, ...], env: Mapping[str, str], blobs: list[bytes]) -> str:
    """sha256 over argv, env and every file's bytes, each length-framed."""
    h = hashlib.sha256()
    for part in (json.dumps(list(argv)), json.dumps(sorted(env.items()))):
        data = part.encode()
        h.update(len(data).to_bytes(8, "big") + data)
    for blob in blobs:
        h.update(len(blob).to_bytes(8, "big") + blob)
    return h.hexdigest()


def _substitute(text: str, values: Mapping[str, str], agent: str, what: str) -> str:
    def repl(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            known = " ".join(f"{{{k}}}" for k in sorted(values))
            raise ConfigError(f"[agent:{agent}] {what}: unknown placeholder {{{key}}} "
                              f"(known: {known})")
        return values[key]

    return _PLACEHOLDER.sub(repl, text)


def build_plan(settings: Settings, spec: AgentSpec, facts: HostFacts,
               cache: FileCache | None = None) -> Plan:
    """Resolve ``spec``'s layered files and build its plan. Raises ConfigError.

    ``facts`` is all it knows of the host (config/host_facts.py: the journal
    socket, where bare commands resolve, who the catalog's users are); it
    reads the config files, which are its input, and nothing else.
    """
    cache = cache or FileCache()
    res = layers.resolve(
        settings.defaults_dir, settings.override_dir, spec.config_files, spec.config_dirs
    )
    blobs: list[bytes] = []
    parsed: list[ParsedFile] = []
    for lf in res.files:
        data, pf = cache.get(lf.path)
        blobs.append(data)
        parsed.append(pf)
    files = tuple(PlanFile(str(lf.path), lf.layer) for lf in res.files)
    bindir = facts.bindir
    values = {
        "state_dir": str(settings.state_dir),
        "log_dir": str(settings.log_dir),
        "run_dir": str(settings.run_dir),
        "agent": spec.name,
        "bindir": str(bindir),
        **({"service": svc} if (svc := service_of(spec.config_files)) else {}),
        "config_files": ";".join(f.path for f in files),
        # Whether agents' stdout/stderr reach the journal: then oslo.log may
        # write there too without doubling lines in the file log.
        "use_stderr": "true" if facts.journal else "false",
    }
    where = {option: (path, line) for option, path, line in spec.origins}

    def sub(text: str, what: str) -> str:
        try:
            return _substitute(text, values, spec.name, what)
        except ConfigError as exc:  # name the catalog line that holds the placeholder
            path, line = where.get(what, (None, None))
            raise ConfigError(exc.reason, path, line) from None

    command = [sub(a, "command") for a in spec.command]
    if os.sep not in command[0]:
        command[0] = facts.command(command[0])
    argv = list(command)
    for f in files:
        argv += ["--config-file", f.path]
    origin = {k: (path, line) for k, path, line in spec.env_origin}
    env = {}
    for k, v in spec.environment:
        try:
            env[k] = _substitute(v, values, spec.name, "environment")
        except ConfigError as exc:
            path, line = origin.get(k, (None, None))  # the catalog line that set k
            raise ConfigError(exc.reason, path, line) from None
    ident = privsep_env.resolve_identity(settings, spec, facts)
    supplied = privsep_env.supplied_env(spec, ident, bindir, settings.run_dir)
    env.update(supplied)
    if ident is not None:  # a changed uid/gid/groups restarts the agent
        blobs = [*blobs, ident.key().encode()]
    ready = ReadyRule.parse(sub(spec.ready, "ready"))
    budget = stopbudget.agent_budget(
        spec.stop_timeout, spec.stop_margin,
        stopbudget.graceful_timeout(((str(pf.path), pf.sections) for pf in parsed), env),
        spec.graceful_shutdown_default)
    return Plan(
        agent=spec.name,
        argv=tuple(argv),
        env=env,
        files=files,
        digest=compute_digest(tuple(argv), env, blobs),
        ready=ready,
        after=spec.after,
        host_gates=spec.host_gates,
        stop_timeout=budget.seconds,
        stop_signal=spec.stop_signal,
        stop_source=budget.source,
        stop_drain=(DrainRule(spec.stop_drained, spec.stop_drained_signal)
                    if spec.stop_drained else None),
        start=spec.start,
        directories=tuple(sub(d, "directories") for d in spec.directories),
        parsed=tuple(parsed),
        identity=ident,
        privsep_contexts=tuple(ctx for ctx, _section in spec.privsep_contexts),
        root_helper=spec.root_helper,
        supplied=tuple(sorted(supplied)),
        env_origin=origin,
    )


def build_plans(settings: Settings, facts: HostFacts) -> dict[str, Plan]:
    """Plans for every enabled agent, all or nothing (a reload is never half-applied)."""
    cache = FileCache()
    return {
        name: build_plan(settings, settings.agents[name], facts, cache)
        for name in settings.enabled_agents
    }


def agent_spec(settings: Settings, name: str) -> AgentSpec:
    """The catalog entry for ``name``, or a ConfigError naming the known agents."""
    try:
        return settings.agents[name]
    except KeyError:
        known = ", ".join(sorted(settings.agents)) or "none"
        raise ConfigError(f"unknown agent {name!r} (known: {known})") from None
