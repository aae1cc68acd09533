"""What running an agent as a user adds to its plan (pure but for NSS lookups).

When ``[agent:NAME] user`` names a non-root user, the plan gets:

* the resolved identity (numbers; a missing user or group is a ConfigError
  naming it and the catalog line that asked for it: ``run`` exits 78);
* ``OS_<SECTION>__HELPER_COMMAND`` for every privsep section the agent uses,
  pointing at the broker client with the agent's own broker socket;
* ``OS_AGENT__ROOT_HELPER`` likewise, for neutron agents with ``root_helper``.

These are oslo.config environment values: above every file, so an operator
file cannot point an unprivileged agent at sudo by mistake, and ``config
plan`` / ``config explain`` list them as supplied by the supervisor (the
plan's ``supplied`` keys). When the agent runs as root nothing is added.
"""

from __future__ import annotations

from pathlib import Path

from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.parse import parse_file
from hvsupervisor.privsep import identity as identity_mod
from hvsupervisor.privsep.grants import Grant

CLIENT = "hvsupervisor-privsep"
SOCK_DIR = "privsep"  # under run_dir
SUPPLIED_BY = "supervisor (privsep broker)"


def broker_socket(run_dir: Path, agent: str) -> Path:
    return Path(run_dir) / SOCK_DIR / f"{agent}.sock"


def _where(catalog_files, section: str, option: str) -> tuple[str | None, int | None]:
    for lf in reversed(list(catalog_files)):  # the last file wins in oslo
        line = parse_file(lf.path).line_of(section, option)
        if line is not None:
            return str(lf.path), line
    return None, None


def resolve_identity(settings, spec) -> identity_mod.Identity | None:
    """The agent's Identity, or None for root; ConfigError (file:line) if unknown."""
    try:
        return identity_mod.resolve(spec.user, spec.group, spec.supplementary_groups)
    except identity_mod.IdentityError as exc:
        section = f"agent:{spec.name}"
        path, line = _where(settings.files, section, "user")
        raise ConfigError(f"[{section}] {exc}", path, line) from None


def client_command(bindir: Path, run_dir: Path, agent: str) -> str:
    return f"{Path(bindir) / CLIENT} --broker {broker_socket(run_dir, agent)}"


def supplied_env(spec, ident: identity_mod.Identity | None, bindir: Path,
                 run_dir: Path) -> dict[str, str]:
    """The oslo.config environment the supervisor adds for a user-run agent."""
    if ident is None:
        return {}
    client = client_command(bindir, run_dir, spec.name)
    env = {f"OS_{section.upper()}__HELPER_COMMAND": f"{client} privsep-helper"
           for _context, section in spec.privsep_contexts}
    if spec.root_helper:
        env["OS_AGENT__ROOT_HELPER"] = f"{client} root-helper"
    return env


def grant(plan) -> Grant | None:
    """What the broker allows this plan's agent; None when it runs as root."""
    ident = plan.identity
    if ident is None:
        return None
    config_args: list[str] = []
    for f in plan.files:
        config_args += ["--config-file", f.path]
    return Grant(agent=plan.agent, uid=ident.uid, gid=ident.gid,
                 contexts=frozenset(plan.privsep_contexts), root_helper=plan.root_helper,
                 config_args=tuple(config_args), env=dict(plan.env))
