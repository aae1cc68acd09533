"""Output for people and scripts: plain-text tables and JSON, used by every verb."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from hvsupervisor.core.agent_status import AgentStatus, NodeStatus


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
    rows = [(a.name, a.state_text, a.pid, "yes" if a.ready else "no", a.health_label,
             _last_probe(a), a.restarts, a.last_exit,
             "; ".join(r for r in (a.reason, a.restart_pending
                                   and f"restart pending: {a.restart_pending}") if r),
             _probe_error(a))
            for a in node.agents]
    release = (f"release: {node.release}" + (f"; restart pending: {node.release_pending}"
                                               if node.release_pending else "") + "\n"
               if node.release else "")
    head = f"{node.status}\ncontrol_plane: {node.control_plane}\n{release}"
    return head + _compute_lines(node) + table(
        ["agent", "state", "pid", "ready", "health", "last probe", "restarts", "last exit",
         "reason", "last probe error"], rows)


def _compute_lines(node: NodeStatus) -> str:
    """"instances: 3 (libvirt)" and "compute service disabled: no" (or why unknown)."""
    if node.instances is None and not node.compute_disabled_reason:
        return ""  # no nova-compute on this node
    count = "unknown" if node.instances is None else str(node.instances)
    why = f" ({node.compute_disabled_reason})" if node.compute_disabled_reason else ""
    return (f"instances: {count} (running guests, from libvirt)\n"
            f"compute service disabled in nova: {node.compute_disabled}{why}\n")


def _last_probe(a: AgentStatus) -> str:
    """"12s ago (3 ms)": when the agent was last probed and how long it took."""
    h = a.health
    if a.health_label == "-" or not h or h.get("last_probe") is None:
        return "-"
    ago = max(0.0, time.time() - float(h["last_probe"]))
    return f"{ago:.0f}s ago ({float(h.get('last_duration') or 0) * 1000:.0f} ms)"


def _probe_error(a: AgentStatus) -> str:
    if a.health_label == "-" or not a.health:
        return "-"
    return str(a.health.get("last_error") or "-")
