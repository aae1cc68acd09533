"""A record of the agents this node's supervisor spawned, kept in the state dir.

Why: a supervisor that dies without stopping its agents (SIGKILL, OOM, a
crash outside systemd, or under ``KillMode=process``) leaves them running
with ppid 1. The next supervisor must not start a second copy next to each
(the one with a port fails with EADDRINUSE; two nova-computes fight over one
compute node). So every spawn writes one small file, every reap removes it,
and the next start finds what a dead predecessor left.

A recorded pid is believed only if it still names *the same process*: the
same boot (``/proc/sys/kernel/random/boot_id``) and the same start time
(field 22 of ``/proc/PID/stat``, clock ticks since boot). pids are reused,
but a (boot, pid, start time) triple never is. Because a reboot voids every
entry, the files need no fsync.

Layout: ``<state_dir>/supervisor/agents/<pid>``, one JSON object per file
(``{"agent", "pid", "starttime", "boot_id"}``), written by rename so a reader
never sees half a file. One file per pid makes add and remove O(1) (no
rewrite of a shared file per spawn) and leaves nothing to merge.

Public API (also for the data-plane code: keep it small):

* ``AgentRecord(directory)`` / ``AgentRecord.for_state_dir(state_dir)``
* ``record.add(agent, pid) -> Entry`` right after a spawn (the child is ours
  and unreaped, so its start time cannot belong to another process);
* ``record.remove(pid)`` once reaped;
* ``record.leftovers() -> list[Entry]``: entries whose process is still the
  one recorded; files of dead ones are removed;
* ``stop_leftovers(entries, timeout_for)``: SIGTERM each leftover agent and
  the members of its session (its workers, its privsep daemon), SIGKILL
  after the agent's timeout. Processes that started their own session
  (dnsmasq, haproxy, keepalived daemonize with setsid) are left alone: they
  are the data plane, not a duplicate agent.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from hvsupervisor.process import children

LOG = logging.getLogger(__name__)

RECORD_SUBDIR = Path("supervisor") / "agents"
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class Entry:
    """One spawned agent process, identified beyond pid reuse."""

    agent: str
    pid: int
    starttime: int  # clock ticks after boot, /proc/PID/stat field 22
    boot_id: str


def boot_id() -> str:
    with open(BOOT_ID_PATH) as fh:
        return fh.read().strip()


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (after the comm in parentheses), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # comm may hold spaces and ')': split after the *last* ')' (proc(5)).
    return raw.rsplit(b")", 1)[-1].decode("ascii", "replace").split()


def proc_starttime(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, None if it is gone."""
    fields = _stat_fields(pid)
    # fields[0] is field 3 (state); starttime is field 22 -> index 19.
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def _state_sid(pid: int) -> tuple[str, int] | None:
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 4:
        return None
    return fields[0], int(fields[3])  # state (field 3), session id (field 6)


def is_same_process(entry: Entry, current_boot: str | None = None) -> bool:
    """True if ``entry.pid`` is still the process that was recorded, and not a zombie."""
    if entry.boot_id != (current_boot or boot_id()):
        return False
    if proc_starttime(entry.pid) != entry.starttime:
        return False
    st = _state_sid(entry.pid)
    return st is not None and st[0] not in ("Z", "X")


def session_members(entry: Entry) -> list[int]:
    """Live processes in the recorded agent's session (its workers, not itself).

    The supervisor starts each agent in a new session (pgid = sid = its pid),
    so its forked workers and privsep daemons share that sid unless they
    setsid() themselves, which is what the daemonizing data-plane helpers do.
    A member must have started no earlier than the agent, which rules out an
    unrelated session that reused the number after the agent died.
    """
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == entry.pid:
            continue
        pid = int(name)
        st = _state_sid(pid)
        if st is None or st[1] != entry.pid or st[0] in ("Z", "X"):
            continue
        start = proc_starttime(pid)
        if start is not None and start >= entry.starttime:
            members.append(pid)
    return members


class AgentRecord:
    """The directory of per-pid entry files; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._boot = boot_id()

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> AgentRecord:
        return cls(Path(state_dir) / RECORD_SUBDIR)

    def ensure(self) -> None:
        """Create the directory (0700: pids and names of root's processes)."""
        self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.mkdir(mode=0o700, exist_ok=True)

    def add(self, agent: str, pid: int) -> Entry:
        """Record a just-spawned agent. Raises OSError if it cannot be written."""
        start = proc_starttime(pid)
        if start is None:
            raise OSError(f"/proc/{pid}/stat is gone")
        entry = Entry(agent=agent, pid=pid, starttime=start, boot_id=self._boot)
        path = self.directory / str(pid)
        tmp = self.directory / f".{pid}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(asdict(entry)).encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)
        return entry

    def remove(self, pid: int) -> None:
        try:
            os.unlink(self.directory / str(pid))
        except FileNotFoundError:
            pass

    def entries(self) -> list[Entry]:
        """Every readable entry, live or not (unreadable files are skipped and logged)."""
        out = []
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        for name in names:
            if not name.isdigit():
                continue
            try:
                data = json.loads((self.directory / name).read_text())
                out.append(Entry(agent=str(data["agent"]), pid=int(data["pid"]),
                                 starttime=int(data["starttime"]),
                                 boot_id=str(data["boot_id"])))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                LOG.warning("agent record %s unreadable (%s): ignored", self.directory / name,
                            exc)
        return out

    def leftovers(self) -> list[Entry]:
        """Entries whose process still runs; the files of the others are removed."""
        live = []
        for entry in self.entries():
            if is_same_process(entry, self._boot):
                live.append(entry)
            else:
                self.remove(entry.pid)
        return live


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_leftovers(entries: list[Entry], timeout_for: Callable[[str], float],
                   signal_for: Callable[[str], int] = lambda _name: signal.SIGTERM,
                   ) -> list[int]:
    """Stop what a dead supervisor left: each agent and its session, SIGKILL past its timeout.

    ``signal_for(agent)`` is the agent's own ``stop_signal`` (the OVS agent
    ignores SIGTERM, the DHCP/L3 agents stop at once on SIGINT: doc/upstream-
    behaviour.md section 13), so a leftover stops as fast as a running one.

    All are signalled at once and waited for together, so the delay is the
    longest timeout, not their sum. Returns the pids that were still alive
    after SIGKILL (normally none). The caller removes the entries.
    """
    targets: dict[int, float] = {}
    for entry in entries:
        timeout = timeout_for(entry.agent)
        members = session_members(entry)
        LOG.warning("event=leftover-agent agent=%s pid=%d session=%s: a previous supervisor "
                    "left it running; stopping it so that only one copy runs",
                    entry.agent, entry.pid, ",".join(map(str, members)) or "-")
        sig = signal_for(entry.agent)
        for pid in [entry.pid, *members]:
            targets[pid] = max(timeout, targets.get(pid, 0.0))
            _kill(pid, sig)
    start = time.monotonic()
    left = list(targets)
    killed: list[int] = []
    while left:
        # Wait until the nearest deadline, SIGKILL whoever reached theirs, repeat.
        due = min(start + targets[p] for p in left)
        left = children.wait_gone(left, max(0.0, due - time.monotonic()))
        now = time.monotonic()
        late = [p for p in left if start + targets[p] <= now]
        if late:
            LOG.warning("event=leftover-kill pids=%s: SIGKILL after their stop_timeout",
                        ",".join(map(str, late)))
            for pid in late:
                _kill(pid, signal.SIGKILL)
            killed += late
            left = [p for p in left if p not in late]
    left = children.wait_gone(killed, 5.0)
    return left
