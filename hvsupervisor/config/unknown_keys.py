"""Sections and keys of the supervisor's own files that nothing reads.

A typo such as ``stop_timout = 60`` would otherwise do nothing, without a
word. Reported as systemd reports unknown keys in unit files ("Unknown key
name 'x' in section 'y', ignoring"), with file:line: a warning from
``config validate`` and at start, a failing ``check`` row; never a reason to
refuse the config. The known names come from what is registered (config/opts.py
and oslo.log's options, which configure our own log), so they cannot drift.
The agents' own nova/neutron files are not ours to judge.
"""

from __future__ import annotations

from oslo_config import cfg

from hvsupervisor.config import opts
from hvsupervisor.config.errors import ConfigWarning
from hvsupervisor.config.parse import ParsedFile, norm_group


def _known_keys(conf: cfg.ConfigOpts) -> dict[str, set[str]]:
    """Option names per section kind, from what is registered (one source: config/opts.py
    plus oslo.log's options, which configure our own log)."""
    default = set()
    for name in conf:
        if not isinstance(getattr(conf, name, None), cfg.ConfigOpts.GroupAttr):
            default.add(name)
    return {
        "DEFAULT": default,
        "supervisor": {o.dest for o in opts.supervisor_opts},
        "agent": {o.dest for o in opts.agent_opts},
    }


def unknown_keys(parsed: list[ParsedFile], conf: cfg.ConfigOpts) -> list[ConfigWarning]:
    """Sections and keys of our own files that nothing reads, as systemd reports them."""
    known = _known_keys(conf)
    out: list[ConfigWarning] = []
    for pf in parsed:
        for sec, keys in pf.sections.items():
            group = norm_group(sec)
            if group in ("DEFAULT", "supervisor"):
                names = known[group]
            elif group == opts.AGENT_DEFAULTS or group.startswith(opts.AGENT_GROUP_PREFIX):
                names = known["agent"]
            else:
                out.append(ConfigWarning(f"Unknown section '{sec}', ignoring", pf.path,
                                         pf.section_lines.get(sec)))
                continue
            for key, occurrences in keys.items():
                if key not in names:
                    for _, line in occurrences:
                        out.append(ConfigWarning(
                            f"Unknown key name '{key}' in section '{sec}', ignoring",
                            pf.path, line))
    out.sort(key=lambda w: (w.path or "", w.line or 0))
    return out
