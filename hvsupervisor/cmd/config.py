"""``hvsupervisor config plan|explain|validate``: the plan and provenance, masked."""

from __future__ import annotations

import argparse
import sys

from hvsupervisor.cmd.common import load, plans_for_run
from hvsupervisor.cmd.render import print_json, table
from hvsupervisor.config.explain import effective
from hvsupervisor.config.plan import Plan, agent_spec
from hvsupervisor.config.secrets import declared_secrets, mask_argv, mask_env, mask_value
from hvsupervisor.config.settings import Settings
from hvsupervisor.host.facts import plan_for


def masked_plan(plan: Plan) -> dict:
    """The plan as JSON with credentials masked in argv and env."""
    data = plan.to_json()
    data["argv"] = mask_argv(data["argv"])
    data["env"] = mask_env(data["env"], declared_secrets())
    data["env_origin"] = {k: f"{path}:{line}" for k, (path, line) in plan.env_origin.items()}
    return data


def _plan(args: argparse.Namespace, settings: Settings) -> int:
    plan = plan_for(settings, agent_spec(settings, args.agent))
    data = masked_plan(plan)
    if args.format == "json":
        print_json(data)
        return 0
    print(f"agent:  {plan.agent}")
    print(f"digest: {plan.digest}")
    print(f"ready:  {plan.ready}")
    print(f"user:   {data['user']}")
    print("argv:   " + " ".join(data["argv"]))
    if data["env"]:
        print("env:")
        for k, v in sorted(data["env"].items()):
            origin = data["env_origin"].get(k)
            if k in plan.supplied:
                origin = "supplied by the supervisor: privsep broker"
            print(f"  {k}={v}  ({origin})" if origin else f"  {k}={v}")
    print()
    print(table(["#", "layer", "file"],
                [(i + 1, f["layer"], f["path"]) for i, f in enumerate(data["files"])]))
    return 0


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    plan = plan_for(settings, agent_spec(settings, args.agent))
    exp = effective(plan).explain(args.section, args.option)
    exp.value = mask_value(args.option, exp.value, args.section, declared_secrets())
    if args.format == "json":
        print_json(exp.to_json())
        return 0
    where = f"{exp.file}:{exp.line}" if exp.file else exp.source
    rows = [("value", exp.value if exp.value is not None else "(unset)"), ("set by", where)]
    if len(exp.contributors) > 1:
        rows.append(("also in", ", ".join(f"{f}:{n}" for f, n in exp.contributors[:-1])))
    print(f"[{exp.section}] {exp.option} for {exp.agent}")
    print(table(["what", "detail"], rows))
    return 0


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    plans = plans_for_run(settings)  # the very checks `run` makes before it starts
    for warning in settings.warnings:
        print(f"hvsupervisor: warning: {warning}", file=sys.stderr)
    rows = [(name, p.digest[:12], len(p.files), str(p.ready)) for name, p in plans.items()]
    if args.format == "json":
        print_json({"ok": True, "warnings": [str(w) for w in settings.warnings],
                    "agents": {n: masked_plan(p) for n, p in plans.items()}})
    else:
        print(table(["agent", "digest", "files", "ready"], rows))
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    return {"plan": _plan, "explain": _explain, "validate": _validate}[args.config_verb](
        args, settings
    )


def main(args: argparse.Namespace) -> int:
    return run(args, load(args))
