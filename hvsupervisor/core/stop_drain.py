"""The drained-line rule: a stopping agent's own word that nothing is left in flight.

Why: a daemon's graceful stop can do its real work (finish the operations in
flight) and then hang on something that matters to nobody. nova-compute 34
with the libvirt driver does exactly that: it logs that it has no in-progress
task left (or that all have finished), then waits for ever on a thread pool
that holds a ``while True`` loop of the libvirt driver, so every stop or
restart costs its whole budget (doc/upstream-behaviour.md section 18). The
daemon's log says when waiting any longer protects nothing; a busy daemon
never writes that line until its work is done, so escalating on it keeps the
in-flight work and drops only the hang.

The rule is catalog data (``stop_drained``, ``stop_drained_signal``): a
regular expression searched in each complete line the agent appends to its
own log (``<log_dir>/<agent>.log``) after its ``stop_signal``, and the signal
sent to its main pid on the first match. SIGKILL after ``stop_timeout`` stays
the backstop, so a line that never comes (another log level, a log config of
the operator's) costs what it cost before, never more.

Pure: the supervisor reads the file and feeds the bytes; this module decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line longer than this without a newline is not a log line worth matching;
# only its tail is kept, so a runaway writer cannot grow the buffer.
MAX_PARTIAL = 64 * 1024


@dataclass(frozen=True)
class DrainRule:
    """``pattern`` (a regular expression) in a line after the stop signal -> ``signum``."""

    pattern: str
    signum: int

    def __post_init__(self) -> None:
        re.compile(self.pattern)  # re.error: the config layer checked it already


class DrainScanner:
    """Complete lines out of appended chunks of a log; says when the rule matched.

    ``feed`` returns True for the chunk that completes the first matching line
    and False before and after: the rule fires once per stop.
    """

    def __init__(self, rule: DrainRule) -> None:
        self.rule = rule
        self._regex = re.compile(rule.pattern)
        self._partial = b""
        self.fired = False

    def feed(self, chunk: bytes) -> bool:
        if self.fired or not chunk:
            return False
        data = self._partial + chunk
        *lines, self._partial = data.split(b"\n")
        if len(self._partial) > MAX_PARTIAL:
            self._partial = self._partial[-MAX_PARTIAL:]
        for raw in lines:
            if self._regex.search(raw.decode("utf-8", errors="replace")):
                self.fired = True
                return True
        return False

    def restart(self) -> None:
        """The file was truncated or replaced: a partial line from before is no line."""
        self._partial = b""
