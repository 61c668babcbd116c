"""``python -m server`` is the ``segue`` command."""

import sys

from .cli import main

sys.exit(main())
