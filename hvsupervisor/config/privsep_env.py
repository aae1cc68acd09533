"""What running an agent as a user adds to its plan (pure: the identity comes from HostFacts).

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
from hvsupervisor.config.host_facts import ROOT_NAMES, HostFacts, Identity, user_key
from hvsupervisor.config.parse import parse_file

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


def resolve_identity(settings, spec, facts: HostFacts) -> Identity | None:
    """The agent's Identity from the host facts, or None for root; ConfigError
    (the catalog's file:line of ``user``) when the host has no such user or group."""
    if spec.user in ROOT_NAMES:
        # The opt-out: group and supplementary_groups (shipped for the day a
        # site sets user) mean nothing for root.
        return None
    found = facts.identity(user_key(spec.user, spec.group, spec.supplementary_groups))
    if isinstance(found, str):
        section = f"agent:{spec.name}"
        path, line = _where(settings.files, section, "user")
        raise ConfigError(f"[{section}] {found}", path, line)
    return found


def client_command(bindir: Path, run_dir: Path, agent: str) -> str:
    return f"{Path(bindir) / CLIENT} --broker {broker_socket(run_dir, agent)}"


def supplied_env(spec, ident: Identity | None, bindir: Path,
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
