"""``hvsupervisor demo``: a self-contained demo node (see hvsupervisor/demo/)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(args: argparse.Namespace) -> int:
    from hvsupervisor.demo import node

    demo_dir = args.dir or Path(os.environ.get("HVSUP_DEMO_DIR") or ".demo")
    return node.run(demo_dir, args.defaults_dir, boot_vm=args.boot)
