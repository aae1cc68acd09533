"""The installed unit's effective ``TimeoutStopSec=``, read from its files.

Read from the unit files rather than asked of systemd (``systemctl show``)
so that ``hvsupervisor check`` gives the same answer before
``daemon-reload``, in a chroot, or on a host that is not running systemd,
and names the file that set the value. The lookup follows systemd's rules
for system units: the first fragment found in the search path, then every
``NAME.service.d/*.conf`` drop-in of every directory, applied in file-name
order (a later drop-in wins). ``TimeoutSec=`` sets both start and stop.
"""

from __future__ import annotations

import re
from pathlib import Path

UNIT = "hvsupervisor.service"
# systemd's system unit search path, highest priority first (systemd.unit(5)).
SEARCH_PATH = ("etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system",
               "usr/lib/systemd/system", "lib/systemd/system")
_UNITS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1, "sec": 1, "second": 1,
          "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600,
          "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_timespan(text: str) -> float:
    """systemd.time(7) spans: "90", "90s", "3min 30s", "infinity" (returned as 0)."""
    text = text.strip().lower()
    if text == "infinity":
        return 0.0
    total, pos = 0.0, 0
    for m in _SPAN.finditer(text):
        if text[pos:m.start()].strip():
            raise ValueError(f"not a time span: {text!r}")
        unit = m.group(2) or "s"
        if unit not in _UNITS:
            raise ValueError(f"unknown time unit {unit!r} in {text!r}")
        total += float(m.group(1)) * _UNITS[unit]
        pos = m.end()
    if pos == 0 or text[pos:].strip():
        raise ValueError(f"not a time span: {text!r}")
    return total


def _service_values(path: Path) -> list[tuple[str, str, int]]:
    """(key, value, line) of the [Service] section of one unit file."""
    out, section = [], None
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        if section == "Service" and "=" in stripped:
            key, _, value = stripped.partition("=")
            out.append((key.strip(), value.strip(), number))
    return out


def unit_files(root: Path = Path("/"), unit: str = UNIT) -> list[Path]:
    """The fragment, then its drop-ins in the order systemd applies them."""
    fragment = next((root / d / unit for d in SEARCH_PATH if (root / d / unit).is_file()), None)
    if fragment is None:
        return []
    dropins: dict[str, Path] = {}
    for d in reversed(SEARCH_PATH):  # a name in a higher-priority dir replaces a lower one
        ddir = root / d / f"{unit}.d"
        if ddir.is_dir():
            for f in ddir.glob("*.conf"):
                dropins[f.name] = f
    return [fragment, *(dropins[n] for n in sorted(dropins))]


def timeout_stop(root: Path = Path("/"), unit: str = UNIT) -> tuple[float, str] | None:
    """(seconds, "file:line") of the effective stop timeout; 0 means infinity.

    None when the unit is not installed or sets neither key (systemd's
    DefaultTimeoutStopSec= then applies: 90 s unless changed).
    """
    found: tuple[float, str] | None = None
    for path in unit_files(root, unit):
        for key, value, line in _service_values(path):
            if key in ("TimeoutStopSec", "TimeoutSec") and value:
                found = parse_timespan(value), f"{path}:{line}"
    return found
