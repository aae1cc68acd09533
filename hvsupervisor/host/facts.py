"""Look up, once, the host facts every plan needs (config/host_facts.py).

The only place that asks the host on the plan's behalf: the journal socket's
stat, the bare commands' lookup (the interpreter's bin dir first, then PATH)
and the passwd/group entries of every user the catalog names. The plan then
builds from data (a reload, ``config plan``, ``check`` and ``run`` all gather
first and build after), and a missing user is still reported by the plan at
the catalog's file:line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hvsupervisor.config import paths
from hvsupervisor.config.host_facts import ROOT_NAMES, HostFacts, Identity, user_key
from hvsupervisor.privsep import identity as identity_mod
from hvsupervisor.systemd.journal import journal_available


def resolve_command(argv0: str, bindir: Path) -> str:
    """A bare name is looked up in the interpreter's bin dir first, then PATH."""
    candidate = bindir / argv0
    if os.access(candidate, os.X_OK) and candidate.is_file():
        return str(candidate)
    return shutil.which(argv0) or argv0


def gather(settings) -> HostFacts:
    """The facts for every agent of ``settings``' catalog, enabled or not
    (``config plan AGENT`` may ask for a disabled one)."""
    bindir = paths.bindir()
    commands: dict[str, str] = {}
    identities: dict = {}
    for spec in settings.agents.values():
        argv0 = spec.command[0] if spec.command else ""
        # A placeholder ({bindir}/x) resolves in the plan; a path needs no lookup.
        if argv0 and "{" not in argv0 and os.sep not in argv0 and argv0 not in commands:
            commands[argv0] = resolve_command(argv0, bindir)
        if spec.user not in ROOT_NAMES:
            key = user_key(spec.user, spec.group, spec.supplementary_groups)
            if key not in identities:
                identities[key] = _identity(*key)
    return HostFacts(journal=journal_available(settings.supervisor.journal_socket),
                     bindir=bindir, commands=commands, identities=identities)


def _identity(user: str, group: str, supplementary: tuple[str, ...]) -> Identity | str:
    try:
        ident = identity_mod.resolve(user, group, supplementary)
    except identity_mod.IdentityError as exc:
        return str(exc)
    assert ident is not None  # root names are filtered by the caller
    return ident


def plans_for(settings) -> dict:
    """Gather this host's facts, then build every enabled agent's plan (the shell's
    usual call: ``run``, reload, ``check``, ``config diff``)."""
    from hvsupervisor.config.plan import build_plans

    return build_plans(settings, gather(settings))


def plan_for(settings, spec):
    """Gather this host's facts, then build one agent's plan (``config plan AGENT``)."""
    from hvsupervisor.config.plan import build_plan

    return build_plan(settings, spec, gather(settings))
