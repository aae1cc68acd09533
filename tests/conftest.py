"""Root conftest: every module in tests/fixtures/ is a pytest plugin.

Each tier keeps its fixtures in its own module there, so that fixtures for
ovsdb, libvirtd, the fake systemd and the control plane stay apart and any
test can use any of them.
"""

import pathlib

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (pathlib.Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
