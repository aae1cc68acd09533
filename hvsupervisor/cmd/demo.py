"""``hvsupervisor demo``: a self-contained demo node that joins a demo cloud.

The node and its cloud live in the separate ``hvsupervisor-testcloud``
distribution (testcloud/ in the repo), which a node's install does not carry;
``./run_demo`` installs it. Without it this verb says so, in one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    try:
        from hvtestcloud import node
    except ImportError as exc:
        print(f"hvsupervisor demo: needs the hvsupervisor-testcloud package ({exc}); "
              "./run_demo in a checkout installs it", file=sys.stderr)
        return 1

    demo_dir = args.dir or Path(os.environ.get("HVSUP_DEMO_DIR") or ".demo")
    return node.run(demo_dir, args.defaults_dir, boot_vm=args.boot)
