"""The wheel a node installs carries the product only: no test cloud, no guest builder.

The control-plane launcher (RabbitMQ, Placement, nova-api, neutron, glance),
the guest image builder and the private libvirtd live in testcloud/ (the
hvsupervisor-testcloud distribution) and must not reach a node. Checked on
the wheel tox built for this run (tox sets TOX_PACKAGE), or, outside tox, on
the installed distribution's RECORD (what pip installed from a wheel).
"""

from __future__ import annotations

import os
import zipfile
from importlib import metadata

import pytest

# Module names of the test cloud; none may be in the product's wheel under any folder.
TESTCLOUD = {"cloud.py", "boot.py", "guest.py", "libvirtd.py", "services.py", "rpcwait.py",
             "sqlite_immediate.py", "fake_keystone.py", "profile.py", "node.py", "waiting.py"}


def _wheel_files() -> list[str]:
    for pkg in filter(None, os.environ.get("TOX_PACKAGE", "").split(os.pathsep)):
        if pkg.endswith(".whl") and os.path.basename(pkg).startswith("hvsupervisor-"):
            with zipfile.ZipFile(pkg) as whl:
                return whl.namelist()
    try:
        files = metadata.files("hvsupervisor")
    except metadata.PackageNotFoundError:
        files = None
    if not files or any(str(f).endswith(".pth") for f in files):  # none, or editable
        pytest.skip("no built hvsupervisor wheel here: run under tox (package = wheel)")
    return [str(f) for f in files]


def test_the_wheel_has_no_test_cloud_and_the_product_is_whole():
    names = _wheel_files()
    modules = [n for n in names if n.endswith(".py")]
    assert [n for n in modules if n.startswith(("hvtestcloud/", "hvsupervisor/demo/"))] == []
    assert [n for n in modules if os.path.basename(n) in TESTCLOUD] == []
    # ... and the product is there: the supervisor, the agents' launchers, the CLI.
    for want in ("hvsupervisor/supervisor/loop.py", "hvsupervisor/cmd/cli.py",
                 "hvsupervisor/core/lifecycle.py", "hvsupervisor/agents/metadata_wsgi.py",
                 "hvsupervisor/cmd/demo.py"):
        assert want in names, want
