"""Where the shipped defaults live.

The defaults dir is the package's ``etc/``. It cannot be named by a file it
contains, so it is found here: next to the package in a checkout or an
editable install, or under ``<prefix>/share/hvsupervisor/etc`` where
``pip install`` puts the ``data_files`` (see setup.cfg).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_OVERRIDE_DIR = Path("/etc/hvsupervisor")
CATALOG_NAME = "hvsupervisor.conf"
CATALOG_CONF_D = "hvsupervisor.conf.d"  # the catalog's snippets, beside it
DEFAULT_RUN_DIR = "/run/hvsupervisor"  # [DEFAULT] run_dir's default (config/opts.py)


def _checkout(module_file: str = __file__) -> Path:
    """The tree holding the package: a checkout's top (this is hvsupervisor/config/paths.py)."""
    return Path(module_file).resolve().parents[2]


def _candidates(module_file: str = __file__) -> list[Path]:
    return [
        _checkout(module_file) / "etc",
        Path(sys.prefix) / "share" / "hvsupervisor" / "etc",
        Path("/usr/local/share/hvsupervisor/etc"),
        Path("/usr/share/hvsupervisor/etc"),
    ]


def defaults_dir(module_file: str = __file__) -> Path:
    """Return the shipped defaults dir (the first candidate holding the catalog)."""
    for cand in _candidates(module_file):
        if (cand / CATALOG_NAME).is_file():
            return cand
    return _candidates(module_file)[0]


def units_dir(module_file: str = __file__) -> Path:
    """The shipped systemd units: ``units/`` of a checkout, or the data_files copy."""
    top = _checkout(module_file)
    for cand in (top / "units", Path(sys.prefix) / "share" / "hvsupervisor" / "units",
                 Path("/usr/share/hvsupervisor/units")):
        if (cand / "hvsupervisor.service").is_file():
            return cand
    return top / "units"


def bindir() -> Path:
    """The directory of the running interpreter: a venv install finds its own daemons."""
    return Path(os.path.dirname(sys.executable))
