"""Small helpers shared by the functional and e2e tiers."""

from __future__ import annotations

import os
import time


class WaitTimeout(AssertionError, TimeoutError):
    """A test failure (AssertionError) that fixtures can catch as TimeoutError to skip."""


def wait_until(predicate, timeout: float = 5.0, what: str = "", interval: float = 0.01):
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout``.

    Waiting on the observable condition itself, never a fixed sleep.
    Returns the predicate's value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {what or 'condition'}")
        time.sleep(interval)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def read_pid(path, timeout: float = 5.0) -> int:
    """Wait for a pidfile to hold a pid, and return it."""
    def get():
        try:
            text = open(path).read().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None
    return wait_until(get, timeout, what=f"pidfile {path}")


def kill_quietly(pid: int, sig: int = 9) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
