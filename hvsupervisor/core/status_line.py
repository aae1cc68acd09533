"""One line for systemd's STATUS=: who is ready, and who waits for what.

Pure: agent statuses (agent_status.py) in, a string out. The line must be ASCII (sdnotify encodes
latin-1, and a log line may hold anything), one line (STATUS= ends at a
newline) and short (`systemctl status` shows one line; ~200 chars). The most
urgent problems come first (failed, then waiting, backoff, starting,
degraded, stopping) so that truncation drops the least useful part.
"""

from __future__ import annotations

from collections.abc import Sequence

from hvsupervisor.core.agent_status import AgentStatus

MAX_LEN = 200
MAX_DETAIL = 90

# Problem order in the line; ready agents are named only when degraded.
_ORDER = ("failed", "waiting", "backoff", "starting", "degraded", "stopping", "stopped")


def ascii_clean(text: str) -> str:
    """Printable ASCII only: other characters become '?', whitespace runs one space."""
    out = []
    for ch in text:
        if ch.isspace():
            out.append(" ")
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("?")
    return " ".join("".join(out).split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def _category(snap: AgentStatus) -> str | None:
    if snap.state == "ready":
        return "degraded" if snap.degraded else None
    return snap.state


def _part(snap: AgentStatus, category: str) -> str:
    detail = snap.reason
    if category == "failed" and not detail:
        detail = snap.last_exit or ""
    text = f"{snap.name} {category}"
    if detail:
        text += ": " + _clip(ascii_clean(detail), MAX_DETAIL)
    return ascii_clean(text)


def summary_line(agents: Sequence[AgentStatus], max_len: int = MAX_LEN) -> str:
    """E.g. "5/6 ready; neutron-l3-agent failed: exit 1 (ImportError...)".

    Agents keep their input order within a category. When the problems do not
    fit, the line ends with "; +N more" rather than a cut-off word.
    """
    if not agents:
        return "no agents enabled"
    ready = sum(1 for a in agents if a.ready)
    head = f"{ready}/{len(agents)} ready"
    parts = []
    for category in _ORDER:
        parts += [_part(a, category) for a in agents if _category(a) == category]
    # Last: the agent works; the operator should restart it when convenient.
    parts += [ascii_clean(f"{a.name} restart pending: {_clip(a.restart_pending, MAX_DETAIL)}")
              for a in agents if a.restart_pending]
    line = head
    for i, part in enumerate(parts):
        rest = len(parts) - i - 1
        tail = f"; +{rest} more" if rest else ""
        if len(line) + 2 + len(part) + len(tail) <= max_len:
            line += "; " + part
            continue
        # Does not fit: clip this part if enough of it shows, else just count it.
        room = max_len - len(line) - 2 - len(tail)
        if room >= 20:
            line += "; " + _clip(part, room) + tail
        else:
            line += f"; +{rest + 1} more"
        break
    return _clip(line, max_len)
