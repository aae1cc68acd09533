"""Did an agent's code change under it? (LP#1980211: agents not restarted after upgrade.)

A package upgrade replaces a daemon's files but the running process keeps
the old code until it restarts. We compare the process's start time with
the modification time of what an upgrade rewrites: the console script
itself and the ``RECORD`` of the distribution that provides its package
(pip and dpkg both rewrite it on every install). Read-only and cheap: a
few stat() calls, done when an operator asks for ``status``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_IMPORT = re.compile(rb"^from ([A-Za-z_][\w]*)[\w.]* import", re.M)


def process_start(pid: int) -> float | None:
    """Wall-clock start time of ``pid`` (from /proc), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        btime = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                     if line.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return btime + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime


def _top_package(argv: list[str]) -> tuple[Path | None, str | None]:
    """The script and the top-level package it runs (console script or ``python -m``)."""
    exe = Path(argv[0])
    if "-m" in argv[1:]:
        i = argv.index("-m")
        if i + 1 < len(argv):
            return exe, argv[i + 1].split(".")[0]
    try:
        head = exe.read_bytes()[:4096]
    except OSError:
        return exe, None
    m = _IMPORT.search(head)
    return exe, m.group(1).decode() if m else None


def _site_dirs(exe: Path) -> list[Path]:
    prefix = exe.resolve().parent.parent if exe.is_absolute() else None
    if prefix is None:
        return []
    dirs = sorted((prefix / "lib").glob("python3*/site-packages"))
    dirs += [d for d in (prefix / "lib/python3/dist-packages",) if d.is_dir()]
    return dirs


def code_files(argv: list[str]) -> list[Path]:
    """The files whose change means "restart to run the new code"."""
    exe, top = _top_package(argv)
    files = [exe] if exe is not None and exe.is_file() and "-m" not in argv[1:] else []
    if top is None or exe is None:
        return files
    for site in _site_dirs(exe):
        for dist in site.glob("*.dist-info"):
            tl = dist / "top_level.txt"
            try:
                tops = tl.read_text().split() if tl.exists() else []
            except OSError:
                tops = []
            name = dist.name.split("-")[0].lower().replace("-", "_")
            if top in tops or name == top.lower():
                files.append(dist / "RECORD")
    return [f for f in files if f.exists()]


def changed_since(argv: list[str], pid: int) -> str | None:
    """A one-line reason when the agent's code is newer than its process, else None."""
    started = process_start(pid)
    if started is None:
        return None
    newer = []
    for f in code_files(argv):
        try:
            mtime = f.stat().st_mtime
        except OSError:
            continue
        if mtime > started + 1:  # clock ticks: 1 s of slack
            newer.append(f.parent.name if f.name == "RECORD" else f.name)
    if not newer:
        return None
    return "code changed after start: " + ", ".join(newer)
