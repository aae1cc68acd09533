"""Every shipped file reaches a pip install, at the path the code looks for it.

paths.units_dir() and defaults_dir() find ``<prefix>/share/hvsupervisor/{units,etc}``
after a non-editable install, so setup.cfg's data_files must mirror the
checkout's ``units/`` and ``etc/`` trees file for file (a tmpfiles.d snippet
installed one level up was invisible to ``install-units``).
"""

from __future__ import annotations

import configparser
import glob
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _installed() -> dict[str, str]:
    """checkout path -> install path under the prefix, from setup.cfg's data_files."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    out = {}
    for target, sources in cfg["options.data_files"].items():
        for pattern in (s.strip() for s in sources.split(",")):
            for src in glob.glob(str(ROOT / pattern)):
                rel = Path(src).relative_to(ROOT)
                out[str(rel)] = f"{target}/{rel.name}"
    return out


def test_every_shipped_file_is_installed_where_the_code_looks():
    installed = _installed()
    for tree in ("etc", "units"):
        for path in sorted((ROOT / tree).rglob("*")):
            if not path.is_file():
                continue
            rel = str(path.relative_to(ROOT))
            assert rel in installed, f"{rel} is not in setup.cfg data_files"
            assert installed[rel] == f"share/hvsupervisor/{rel}", (rel, installed[rel])


def test_a_checkout_or_editable_install_finds_the_checkouts_trees():
    """From the source tree (``pip install -e``, run_demo), the catalog is the checkout's etc/.

    An editable install gets no data_files copy, so this is the only way the
    demo finds its defaults; the layout move of config/paths.py one level down
    once made it look in ``hvsupervisor/etc`` (a pristine Debian 12 demo
    stopped with "base config file 'hvsupervisor.conf' is in neither ...").
    """
    from hvsupervisor.config import paths

    source = str(ROOT / "hvsupervisor" / "config" / "paths.py")
    assert paths.defaults_dir(source) == ROOT / "etc"
    assert paths.units_dir(source) == ROOT / "units"
