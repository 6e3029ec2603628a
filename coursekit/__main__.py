"""``python -m coursekit``: the same command line as ``coursekit``."""

import sys

from .cli import main

sys.exit(main())
