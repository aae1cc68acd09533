"""What the plan needs to know about the host, as data (pure).

A plan depends on three host facts: whether the journal's stream socket
exists (then the agents' stderr reaches it and oslo.log may write there:
``{use_stderr}``), where a bare command name resolves (the interpreter's bin
dir first, then PATH: ``{bindir}``), and who a catalog user is (uid, gid,
groups, home). The shell looks them up once (host/facts.py ``gather``) and
hands them in, so building a plan asks the host nothing: a unit test builds
every shipped plan from hand-written facts, with passwd, the journal socket
and PATH out of reach (tests/unit/test_plan_purity.py). The plan still reads
its config files: they are its input, not a host fact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT_NAMES = ("", "root")  # [agent:NAME] user values that mean "run as root" (the opt-out)


@dataclass(frozen=True)
class Identity:
    """A resolved, non-root identity: numbers, so the drop needs no NSS later."""

    user: str
    uid: int
    group: str
    gid: int
    groups: tuple[int, ...]  # supplementary, without gid itself
    home: str
    group_names: tuple[str, ...] = ()  # of ``groups``, same order, looked up with them

    def describe(self) -> str:
        """``nova(995):nova(995)+openvswitch(990)``, for logs and plans."""
        names = self.group_names if len(self.group_names) == len(self.groups) else \
            tuple(str(g) for g in self.groups)
        extra = "".join(f"+{n}({g})" for n, g in zip(names, self.groups, strict=True))
        return f"{self.user}({self.uid}):{self.group}({self.gid}){extra}"

    def key(self) -> str:
        """What a reload compares: a changed uid/gid/groups restarts the agent."""
        return f"{self.uid}:{self.gid}:{','.join(map(str, self.groups))}"


# (user, group, supplementary groups) as the catalog names them
UserKey = tuple[str, str, tuple[str, ...]]


def user_key(user: str, group: str, supplementary: tuple[str, ...] | list[str]) -> UserKey:
    return (user, group, tuple(supplementary))


@dataclass(frozen=True)
class HostFacts:
    """The host as the plan sees it. Built by host/facts.py, or by hand in tests."""

    journal: bool
    bindir: Path
    # bare command name -> the path it resolves to; a name not here stays bare
    # (the spawn then resolves it on the child's PATH).
    commands: Mapping[str, str] = field(default_factory=dict)
    # catalog identity -> Identity, or the reason it does not resolve (a missing
    # user or group), which the plan turns into a ConfigError at the catalog line.
    identities: Mapping[UserKey, Identity | str] = field(default_factory=dict)

    def command(self, argv0: str) -> str:
        return self.commands.get(argv0, argv0)

    def identity(self, key: UserKey) -> Identity | str:
        found = self.identities.get(key)
        if found is None:
            return f"user {key[0]!r} was not looked up on this host"
        return found
