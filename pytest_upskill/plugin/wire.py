"""The one codec of a trial's :class:`~pytest_upskill.types.Outcome` through pytest's reports.

A trial item puts its outcome on its report in two parts, and the controller (this process, or
xdist's, which collects nothing) reads both back into the same typed ``Outcome``:

- **properties** (``report.user_properties``, ``upskill.FIELD``): every field but the detail, plus
  the skill's own gate thresholds (JSON). JUnit writes them as each testcase's properties.
- **detail** (``report.upskill_detail``, on the teardown report): the answer (cut to
  ``ANSWER_CHARS``, with its whole length), the failing checks' message and the tool calls. xdist
  carries a report's attributes; JUnit does not write them.

Both parts are plain values (xdist sends reports between processes; nothing is pickled). A field
added to ``Outcome`` travels with no edit here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from pytest_upskill.results.aggregate import Received
from pytest_upskill.results.report import ANSWER_CHARS
from pytest_upskill.types import Outcome

PREFIX = "upskill."
DETAIL = ("message", "output", "output_chars", "calls", "written")  # on the teardown report, not in JUnit
PROPERTIES = tuple(f.name for f in fields(Outcome) if f.name not in DETAIL)
THRESHOLDS = "thresholds"


def properties(outcome: Outcome, thresholds: dict[str, float] | None = None) -> list[tuple[str, Any]]:
    """The trial's user properties: every field but the detail (``passed`` even when None)."""
    values = {name: getattr(outcome, name) for name in PROPERTIES}
    values["arm"] = str(outcome.arm)
    if outcome.error_kind is not None:
        values["error_kind"] = str(outcome.error_kind)
    found = [(PREFIX + name, value) for name, value in values.items() if value is not None or name == "passed"]
    if thresholds:
        found.append((PREFIX + THRESHOLDS, json.dumps(thresholds, sort_keys=True)))
    return found


def detail(outcome: Outcome) -> dict[str, Any]:
    """The trial's detail: the answer cut to ANSWER_CHARS (it was masked when it arrived)."""
    return {
        "output": outcome.output[:ANSWER_CHARS],
        "output_chars": len(outcome.output) if outcome.output_chars is None else outcome.output_chars,
        "message": outcome.message,
        "calls": outcome.calls,
        "written": outcome.written,
    }


def received(user_properties: Iterable[tuple[str, Any]], detail: dict[str, Any] | None = None) -> Received | None:
    """The outcome a report carries, or None for a report that is not a trial's."""
    found = {str(name)[len(PREFIX) :]: value for name, value in user_properties if str(name).startswith(PREFIX)}
    if "skill" not in found or "arm" not in found:
        return None
    raw = found.pop(THRESHOLDS, None)
    thresholds = json.loads(raw) if raw else None
    known = {f.name for f in fields(Outcome)}
    values = {k: v for k, v in {**found, **(detail or {})}.items() if k in known}
    values["run"] = int(values["run"])
    return Received(Outcome(**values), thresholds)
