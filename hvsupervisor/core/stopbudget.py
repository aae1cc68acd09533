"""How long stops may take: per agent, per chain, and for the whole unit. Pure.

Why here and not in the catalog alone: nova-compute's graceful shutdown
waits for in-flight operations up to its own ``graceful_shutdown_timeout``
(doc/upstream-behaviour.md). A fixed ``stop_timeout`` in the catalog would
SIGKILL it mid-operation as soon as an operator raises that option in a
nova snippet. So an agent without an explicit ``stop_timeout`` gets its
effective ``graceful_shutdown_timeout`` (read from its plan's files, last
file wins, as oslo.config does) plus a margin.

The unit's ``TimeoutStopSec=`` must then cover the longest *chain* of stops:
the supervisor stops agents in reverse dependency order (an agent waits
for the agents that depend on it), agents on independent branches in
parallel, then the data-plane helpers it was asked to stop. If systemd's
timer runs out first, it SIGKILLs the whole unit mid-drain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# oslo.service's default for [DEFAULT] graceful_shutdown_timeout (oslo_service/_options.py).
OSLO_GRACEFUL_DEFAULT = 60.0
GRACEFUL_OPTION = "graceful_shutdown_timeout"
GRACEFUL_ENV = "OS_DEFAULT__GRACEFUL_SHUTDOWN_TIMEOUT"
# Each of the two rounds (SIGTERM, then SIGKILL) of stopping the data-plane helpers.
DATAPLANE_STOP_TIMEOUT = 5.0
# The supervisor's own exit after the last agent (gates closed, logs flushed).
SUPERVISOR_EXIT = 5.0


@dataclass(frozen=True)
class StopBudget:
    """An agent's stop timeout and the words that say where it came from."""

    seconds: float
    source: str


def graceful_timeout(
    files: Iterable[tuple[str, Mapping[str, Mapping[str, list[tuple[str, int]]]]]],
    env: Mapping[str, str],
) -> tuple[float, str] | None:
    """The effective ``[DEFAULT] graceful_shutdown_timeout`` and where it was set.

    ``files`` are (path, sections) in the order the agent reads them; the
    last assignment wins, and the environment (oslo's env source) beats
    every file. None when nothing sets it. A value that is not a number is
    left to the daemon to reject (None here: nothing to plan with).
    """
    if GRACEFUL_ENV in env:
        try:
            return float(env[GRACEFUL_ENV]), f"environment {GRACEFUL_ENV}"
        except ValueError:
            return None
    found: tuple[float, str] | None = None
    for path, sections in files:
        values = sections.get("DEFAULT", {}).get(GRACEFUL_OPTION)
        if values:
            text, line = values[-1]
            try:
                found = float(text), f"{path}:{line}"
            except ValueError:
                found = None
    return found


def agent_budget(
    explicit: float | None,
    margin: float,
    graceful: tuple[float, str] | None,
    default: float = OSLO_GRACEFUL_DEFAULT,
) -> StopBudget:
    """``stop_timeout`` if the catalog sets it, else graceful_shutdown_timeout + margin.

    ``default`` is the daemon's built-in value when no file sets the option.
    """
    if explicit is not None:
        return StopBudget(explicit, "stop_timeout in the catalog")
    if graceful is None:
        seconds, where = default, "the daemon's default"
    else:
        seconds, where = graceful
    # graceful_shutdown_timeout = 0 means "wait for ever" in oslo.service: no
    # finite budget honours that; the margin alone still lets the daemon try.
    return StopBudget(seconds + margin,
                      f"graceful_shutdown_timeout {seconds:g} ({where}) + margin {margin:g}")


@dataclass(frozen=True)
class Chain:
    seconds: float
    agents: tuple[str, ...]  # in stop order

    def arithmetic(self, budgets: Mapping[str, float]) -> str:
        return " + ".join(f"{budgets[a]:g} ({a})" for a in self.agents)


def longest_chain(after: Mapping[str, Iterable[str]], budgets: Mapping[str, float]) -> Chain:
    """The slowest sequence of stops when every agent uses its whole budget.

    An agent is stopped once every agent that lists it in ``after`` has
    exited, so the worst case for agent X is its dependents' worst chain,
    then X's own budget.
    """
    after = {n: [d for d in deps if d in budgets] for n, deps in after.items() if n in budgets}
    dependents: dict[str, list[str]] = {n: [] for n in budgets}
    for name, deps in after.items():
        for dep in deps:
            dependents[dep].append(name)
    memo: dict[str, Chain] = {}

    def chain(name: str) -> Chain:
        if name not in memo:
            before = max((chain(d) for d in dependents[name]),
                         key=lambda c: c.seconds, default=Chain(0.0, ()))
            memo[name] = Chain(before.seconds + budgets[name], before.agents + (name,))
        return memo[name]

    return max((chain(n) for n in budgets), key=lambda c: c.seconds, default=Chain(0.0, ()))


def required_unit_timeout(chain: Chain, dataplane: float) -> float:
    """Seconds the unit's TimeoutStopSec= must at least be."""
    return chain.seconds + dataplane + SUPERVISOR_EXIT


def unit_timeout_problem(
    unit_seconds: float | None,
    chain: Chain,
    budgets: Mapping[str, float],
    dataplane: float,
    where: str,
) -> str | None:
    """None when the unit's stop timeout covers the longest chain; else the arithmetic.

    ``unit_seconds`` None or 0 (infinity in systemd) always covers it.
    """
    need = required_unit_timeout(chain, dataplane)
    if not unit_seconds or unit_seconds >= need:
        return None
    parts = [chain.arithmetic(budgets)]
    if dataplane:
        parts.append(f"{dataplane:g} (data-plane helpers)")
    parts.append(f"{SUPERVISOR_EXIT:g} (supervisor exit)")
    return (f"TimeoutStopSec={unit_seconds:g}s ({where}) is shorter than the longest stop chain: "
            f"{' + '.join(parts)} = {need:g}s; systemd would SIGKILL every agent mid-drain. "
            f"Raise TimeoutStopSec= to at least {need:g}s in a drop-in, or lower stop_timeout.")
