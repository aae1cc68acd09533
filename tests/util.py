"""Small helpers shared by the functional and e2e tiers."""

from __future__ import annotations

import os

from hvtestcloud.waiting import WaitTimeout, wait_until

__all__ = ["WaitTimeout", "kill_and_reap", "kill_quietly", "pid_alive", "read_pid",
           "wait_until"]


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


def kill_and_reap(pids) -> None:
    """SIGKILL and reap our own children (teardown of a test that spawned them)."""
    for pid in pids:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
