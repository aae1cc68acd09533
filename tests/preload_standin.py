"""A console-script entry point over tests/standin.py, for the preloader's tests.

A pip console script does ``from MODULE import main`` and ``sys.exit(main())``;
tests/standin.py is a plain script, so this module is that MODULE. It records
where it was imported (the preloader's pid when preloaded) and, with
PRELOAD_MARK set, writes what the agent sees to that file before it runs.
"""

from __future__ import annotations

import gc
import json
import os
import sys

from tests import standin

IMPORTED_IN = os.getpid()


def main() -> int:
    mark = os.environ.get("PRELOAD_MARK")
    if mark:
        standin.write_atomic(mark, json.dumps({
            "imported_in": IMPORTED_IN, "pid": os.getpid(), "argv": sys.argv,
            "path0": sys.path[0], "env": dict(os.environ), "cwd": os.getcwd(),
            "frozen": gc.get_freeze_count(), "sid": os.getsid(0)}))
    return standin.main(sys.argv[1:])
