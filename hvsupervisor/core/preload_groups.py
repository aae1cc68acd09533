"""Which agents share a warm preloader, what it imports, and when it must go (pure).

A preloader (hvsupervisor/agents/preloader.py, driven by process/preload.py)
imports an agent's console-script module once and forks one child per agent
start. Agents may share one only when the fork changes nothing they would
have had from exec: the same interpreter and the same identity (uid, gid and
supplementary groups: an unprivileged child cannot drop a group it was
forked with). So the key is the service's console scripts' interpreter plus
the identity; the neutron agents with group openvswitch share one. The
metadata agent (no openvswitch) would be alone in its group, and a group of
one gets no preloader (``groups`` says why).

A preloader holds the code it imported when it started. Any code change
after that start (process/codechange.py's files: the console script and its
distribution's RECORD) makes it stale: it is replaced before the next fork,
so no agent is forked from old code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_ENTRY = re.compile(r"^from ([A-Za-z_][\w.]*) import ([A-Za-z_]\w*)\s*$", re.M)
_SHEBANG = re.compile(r"^#!\s*(\S+)")


@dataclass(frozen=True)
class Entry:
    """What a console script runs: ``from MODULE import FUNC``; ``sys.exit(FUNC())``."""

    interpreter: str
    module: str
    func: str

    def text(self) -> str:
        return f"{self.module}:{self.func}"


def entry_point(script: str) -> Entry | None:
    """The entry point of a pip/setuptools console script, or None if it is not one.

    Such a script is ``#!PYTHON``, ``import re, sys`` and ``from MOD import FUNC``
    then ``sys.exit(FUNC())``; anything else (a shell wrapper, ``python -m``)
    is not preloadable and runs by exec.
    """
    shebang = _SHEBANG.match(script)
    m = _ENTRY.search(script)
    if not shebang or not m or "sys.exit(" + m.group(2) + "())" not in script:
        return None
    return Entry(shebang.group(1), m.group(1), m.group(2))


@dataclass(frozen=True)
class Group:
    """One preloader: the interpreter, the identity, and the modules it imports."""

    key: str
    interpreter: str
    identity: str
    modules: tuple[str, ...]


MIN_MEMBERS = 2


def group_key(interpreter: str, identity: str) -> str:
    return f"{identity}@{interpreter}"


def groups(agents: Iterable[tuple[str, Entry, str]]) -> dict[str, Group]:
    """(agent, entry, identity) of every agent with ``start = preload`` -> its group.

    A group of one agent gets no preloader (the agent is left out: exec): the
    preloader would hold a second copy of what only that agent uses, measured
    70-120 MiB Pss for the neutron metadata agent's (benchmarks/agent_start.py),
    for a faster restart of an agent nothing waits for.

    Returns agent name -> Group; agents of one key share the Group object's
    modules (sorted, each once) so that one preloader imports them all.
    """
    rows = list(agents)
    modules: dict[str, set[str]] = {}
    for _name, entry, ident in rows:
        modules.setdefault(group_key(entry.interpreter, ident), set()).add(entry.module)
    members: dict[str, int] = {}
    for _name, entry, ident in rows:
        key = group_key(entry.interpreter, ident)
        members[key] = members.get(key, 0) + 1
    built = {k: Group(k, k.split("@", 1)[1], k.split("@", 1)[0], tuple(sorted(v)))
             for k, v in modules.items() if members[k] >= MIN_MEMBERS}
    return {name: built[key] for name, entry, ident in rows
            if (key := group_key(entry.interpreter, ident)) in built}


def stale(started: float, code_mtimes: Iterable[float], slack: float = 1.0) -> bool:
    """True when any code file changed after the preloader started (1 s clock slack,
    as process/codechange.py allows)."""
    return any(m > started + slack for m in code_mtimes)
