"""A real oslo.privsep context for the broker tests (the daemon runs it as root).

Its section is ``[hvsup_test_privsep]``; ``helper_command`` comes from
``OS_HVSUP_TEST_PRIVSEP__HELPER_COMMAND``, as the supervisor's plan sets it.
"""

from __future__ import annotations

import os

from oslo_privsep import capabilities as caps
from oslo_privsep import priv_context

SECTION = "hvsup_test_privsep"

context = priv_context.PrivContext(
    "tests",
    cfg_section=SECTION,
    pypath=__name__ + ".context",
    capabilities=[caps.CAP_NET_ADMIN],
)


@context.entrypoint
def whoami() -> dict:
    """uid and CapEff of the privsep daemon: root, with exactly NET_ADMIN."""
    return {"uid": os.getuid(), "capeff": _status("CapEff")}


def _status(field: str) -> str:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return line.split()[1]
    return ""
