"""Start order from the catalog's `after =` lists, and "may this agent start yet?".

Pure: the catalog gives `after[name] = [names it starts after]`. The order is
topological and, among agents free to go at the same time, alphabetical, so
that the same catalog always gives the same order (logs and tests stay
comparable). Bad input (an unknown name, a cycle) is an operator error, so
DependencyError carries a one-line message naming the agents involved.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence


class DependencyError(ValueError):
    """The `after =` lists name an unknown agent or form a cycle."""


def _check_known(after: Mapping[str, Sequence[str]]) -> None:
    for name in sorted(after):
        for dep in after[name]:
            if dep not in after:
                raise DependencyError(
                    f"agent {name}: after = {dep} names an agent that is not enabled"
                )


def _find_cycle(after: Mapping[str, Sequence[str]], left: set[str]) -> list[str]:
    """A cycle among `left` (agents Kahn's algorithm could not order), as a path a..a."""
    start = min(left)
    path: list[str] = []
    seen: dict[str, int] = {}
    node = start
    # Every node left over has at least one dependency that is also left over,
    # so following the smallest such dependency must loop.
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(d for d in after[node] if d in left)
    return path[seen[node]:] + [node]


def start_order(after: Mapping[str, Sequence[str]]) -> list[str]:
    """Every agent after the ones it names, ties broken by name."""
    _check_known(after)
    waiting_on = {name: set(deps) for name, deps in after.items()}
    dependents: dict[str, list[str]] = {name: [] for name in after}
    for name, deps in waiting_on.items():
        for dep in deps:
            dependents[dep].append(name)
    free = [name for name, deps in waiting_on.items() if not deps]
    heapq.heapify(free)
    order: list[str] = []
    while free:
        name = heapq.heappop(free)
        order.append(name)
        for other in dependents[name]:
            waiting_on[other].discard(name)
            if not waiting_on[other]:
                heapq.heappush(free, other)
    if len(order) < len(after):
        cycle = _find_cycle(after, set(after) - set(order))
        # The path follows "after" edges (a waits for b), so print it that way.
        raise DependencyError("dependency cycle in after =: " + " -> ".join(cycle))
    return order


def stop_order(after: Mapping[str, Sequence[str]]) -> list[str]:
    """Dependents stop before what they depend on."""
    return list(reversed(start_order(after)))


def deps_ready(
    name: str, after: Mapping[str, Sequence[str]], ready_names: Collection[str]
) -> tuple[bool, str]:
    """(True, "") when every agent `name` starts after is ready, else (False, why)."""
    missing = [dep for dep in after.get(name, ()) if dep not in ready_names]
    if missing:
        return False, "waiting for " + ", ".join(missing)
    return True, ""
