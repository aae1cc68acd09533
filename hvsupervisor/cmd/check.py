"""``hvsupervisor check``: every gate and preflight once, as a table or JSON.

Config validity comes first: when the config is broken, the host rows that
depend on it (libvirt URI, ovsdb remote and bridges) cannot be derived and
are left out, so the one real cause is the row that fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from hvsupervisor.cmd.common import plans_for_run
from hvsupervisor.cmd.render import print_json, table
from hvsupervisor.config import paths
from hvsupervisor.config.errors import ConfigError
from hvsupervisor.config.explain import effective
from hvsupervisor.config.settings import CONF_D, load_settings
from hvsupervisor.core import stopbudget
from hvsupervisor.host import agent_tools, migration_probe, preflight
from hvsupervisor.host.wiring import gate_settings
from hvsupervisor.privsep.checks import user_rows
from hvsupervisor.systemd import unitfile


def _confd_dirs(defaults: Path, override: Path, rels: set[str]) -> list[str]:
    out = []
    for rel in sorted(rels):
        for base in (defaults, override):
            if (base / rel).is_dir():
                out.append(str(base / rel))
    return out


def stop_budget_row(settings, plans, root: Path = Path("/")) -> preflight.CheckRow:
    """Does the installed unit's TimeoutStopSec= cover the longest stop chain?"""
    budgets = {n: p.stop_timeout for n, p in plans.items()}
    chain = stopbudget.longest_chain({n: p.after for n, p in plans.items()}, budgets)
    dataplane = 2 * stopbudget.DATAPLANE_STOP_TIMEOUT if settings.supervisor.stop_dataplane else 0
    need = stopbudget.required_unit_timeout(chain, dataplane)
    try:
        found = unitfile.timeout_stop(root)
    except ValueError as exc:
        return preflight.CheckRow("stop budget", "fail", f"{unitfile.UNIT}: {exc}")
    if found is None:
        return preflight.CheckRow("stop budget", "ok",
                                  f"{unitfile.UNIT} not installed or no TimeoutStopSec=; "
                                  f"the longest stop chain needs {need:g}s")
    seconds, where = found
    problem = stopbudget.unit_timeout_problem(seconds, chain, budgets, dataplane, where)
    if problem:
        return preflight.CheckRow("stop budget", "fail", problem)
    shown = "infinity" if not seconds else f"{seconds:g}s"
    return preflight.CheckRow(
        "stop budget", "ok",
        f"TimeoutStopSec={shown} ({where}) covers the longest stop chain, "
        f"{' -> '.join(chain.agents)}: {need:g}s")


def _db_sources(plans: dict, agent: str) -> dict[str, str | None] | None:
    """Where ``[database]``/``[api_database] connection`` come from for ``agent``."""
    if agent not in plans:
        return None
    eff = effective(plans[agent])
    out: dict[str, str | None] = {}
    for section in preflight.DB_OPTIONS:
        exp = eff.explain(section, "connection")
        if not exp.value:
            out[section] = None
        else:
            out[section] = f"{exp.file}:{exp.line}" if exp.file else exp.source
    return out


def migration_rows(plans: dict) -> list[preflight.CheckRow]:
    """Can this node receive a live and a cold migration (nova-compute's config)?"""
    plan = plans.get("nova-compute")
    if plan is None or "libvirt" not in plan.host_gates:
        return []
    cfg = migration_probe.nova_config(effective(plan).lookup)
    user = plan.identity.user if plan.identity is not None else "root"
    return [migration_probe.check_live_migration(cfg),
            migration_probe.check_cold_migration(cfg.cold_inbound_addr, user)]


def tools_row(plans: dict) -> preflight.CheckRow:
    """The host programs the enabled agents exec, on each agent's own PATH."""
    agents = [n for n, p in plans.items()
              if n != "nova-compute" or "libvirt" in p.host_gates]  # qemu-img: libvirt only
    path_of = {n: plans[n].env.get("PATH") or os.environ.get("PATH", "") for n in agents}
    return agent_tools.tools_row(agents, path_of)


def collect(args: argparse.Namespace) -> list[preflight.CheckRow]:
    defaults = Path(args.defaults_dir or paths.defaults_dir())
    override = Path(args.override_dir or paths.DEFAULT_OVERRIDE_DIR)
    rows: list[preflight.CheckRow] = []
    uri = ovs = None
    ensure = False
    dirs = [("override_dir", str(override))]
    confd = {CONF_D}
    try:
        settings = load_settings(defaults, override, args.state_dir, args.log_dir, args.run_dir)
        plans = plans_for_run(settings)  # exactly what `run` checks before it starts
        gs = gate_settings(settings, plans)
    except ConfigError as exc:
        rows.append(preflight.CheckRow("config", "fail", str(exc)))
    else:
        rows.append(preflight.CheckRow(
            "config", "ok", f"{len(plans)} agents resolved: {', '.join(plans)}"))
        # A typo'd key does nothing at all: `check` is where an operator looks first.
        rows += [preflight.CheckRow("config key", "fail", str(w)) for w in settings.warnings]
        for name, plan in plans.items():
            exe = plan.argv[0]
            if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
                rows.append(preflight.CheckRow(f"command {name}", "fail",
                                               f"{exe}: not found or not executable"))
        uri = gs.libvirt_uri
        ovs = (gs.ovsdb[0], list(gs.ovsdb[1])) if gs.ovsdb else None
        rows += user_rows(plans, settings.run_dir, settings.log_dir, ovs[0] if ovs else None)
        ensure = gs.ensure_bridges
        dirs += [("state_dir", str(settings.state_dir)), ("log_dir", str(settings.log_dir)),
                 ("run_dir", str(settings.run_dir))]
        for spec in settings.agents.values():
            confd.update(spec.config_dirs)
        rows.append(stop_budget_row(settings, plans))
        rows += preflight.check_nova_db(_db_sources(plans, "nova-api-metadata"),
                                        _db_sources(plans, "nova-compute"))
        rows += migration_rows(plans)
        rows.append(tools_row(plans))
    rows += preflight.run_checks(libvirt_uri=uri, ovsdb=ovs, ensure_bridges=ensure,
                                 dirs=dirs, confd_dirs=_confd_dirs(defaults, override, confd))
    return rows


def check_table(rows: list[preflight.CheckRow]) -> str:
    """One row per check; the status in capitals so a FAIL stands out."""
    return table(["check", "status", "detail"], [(r.name, r.status.upper(), r.detail)
                                                 for r in rows])


def check_json(rows: list[preflight.CheckRow]) -> dict:
    """``{"ok": bool, "checks": [{"name", "status", "detail"}]}``."""
    return {"ok": preflight.all_ok(rows), "checks": [dataclasses.asdict(r) for r in rows]}


def main(args: argparse.Namespace) -> int:
    rows = collect(args)
    if args.format == "json":
        print_json(check_json(rows))
    else:
        print(check_table(rows))
    return 0 if preflight.all_ok(rows) else 1
