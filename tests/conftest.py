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


# CI on this machine kind must really run the functional and e2e tiers: a
# fixture that cannot start ovsdb, libvirtd, systemd-nspawn or the upstream
# daemons skips with its reason, and with HVSUP_NO_SKIP=1 (set by .ci/run) a
# skip fails the run instead of passing quietly.
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session, exitstatus):
    import os

    if _skipped and os.environ.get("HVSUP_NO_SKIP") == "1" and exitstatus == 0:
        print("\nHVSUP_NO_SKIP=1: these tests were skipped, which CI does not accept:")
        for line in _skipped:
            print(f"  {line}")
        session.exitstatus = 1
