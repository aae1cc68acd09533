"""Release figures (issue 22): artifact size, build time, offline install time.

Builds one artifact per track from this checkout with Debian's python3 (PyPI reached for
the build; pip's own cache makes a second build faster: say which in the report), then
installs it into a temp release root with no index, and prints one JSON line per track:

    python3 benchmarks/release.py                 # 2026.1 and 2026.2
    python3 benchmarks/release.py --track 2026.2 --keep /tmp/artifacts

The switch and rollback figures with a VM (switch to serving, rollback to serving, ping
loss through the switch) are the e2e test's, printed in its ``upgrade test notes`` line
(tests/e2e/test_release_upgrade.py): they need the whole control plane and a guest.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hvsupervisor.release import artifact  # noqa: E402
from hvsupervisor.release.store import ReleaseStore  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/release.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--track", action="append", default=None,
                    help="a track to build (repeat; default: every track)")
    ap.add_argument("--python", default=artifact.NODE_PYTHON)
    ap.add_argument("--keep", default=None, help="keep the artifacts in this directory")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hvsup-bench-release-"))
    out = Path(args.keep) if args.keep else work / "artifacts"
    try:
        for track in args.track or list(artifact.TRACKS):
            t0 = time.monotonic()
            path, rel = artifact.build(track, REPO, out, python=args.python)
            built = time.monotonic() - t0
            t0 = time.monotonic()
            artifact.install(path, ReleaseStore(work / "root"), python=args.python)
            installed = time.monotonic() - t0
            venv_mb = sum(f.stat().st_size for f in (work / "root" / "releases" / rel.id)
                          .rglob("*") if f.is_file()) / 1e6
            print(json.dumps({"bench": "release", "track": track, "id": rel.id,
                              "distributions": len(rel.dists),
                              "artifact_mb": round(path.stat().st_size / 1e6, 1),
                              "build_s": round(built, 1), "offline_install_s": round(installed, 1),
                              "installed_mb": round(venv_mb, 1),
                              "nova": rel.dist_version("nova"),
                              "neutron": rel.dist_version("neutron")}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
