"""``python -m hvsupervisor`` is the same as the ``hvsupervisor`` command."""

import sys

from hvsupervisor.cli import main

sys.exit(main())
