"""Output for people and scripts: plain-text tables and JSON, used by every verb."""

from __future__ import annotations

import json
from collections.abc import Sequence

from hvsupervisor.objects.status import NodeStatus


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, widths from the content, one header rule."""
    cells = [[str(c) if c is not None else "-" for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip()
    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in cells]
    return "\n".join(lines)


def print_json(obj: object) -> None:
    """JSON on stdout, indented, keys in the order the caller built them."""
    print(json.dumps(obj, indent=2, sort_keys=False))


def status_table(node: NodeStatus) -> str:
    """``hvsupervisor status``: the STATUS= line, then one row per agent."""
    rows = [(a.name, a.state_text, a.pid, "yes" if a.ready else "no", a.restarts,
             a.last_exit, "; ".join(r for r in (
                 a.reason, a.restart_pending and f"restart pending: {a.restart_pending}") if r))
            for a in node.agents]
    return node.status + "\n" + table(
        ["agent", "state", "pid", "ready", "restarts", "last exit", "reason"], rows)
