"""``python -m pytest_upskill``: the same as the ``pytest-upskill`` command."""

import sys

from .cli import main

sys.exit(main())
