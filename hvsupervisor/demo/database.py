"""The demo's local nova database (sqlite), for nova-api-metadata.

Why: nova's metadata WSGI app registers itself in the services table and
checks the minimum nova-compute version when it loads (nova 34
``wsgi_app._setup_service`` -> ``utils.raise_if_old_compute``); with no
``[database] connection`` its worker fails to boot. With no
``[api_database]``, that check stays within the local cell, so the main
schema alone (``nova-manage db sync --local_cell``) is enough: no cell
mappings, no API database.

The sync runs once with the agent's own plan (same files, same env), and a
stamp naming the nova version skips it on the next run (~7 s saved).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from hvsupervisor.config.plan import Plan

AGENT = "nova-api-metadata"


def db_path(state_dir: Path) -> Path:
    return state_dir / "nova" / "nova.sqlite"


def connection(state_dir: Path) -> str:
    return f"sqlite:///{db_path(state_dir)}"


def sync(plan: Plan, state_dir: Path, bindir: Path, log: Path,
         base_env: Mapping[str, str]) -> bool:
    """Build the schema if the stamp is missing or stale; True if it ran.

    RuntimeError (naming the log) if nova-manage fails.
    """
    stamp = db_path(state_dir).with_suffix(".synced")
    version = metadata.version("nova")
    if stamp.exists() and stamp.read_text().strip() == version and db_path(state_dir).exists():
        return False
    argv = [str(bindir / "nova-manage")]
    for f in plan.files:
        argv += ["--config-file", str(f.path)]
    argv += ["db", "sync", "--local_cell"]
    db_path(state_dir).parent.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                           env={**base_env, **plan.env}, timeout=300, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"nova-manage db sync failed rc={r.returncode}, see {log}")
    stamp.write_text(version + "\n")
    return True
