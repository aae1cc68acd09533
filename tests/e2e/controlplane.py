"""The e2e tier's control plane: testcloud/hvtestcloud/cloud.py, bound to this venv.

One launcher for the demo and the tests (cloud.py); this module only binds
it to the interpreter running the tests (tox's e2e env, which holds nova,
neutron, placement and glance) and keeps the names the e2e modules import.
The fake-driver node of the session shares the control plane's namespace and
its OVS (see tests/fixtures/controlplane.py).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from hvtestcloud import cloud, services
from hvtestcloud.cloud import ControlPlane, utc, wait_until  # noqa: F401
from hvtestcloud.profile import write_compute_id as _write_compute_id
from hvtestcloud.profile import write_ini  # noqa: F401

# The interpreter running the tests is the one with nova, neutron and placement
# (tox's e2e env): its prefix holds their console scripts and shipped etc/.
# No path of one machine: whatever venv runs pytest is the upstream venv.
BIN = Path(sys.executable).parent
NODE_HOST = "e2e-node"


def scrubbed_env(extra: Mapping[str, str] = ()) -> dict[str, str]:
    """Our environment without oslo overrides or systemd variables, the venv first on PATH."""
    return services.scrubbed_env(extra, bindir=BIN)


def start_control_plane(root: Path, full: bool = False) -> ControlPlane:
    """cloud.start_control_plane in a fresh netns with its OVS, from this venv."""
    return cloud.start_control_plane(root, bindir=BIN, prefix=Path(sys.prefix), full=full)


def node_snippets(cp: ControlPlane, override: Path, host: str = NODE_HOST,
                  flat_network: bool = False) -> None:
    """The fake-driver node's snippets (PredictableNodeUUIDDriver: a restart keeps
    the node identity), in ``50-e2e.conf``."""
    cloud.node_snippets(cp, override, host, name="50-e2e.conf", flat_network=flat_network)


def write_compute_id(state_dir: Path, host: str = NODE_HOST) -> str:
    """A fixed node identity: PredictableNodeUUIDDriver + this file survive restarts."""
    return _write_compute_id(state_dir, host)


if __name__ == "__main__":  # manual use: bring it up, print where, wait for ^C
    plane = start_control_plane(Path(sys.argv[1]), full="--full" in sys.argv)
    print(plane.ns.name, plane.timings)
    try:
        signal.pause()
    finally:
        plane.stop()
        plane.ns.destroy()
