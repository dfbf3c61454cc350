"""Reading the run's settings: a command-line option where given, else the ini value, checked
(plugin.py declares them). A bad value is a usage error that names the option and what it must be."""

from __future__ import annotations

import math
from typing import Any

import pytest


def option(config: pytest.Config, name: str) -> Any:
    value = config.getoption(name, None)  # None also for the settings that are ini-only
    return value if value is not None else config.getini(name)


# what a number of seconds or dollars must be: (the test, in words)
_AT_LEAST = {
    "upskill_timeout": (lambda x: x > 0, "a number of seconds above 0"),
    "upskill_check_timeout": (lambda x: x > 0, "a number of seconds above 0"),
    "upskill_backoff": (lambda x: x >= 0, "a number of seconds, 0 or more"),
    "upskill_max_cost": (lambda x: x >= 0, "an amount in USD, 0 or more"),
    "upskill_effect": (lambda x: 0 < x < 1, "a fraction above 0 and below 1 (0.2 for 20 points)"),
    "upskill_max_regression": (lambda x: 0 <= x < 1, "a fraction from 0 up to 1 (0.05 for 5 points)"),
    "upskill_min_improvement": (lambda x: -1 < x < 1, "a fraction between -1 and 1 (0.1 for 10 points)"),
    "upskill_progress": (lambda x: x >= 0, "a number of seconds, 0 or more"),
}


def float_option(config: pytest.Config, name: str) -> float | None:
    value = option(config, name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    test, words = _AT_LEAST.get(name, (lambda x: True, "a finite number (a fraction: 0.2 for 20%)"))
    if not math.isfinite(number) or not test(number):
        raise pytest.UsageError(f"--{name.replace('_', '-')} / {name} must be {words}, not {value!r}")
    return number


def seconds_option(config: pytest.Config, name: str) -> float:
    """A setting with a default, so never empty."""
    number = float_option(config, name)
    if number is None:
        raise pytest.UsageError(f"--{name.replace('_', '-')} / {name} must be {_AT_LEAST[name][1]}, not empty")
    return number


def switch_option(config: pytest.Config, name: str) -> bool:
    """An ``auto``/``off`` setting: True for auto."""
    value = str(option(config, name)).strip().lower()
    if value not in ("auto", "off"):
        raise pytest.UsageError(f"--{name.replace('_', '-')} / {name} must be auto or off, not {value!r}")
    return value == "auto"


def int_option(config: pytest.Config, name: str) -> int:
    value = option(config, name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{name} must be a whole number, not {value!r}") from None
    least = 0 if name == "upskill_retries" else 1
    if number < least:
        raise pytest.UsageError(f"{name} must be at least {least}, not {number}")
    return number
