"""Write an oslo-style ini file: the one writer of the demo's and tests' config files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def write_ini(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    """Write an oslo-style ini (sections in the given order) from a dict of sections."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in options.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path
