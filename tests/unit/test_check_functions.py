"""Every built-in check passes and fails as documented: the check functions called directly, as the
plugin calls them after collection prepared their values (tests/plugin/test_checks.py drives the same
checks through pytest)."""

from __future__ import annotations

import pytest

from pytest_upskill.scoring.checks import CheckRegistry

REPLY = 'Sure.\n```json\n{"kernel": "layernorm", "capabilities": ["9.0"]}\n```'


def score(expected: dict, output: str = REPLY):
    registry = CheckRegistry()
    return registry.score({name: registry.prepare(name, value) for name, value in expected.items()}, output)


@pytest.mark.parametrize(
    ("expected", "passes"),
    [
        ({"contains": "LAYERNORM"}, True),
        ({"contains": ["layernorm", "9.0"]}, True),
        ({"contains": ["layernorm", "8.0"]}, False),
        ({"not_contains": "8.0"}, True),
        ({"not_contains": ["sure"]}, False),
        ({"regex": r'"capabilities":\s*\["9\.0"\]'}, True),
        ({"regex": r"^Sure\.$"}, True),
        ({"regex": r"sm_\d+"}, False),
        ({"equals": REPLY + "\n  "}, True),
        ({"equals": "Sure."}, False),
        ({"is_json": True}, False),
        ({"json_schema": {"type": "object"}}, False),
    ],
)
def test_builtin_checks_score_the_output(expected, passes):
    assert score(expected).passed is passes


def test_a_failing_check_says_what_it_missed():
    assert score({"contains": "zeta"}).message == "contains: missing (case-insensitive): ['zeta']"
    assert score({"contains": "zeta", "not_contains": "sure"}).message == (
        "contains: missing (case-insensitive): ['zeta']; not_contains: must not contain (case-insensitive): ['sure']"
    )


def test_a_json_check_reads_an_output_that_is_one_fenced_block():
    fenced = '```json\n{"kernel": "x"}\n```'
    assert score({"is_json": True}, fenced).passed and score({"json_schema": {"type": "object"}}, fenced).passed
