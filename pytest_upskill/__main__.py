"""``python -m pytest_upskill``: the same as the ``pytest-upskill`` command."""

import sys

from pytest_upskill.cli.main import main

sys.exit(main())
