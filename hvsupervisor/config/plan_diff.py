"""What a reload would change, at the option level. Pure.

A running agent's plan is kept by the supervisor as a *snapshot*: argv,
env and every option its files set, with the file:line of the value in
effect. The snapshot is small (one entry per option, whatever the number
of snippets) and carries no secret: a secret option or a URL with
credentials is stored masked, with a fingerprint (sha256 prefix) so that a
change of the secret still shows as a change. ``diff`` compares such a
snapshot with one built from the files on disk now.

Values are the files' own text, not oslo's interpolated values: the point
is what an operator changed. Options oslo declares multi-valued (nova's
``[pci] alias``, ``device_spec``) add up across files, so their value is
every assignment in order; for the others the last file wins.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hvsupervisor.config.explain import MULTI_OPTS, mask_text, mask_value
from hvsupervisor.config.plan import Plan


def _fp(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _norm(section: str) -> str:
    return "DEFAULT" if section.upper() == "DEFAULT" else section.lower()


def snapshot(plan: Plan) -> dict:
    """The plan as comparable, secret-free data (needs the plan's parsed files)."""
    options: dict[str, dict] = {}
    for pf in plan.parsed:
        for section, keys in pf.sections.items():
            group = _norm(section)
            for key, assignments in keys.items():
                name = key.replace("-", "_")
                k = f"{group}/{name}"
                multi = (group, name) in MULTI_OPTS
                values = [v for v, _line in assignments]
                if multi and k in options:
                    values = options[k]["raw"] + values
                elif not multi:
                    values = values[-1:]
                options[k] = {"raw": values, "file": str(pf.path), "line": assignments[-1][1]}
    out = {}
    for k, entry in options.items():
        group, name = k.split("/", 1)
        raw = "\n".join(entry["raw"])
        out[k] = {"section": group, "option": name, "value": mask_value(name, raw),
                  "fp": _fp(raw), "file": entry["file"], "line": entry["line"]}
    return {
        "digest": plan.digest,
        "argv": [mask_text(a) for a in plan.argv],
        "argv_fp": _fp("\0".join(plan.argv)),
        "env": {k: mask_value(k, v) for k, v in sorted(plan.env.items())},
        "env_fp": _fp("\0".join(f"{k}={v}" for k, v in sorted(plan.env.items()))),
        "files": [f.path for f in plan.files],
        "options": out,
    }


@dataclass(frozen=True)
class OptionChange:
    section: str
    option: str
    old: str | None  # None: not set before
    new: str | None  # None: no longer set
    where: str  # file:line of the new value, or of the removed one

    def to_json(self) -> dict:
        return {"section": self.section, "option": self.option, "old": self.old,
                "new": self.new, "where": self.where}


@dataclass(frozen=True)
class AgentDiff:
    agent: str
    action: str  # "restart" | "start" | "stop" | "none"
    reasons: tuple[str, ...]
    options: tuple[OptionChange, ...]

    def to_json(self) -> dict:
        return {"agent": self.agent, "action": self.action, "reasons": list(self.reasons),
                "options": [c.to_json() for c in self.options]}


def option_changes(old: dict, new: dict) -> list[OptionChange]:
    changes = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a is not None and b is not None and a["fp"] == b["fp"]:
            continue
        ref = b or a
        assert ref is not None
        changes.append(OptionChange(ref["section"], ref["option"],
                                    a["value"] if a else None, b["value"] if b else None,
                                    f"{ref['file']}:{ref['line']}"))
    return changes


def diff(agent: str, running: dict | None, disk: dict | None, state: str = "ready") -> AgentDiff:
    """What ``reload`` would do to ``agent`` and why.

    ``running`` is the supervisor's snapshot (None: not running under it),
    ``disk`` the one built now (None: no longer enabled). Mirrors the
    reload rule: a changed digest restarts an agent unless it is stopped.
    """
    if running is None and disk is None:
        return AgentDiff(agent, "none", (), ())
    if running is None:
        return AgentDiff(agent, "start", ("enabled on disk, not running",), ())
    if disk is None:
        return AgentDiff(agent, "stop", ("no longer in enabled_agents",), ())
    if running["digest"] == disk["digest"]:
        return AgentDiff(agent, "none", (), ())
    reasons = []
    old_files, new_files = running["files"], disk["files"]
    for f in new_files:
        if f not in old_files:
            reasons.append(f"file added: {f}")
    for f in old_files:
        if f not in new_files:
            reasons.append(f"file removed: {f}")
    if running["argv_fp"] != disk["argv_fp"] and not reasons:
        reasons.append("command line changed")
    if running["env_fp"] != disk["env_fp"]:
        keys = sorted(k for k in set(running["env"]) | set(disk["env"])
                      if running["env"].get(k) != disk["env"].get(k))
        reasons.append("environment changed" + (f": {', '.join(keys)}" if keys else ""))
    changes = option_changes(running["options"], disk["options"])
    if changes:
        reasons.append(f"{len(changes)} option(s) changed")
    if not reasons:
        reasons.append("file contents changed, no option differs (comments, blank lines "
                       "or order)")
    action = "none (stopped; the new plan applies at its next start)" if state == "stopped" \
        else "restart"
    return AgentDiff(agent, action, tuple(reasons), tuple(changes))
