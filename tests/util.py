"""Small helpers shared by the functional and e2e tiers."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

from hvtestcloud.waiting import WaitTimeout, wait_until

__all__ = ["WaitTimeout", "kill_and_reap", "kill_quietly", "pid_alive", "read_pid",
           "release_variant", "wait_until"]


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


def release_variant(src: Path, dst: Path, **manifest: str) -> Path:
    """Release artifact ``src`` with manifest fields replaced (``id``, ``built``): another
    release of the same wheels, which is what the release tests switch between."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for member in tin.getmembers():
            data = tin.extractfile(member).read()
            if member.name == "manifest.json":
                data = json.dumps({**json.loads(data), **manifest}).encode()
            member.size = len(data)
            tout.addfile(member, io.BytesIO(data))
    return dst
