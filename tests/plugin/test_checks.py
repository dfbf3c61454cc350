"""Every built-in check passes and fails as documented, custom checks come from conftest.py, and
bad check values are collection errors."""

from __future__ import annotations

import json

import pytest

from pytest_upskill.testing import LoopbackServer

REPLY = 'Sure.\n```json\n{"kernel": "layernorm", "capabilities": ["9.0"]}\n```'


@pytest.fixture
def server():
    with LoopbackServer(reply=lambda system, user: REPLY) as s:
        yield s


def run_case(pytester, write_skill, server, expected, *extra):
    write_skill("alpha-facts", [{"id": "c", "input": "x", "expected": expected}], body="B.")
    result = pytester.runpytest(
        "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-report", "r.json", *extra
    )
    results = json.loads((pytester.path / "r.json").read_text())["results"]
    return result, results[0]["with_skill"] if results else None


def test_json_checks_accept_an_output_that_is_one_fenced_block(pytester, write_skill):
    schema = {
        "type": "object",
        "required": ["kernel"],
        "properties": {"capabilities": {"type": "array", "contains": {"const": "9.0"}}},
    }
    bad_schema = {"type": "object", "required": ["missing_key"]}
    with LoopbackServer(reply=lambda s, u: '```json\n{"kernel": "x", "capabilities": ["9.0"]}\n```') as server:
        _, ok = run_case(pytester, write_skill, server, {"is_json": True, "json_schema": schema})
        result, bad = run_case(pytester, write_skill, server, {"json_schema": bad_schema})
    assert ok["passed"] == 1
    assert bad["failed"] == 1
    result.stdout.fnmatch_lines(["json_schema: schema violation at (root): 'missing_key' is a required property"])


def test_every_failing_check_is_named(pytester, write_skill, server):
    result, _ = run_case(
        pytester, write_skill, server, {"contains": "zeta", "not_contains": "sure", "regex": "layernorm"}
    )
    result.stdout.fnmatch_lines(
        ["contains: missing (case-insensitive): ['zeta']; not_contains: must not contain (case-insensitive): ['sure']"]
    )


@pytest.mark.parametrize(
    ("expected", "message"),
    [
        ({"contains": 5}, "*expected 'contains': must be a string or a list of strings, not 5*"),
        ({"regex": "(unclosed"}, "*expected 'regex': invalid regular expression '(unclosed'*"),
        ({"json_schema": {"type": "no-such-type"}}, "*expected 'json_schema': invalid JSON Schema*"),
        ({"is_json": "yes"}, "*expected 'is_json': must be true*"),
        ({}, "*case 1 has an empty 'expected'*"),
    ],
)
def test_bad_check_values_are_collection_errors(pytester, write_skill, server, expected, message):
    result, _ = run_case(pytester, write_skill, server, expected)
    result.stdout.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert server.requests == []


CONFTEST = """
from pytest_upskill import Check

def max_words(output, limit):
    n = len(output.split())
    return n <= limit, f"{n} words, more than {limit}"

def prepare_limit(value):
    if not isinstance(value, int):
        raise ValueError("must be a whole number of words")
    return value

def pytest_upskill_checks():
    return {
        "max_words": Check("max_words", max_words, prepare_limit),
        "mentions_kernel": lambda output, value: "kernel" in output,
    }
"""


def test_custom_checks_registered_in_conftest_score_trials(pytester, write_skill, server):
    pytester.makeconftest(CONFTEST)
    _, ok = run_case(pytester, write_skill, server, {"max_words": 50, "mentions_kernel": True})
    assert ok["passed"] == 1
    result, bad = run_case(pytester, write_skill, server, {"max_words": 2})
    assert bad["failed"] == 1
    result.stdout.fnmatch_lines(["max_words: 7 words, more than 2"])


def test_custom_check_values_are_validated_at_collection(pytester, write_skill, server):
    pytester.makeconftest(CONFTEST)
    result, _ = run_case(pytester, write_skill, server, {"max_words": "many"})
    result.stdout.fnmatch_lines(["*expected 'max_words': must be a whole number of words*"])


def test_a_custom_check_cannot_replace_a_builtin(pytester, write_skill, server):
    pytester.makeconftest("def pytest_upskill_checks():\n    return {'contains': lambda o, v: True}\n")
    result, _ = run_case(pytester, write_skill, server, {"contains": "x"})
    result.stdout.fnmatch_lines(["*custom check 'contains' would replace the built-in one; choose another name*"])


def test_a_check_that_raises_makes_the_trial_an_error_not_a_failure(pytester, write_skill, server):
    pytester.makeconftest("def pytest_upskill_checks():\n    return {'boom': lambda o, v: 1 / 0}\n")
    result, arm = run_case(pytester, write_skill, server, {"boom": True})
    assert arm["errors"] == 1 and arm["failed"] == 0
    result.stdout.fnmatch_lines(["*not scored (check_error): a check raised ZeroDivisionError: division by zero*"])


@pytest.mark.parametrize(
    ("expected", "confined", "passes"),
    [
        ({"contains": "layernorm", "not_contains": "8.0"}, False, True),
        ({"equals": REPLY}, False, True),
        ({"contains": "layernorm", "regex": "sm_90"}, True, False),
        ({"is_json": True}, True, False),  # the fenced block is not the whole answer
    ],
)
def test_only_checks_that_parse_or_match_patterns_start_a_check_worker(
    pytester, write_skill, server, monkeypatch, expected, confined, passes
):
    """contains, not_contains and equals compare strings in time linear in the output and parse
    nothing: they run in the runner's process, and a suite of them starts no check worker (a
    Python start-up per worker, in every xdist worker). A regex or JSON check still runs confined."""
    from pytest_upskill.scoring import checkpool

    started = 0
    start = checkpool._Worker.start  # bound to _Worker

    async def counting(cls, limits):
        nonlocal started
        started += 1
        return await start(limits)

    monkeypatch.setattr(checkpool._Worker, "start", classmethod(counting))  # the in-process run's module
    result, with_skill = run_case(pytester, write_skill, server, expected)
    assert (started > 0) == confined, (expected, started)
    assert with_skill["total"] == 1 and with_skill["errors"] == 0
    assert with_skill["passed"] == passes
