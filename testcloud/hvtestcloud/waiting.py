"""Wait for an observable condition, with a deadline.

Used where a process we started has no event to wait on (the demo's
ovsdb-server creating its socket), and by the tests and benchmarks, which
must never stand a fixed sleep in for synchronisation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    """The condition did not hold in time; the message says what was awaited."""


def wait_until(predicate: Callable[[], T], timeout: float = 5.0, what: str = "",
               interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises WaitTimeout naming ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what or 'condition'}")
        time.sleep(interval)
