"""Restart policy: how long to wait before a restart, and when to give up.

Pure arithmetic, no clock and no global randomness: the caller passes the
failure count, `now` and a `random.Random`, so unit tests pin every number.

The delay curve follows systemd's RestartSec=/RestartSteps=/RestartMaxDelaySec=
(v254): the n-th consecutive restart waits restart_sec * ratio**(n-1) with
ratio = (restart_max_delay / restart_sec) ** (1 / restart_steps), reaching the
cap after `restart_steps` steps (RestartSec=10s, RestartSteps=4,
RestartMaxDelaySec=160s gives 10, 20, 40, 80, 160 s; systemd.service(5), see
doc/upstream-behaviour.md section 10). We add
+/- jitter so that agents that died together (libvirtd went away) do not all
come back in the same instant, and clamp the result to [0, cap].

Waits that are not restarts (a host gate retrying its service, a readiness
probe polling a socket) grow by `next_delay`, the one other backoff here.

Giving up is a separate rule, like systemd's StartLimitBurst=/IntervalSec=:
`flap_max` failures within `flap_window` seconds means the agent is flapping.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """The numbers from `[supervisor]` in hvsupervisor.conf, validated.

    `jitter` is a fraction: 0.1 means the delay is scaled by a factor drawn
    uniformly from [0.9, 1.1]. `flap_max = 0` disables giving up.
    """

    restart_sec: float = 0.1
    restart_max_delay: float = 30.0
    restart_steps: int = 5
    jitter: float = 0.1
    stable_period: float = 30.0
    flap_max: int = 5
    flap_window: float = 60.0

    def __post_init__(self) -> None:
        # Raised as ValueError so that the config loader can turn it into a
        # one-line operator error naming the option.
        if self.restart_sec < 0:
            raise ValueError(f"restart_sec must be >= 0, got {self.restart_sec}")
        if self.restart_max_delay < self.restart_sec:
            raise ValueError(
                f"restart_max_delay ({self.restart_max_delay}) must be >= "
                f"restart_sec ({self.restart_sec})"
            )
        if self.restart_steps < 0:
            raise ValueError(f"restart_steps must be >= 0, got {self.restart_steps}")
        if not 0 <= self.jitter <= 1:  # config/opts.py: restart_jitter is a Fraction, [0, 1]
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter}")
        if self.stable_period < 0:
            raise ValueError(f"stable_period must be >= 0, got {self.stable_period}")
        if self.flap_max < 0:
            raise ValueError(f"flap_max must be >= 0, got {self.flap_max}")
        if self.flap_window <= 0:
            raise ValueError(f"flap_window must be > 0, got {self.flap_window}")


def nominal_delay(policy: RestartPolicy, failures: int) -> float:
    """The delay before the restart that follows the `failures`-th failure, no jitter.

    `failures` counts consecutive failures including the one that just
    happened (1 for the first). Like systemd, the first restart waits
    restart_sec, and restart_steps == 0 (or restart_sec == 0, or
    restart_sec == restart_max_delay) means a constant restart_sec.
    """
    base, cap, steps = policy.restart_sec, policy.restart_max_delay, policy.restart_steps
    if failures <= 1 or steps == 0 or base <= 0 or base >= cap:
        return base
    if failures - 1 >= steps:
        return cap
    ratio = (cap / base) ** (1.0 / steps)
    return min(cap, base * ratio ** (failures - 1))


def backoff_delay(policy: RestartPolicy, failures: int, rng: random.Random) -> float:
    """`nominal_delay` scaled by a random factor in [1-jitter, 1+jitter], within [0, cap]."""
    delay = nominal_delay(policy, failures)
    if policy.jitter:
        delay *= 1.0 + rng.uniform(-policy.jitter, policy.jitter)
    return max(0.0, min(policy.restart_max_delay, delay))


def next_delay(delay: float, first: float, cap: float, factor: float = 2.0) -> float:
    """The wait after one of ``delay`` s: ``first`` to begin with, then ``factor``
    times longer, never above ``cap``.

    For polling loops (gate retries, readiness probes): start small so that a
    quick answer is seen quickly, cap so that a late one is seen within ``cap``.
    """
    return min(cap, max(first, delay * factor))


class FlapDetector:
    """Counts failures in a sliding time window: `max_failures` within `window` s = flapping.

    Kept apart from the backoff counter on purpose: backoff resets after a
    stable period, while flapping is about how often the agent died lately.
    """

    def __init__(self, max_failures: int, window: float) -> None:
        self.max_failures = max_failures
        self.window = window
        self._times: deque[float] = deque()

    def prune(self, now: float) -> None:
        """Forget failures older than the window."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()

    def record(self, now: float) -> None:
        self._times.append(now)
        self.prune(now)

    def count(self, now: float) -> int:
        self.prune(now)
        return len(self._times)

    def flapping(self, now: float) -> bool:
        return self.max_failures > 0 and self.count(now) >= self.max_failures

    def reset(self) -> None:
        self._times.clear()

    def __len__(self) -> int:
        """Failures in the window as of the last `prune`/`record`/`count`."""
        return len(self._times)
