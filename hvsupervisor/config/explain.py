"""Provenance: the effective value of an agent option, and where it came from.

The value is computed by oslo.config itself, over the plan's exact file list,
so the answer matches what the daemon will see: last parsed file wins,
``$var`` interpolation, quoting. The agents' option schemas are not known
here (nova and neutron need not be installed), so every key found in the
files is registered as a string option; the few options known to be
multi-valued (they add up across files instead of overriding) are
registered as such.

Which file:line set the value comes from our own line-recording parse
(config/parse.py), in plan order: the last assignment in the last file that
has the key is the one oslo uses. Not from oslo's ``get_location()``: in
oslo.config 10.7 it names the *last parsed file* for every file value, not
the file that set it (doc/upstream-behaviour.md section 9; tests/unit/test_explain.py
shows the library's answer beside ours).

Precedence above files, as oslo applies it: the command line, then
``OS_<GROUP>__<OPT>`` environment variables (only those the plan sets: the
supervisor scrubs the rest from a child's environment).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oslo_config import cfg

from hvsupervisor.config.parse import norm_group
from hvsupervisor.config.plan import Plan
from hvsupervisor.config.secrets import mask_text, mask_value  # noqa: F401 (re-exported)

# Options that oslo declares multi=True in the agents we ship: their values
# accumulate across files (nova/conf/pci.py). Explain lists every contributor.
MULTI_OPTS = {("pci", "device_spec"), ("pci", "alias"), ("pci", "passthrough_whitelist")}

_RESERVED = {"config_file", "config_dir", "config_source"}


@dataclass
class Explanation:
    agent: str
    section: str
    option: str
    value: str | None
    file: str | None
    line: int | None
    source: str  # "file" | "environment" | "command line" | "unset"
    contributors: list[tuple[str, int]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "agent": self.agent,
            "section": self.section,
            "option": self.option,
            "value": self.value,
            "file": self.file,
            "line": self.line,
            "source": self.source,
            "contributors": [{"file": f, "line": n} for f, n in self.contributors],
        }


class Effective:
    """oslo.config's view of one plan's files: ``lookup(section, option)``."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.conf = cfg.ConfigOpts()
        known: dict[str, set[str]] = {}
        for pf in plan.parsed:
            for section, keys in pf.sections.items():
                known.setdefault(norm_group(section), set()).update(keys)
        for group, keys in known.items():
            for key in sorted(keys):
                name = key.replace("-", "_")
                if group == "DEFAULT" and name in _RESERVED:
                    continue
                multi = (group, name) in MULTI_OPTS
                opt = cfg.MultiStrOpt(name) if multi else cfg.StrOpt(name)
                self.conf.register_opt(opt, group=None if group == "DEFAULT" else group)
        args: list[str] = []
        for f in plan.files:
            args += ["--config-file", f.path]
        self.conf(args=args, default_config_files=[], default_config_dirs=[], use_env=False)

    def _cli_value(self, group: str, option: str) -> str | None:
        if group != "DEFAULT":
            flags = {f"--{group}-{option}".replace("_", "-")}
        else:
            flags = {f"--{option}", f"--{option.replace('_', '-')}"}
        value = None
        argv = list(self.plan.argv)
        for i, arg in enumerate(argv):
            name, eq, rest = arg.partition("=")
            if name in flags:
                value = rest if eq else (argv[i + 1] if i + 1 < len(argv) else "")
        return value

    def _env_value(self, group: str, option: str) -> str | None:
        return self.plan.env.get(f"OS_{group.upper()}__{option.upper()}")

    def explain(self, section: str, option: str) -> Explanation:
        """Effective value (unmasked) and provenance of ``[section] option``."""
        group = norm_group(section)
        name = option.replace("-", "_")
        contributors = []
        for pf in self.plan.parsed:
            for sec, keys in pf.sections.items():
                if norm_group(sec) == group and (name in keys or option in keys):
                    for _value, line in keys.get(name, keys.get(option, [])):
                        contributors.append((str(pf.path), line))
        cli = self._cli_value(group, name)
        if cli is not None:
            return Explanation(self.plan.agent, section, option, cli, None, None,
                               "command line", contributors)
        env = self._env_value(group, name)
        if env is not None:
            # The catalog line that put OS_<GROUP>__<OPT> into the plan, or
            # the supervisor itself (privsep broker: config/privsep_env.py).
            key = f"OS_{group.upper()}__{name.upper()}"
            where = self.plan.env_origin.get(key)
            path, line = where if where else (None, None)
            source = (f"environment {key}, supplied by the supervisor (privsep broker)"
                      if key in self.plan.supplied else "environment")
            return Explanation(self.plan.agent, section, option, env, path, line,
                               source, contributors)
        if not contributors:
            return Explanation(self.plan.agent, section, option, None, None, None, "unset")
        grp = None if group == "DEFAULT" else group
        try:
            value = self.conf[name] if grp is None else self.conf[grp][name]
        except (cfg.TemplateSubstitutionError, cfg.NoSuchOptError, ValueError):
            value = None
        if isinstance(value, list):
            value = "\n".join(value)
        path, line = contributors[-1]  # plan order: the last assignment wins in oslo
        if value is None:  # interpolation failed: show what the file says
            value = _raw_last(self.plan, group, name)
        return Explanation(self.plan.agent, section, option, value, path, line, "file",
                           contributors)

    def options(self, section: str) -> list[str]:
        """Every option of ``section`` that a file of the plan or its
        ``OS_<GROUP>__<OPT>`` environment sets, sorted."""
        group = norm_group(section)
        names = {key.replace("-", "_") for pf in self.plan.parsed
                 for sec, keys in pf.sections.items() if norm_group(sec) == group
                 for key in keys}
        prefix = f"OS_{group.upper()}__"
        names |= {k[len(prefix):].lower() for k in self.plan.env if k.startswith(prefix)}
        return sorted(names)

    def lookup(self, section: str, option: str) -> str | None:
        """The effective value only (for host gates deriving URIs and bridges)."""
        return self.explain(section, option).value


def _raw_last(plan: Plan, group: str, name: str) -> str | None:
    value = None
    for pf in plan.parsed:
        for sec, keys in pf.sections.items():
            if norm_group(sec) == group and name in keys:
                value = keys[name][-1][0]
    return value


def effective(plan: Plan) -> Effective:
    return Effective(plan)
