"""``python -m hvsupervisor`` is the same as the ``hvsupervisor`` command."""

import sys

from hvsupervisor.cmd.cli import main

sys.exit(main())
