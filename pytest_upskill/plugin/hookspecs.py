"""Hook specifications that a ``conftest.py`` (or a plugin) may implement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.hookspec
def pytest_upskill_checks() -> dict[str, Callable[[str, Any], Any]]:
    """Register custom checks for ``expected`` in ``skill_meta.json``.

    Return ``{name: check}``. ``check(output, value)`` gets the model's reply and the value the
    case gives for ``name``; it returns ``bool``, ``(bool, message)`` or
    ``pytest_upskill.CheckResult``. For collection-time validation of ``value``, return a
    ``pytest_upskill.Check(name, check, prepare)`` instead. The hook is called per directory, so a
    conftest.py's checks apply to the skills below it. Built-in names cannot be replaced.
    """


@pytest.hookspec
def pytest_upskill_validators() -> dict[str, Callable[..., Any]]:
    """Register validators for a case's ``validator`` field, with upskill's signature.

    Return ``{name: validator}``. ``validator(workspace: Path, output_file: str, **validator_config)``
    runs after the model's last turn in a workspace trial and returns upskill's
    ``ValidationResult`` (``passed``, ``error_message``), a ``bool``, ``(bool, message)`` or
    ``pytest_upskill.CheckResult``. It is trusted code, run in-process under the check time limit:
    run model output through ``pytest_upskill.scoring.sandbox.run``. Built-in names cannot be replaced.
    """
