"""Provider faults: 429 with Retry-After, 5xx, timeouts, refused connections, 200s that are not
a reply. Each is retried with bounded back-off, then recorded as an error outcome (never a failed
assertion); the other models' figures do not change; --upskill-max-errors decides the exit."""

from __future__ import annotations

import json
import socket

import pytest

from pytest_upskill.testing import EMPTY, GARBAGE, RATE_LIMITED, SERVER_ERROR, Fault, LoopbackServer, first_attempts

SKILL_BODY = "The alpha code is ZETA-42."
CASES = [
    {"id": f"c{i}", "input": f"Question {i}: what is the alpha code?", "expected": {"contains": "zeta-42"}}
    for i in range(4)
]
FIGURES = ("passed", "failed", "errors", "total", "input_tokens", "output_tokens")


@pytest.fixture
def alpha(write_skill):
    return write_skill("alpha-facts", {"tests": CASES}, body=SKILL_BODY)


def figures(report: dict) -> list:
    return [
        (
            r["model"].split("@")[0],
            {arm: {k: r[arm][k] for k in FIGURES} for arm in ("baseline", "with_skill")},
            r["lift"],
        )
        for r in report["results"]
    ]


def run(pytester, *models: str, name: str = "r.json", extra: tuple = ()):
    result = pytester.runpytest(
        "skills",
        "--upskill-models",
        ",".join(models),
        "--upskill-report",
        name,
        "--upskill-cache",
        "off",
        "-o",
        "upskill_backoff=0.01",
        *extra,
    )
    return result, json.loads((pytester.path / name).read_text())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_faulty_first_attempts_are_retried_and_the_figures_equal_a_fault_free_run(pytester, alpha, protocol):
    with LoopbackServer() as clean:
        _, expected = run(
            pytester, f"{protocol}:m@{clean.url}" + ("/v1" if protocol == "openai" else ""), name="clean.json"
        )
    with LoopbackServer(fault=first_attempts(RATE_LIMITED, SERVER_ERROR, GARBAGE, EMPTY)) as server:
        result, got = run(pytester, f"{protocol}:m@{server.url}" + ("/v1" if protocol == "openai" else ""))
        statuses = sorted({status for _, status, _ in server.attempts})
    assert statuses == [200, 429, 500]  # the faults were really sent (GARBAGE and EMPTY are 200s)
    assert len(server.attempts) == 2 * 8  # every trial: one fault, one answer
    assert figures(got) == figures(expected) and got["errors"] == 0
    assert result.ret == pytest.ExitCode.OK


def test_a_retry_waits_as_long_as_retry_after_asks(pytester, alpha):
    slow_down = Fault(429, b'{"error": {"message": "slow down"}}', {"retry-after": "1"})
    with LoopbackServer(fault=first_attempts(slow_down)) as server:
        result, got = run(pytester, f"openai:m@{server.openai_base_url}", extra=("--upskill-concurrency", "1"))
        attempts = server.attempts
    assert got["errors"] == 0 and result.ret == pytest.ExitCode.OK
    first: dict[str, float] = {}
    gaps = []
    for at, status, body in attempts:
        key = json.dumps(body, sort_keys=True)
        if status == 429:
            first[key] = at
        else:
            gaps.append(at - first[key])
    assert len(gaps) == 8 and min(gaps) >= 0.95  # upskill_backoff is 0.01 s: only Retry-After explains the wait
    result.stdout.fnmatch_lines(
        ["throttled: openai:m@* answered 429 8 time(s); requests in flight went down to 1 of 1*"]
    )


def test_errors_that_outlast_the_retries_are_errors_counted_per_model_with_their_kind(pytester, alpha):
    always = {0: SERVER_ERROR, 1: GARBAGE, 2: RATE_LIMITED}
    with LoopbackServer(fault=lambda n, body: always[n % 3] if "Question 0" in json.dumps(body) else None) as server:
        result, got = run(pytester, f"openai:m@{server.openai_base_url}", extra=("--upskill-retries", "2"))
    r = got["results"][0]
    assert r["with_skill"]["errors"] == r["baseline"]["errors"] == 1
    assert r["with_skill"]["passed"] == 3 and r["baseline"]["failed"] == 3
    assert sum(got["errors_by_model"][r["model"]].values()) == 2
    assert len(server.attempts) == 6 + 2 * 3  # the two c0 trials: three attempts each, then given up
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of alpha-facts::c0 *",
            "upskill: not scored (*): openai:m@*(after 3 attempts)*",
            "errors: openai:m@*: 2 trial(s) not scored (*)",
            "error limit: 2 unscored trial(s), --upskill-max-errors allows 0 (0): the run fails",
        ]
    )
    result.assert_outcomes(passed=3, xfailed=3, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_auth_errors_are_not_retried_and_name_the_key_variable(pytester, alpha):
    with LoopbackServer(fault=lambda n, body: Fault(401, b'{"error": {"message": "invalid x-api-key"}}')) as server:
        result, got = run(pytester, f"anthropic:m@{server.anthropic_base_url}")
    assert len(server.attempts) == 8
    assert got["errors_by_model"] == {f"anthropic:m@{server.anthropic_base_url}": {"auth": 8}}
    result.stdout.fnmatch_lines(["*: HTTP 401 (check the API key variable): invalid x-api-key"])


def test_a_request_that_outlives_the_timeout_is_a_timeout_error_and_the_session_ends(pytester, alpha):
    hang = Fault(0, delay_s=3)  # status 0: answer normally, but only after 3 s
    with LoopbackServer(fault=lambda n, body: hang if "Question 1" in json.dumps(body) else None) as server:
        result, got = run(
            pytester, f"openai:m@{server.openai_base_url}", extra=("--upskill-timeout", "0.5", "--upskill-retries", "1")
        )
    r = got["results"][0]
    assert r["with_skill"]["error_kinds"] == {"timeout": 1} and r["baseline"]["error_kinds"] == {"timeout": 1}
    assert r["with_skill"]["passed"] == 3
    result.stdout.fnmatch_lines(
        ["upskill: not scored (timeout): openai:m@*: no answer within * (--upskill-timeout) (after 2 attempts)"]
    )


def test_a_dead_model_is_all_errors_and_the_alive_models_figures_do_not_change(pytester, alpha):
    with LoopbackServer() as clean:
        _, expected = run(pytester, f"openai:alive@{clean.openai_base_url}", name="clean.json")
    dead = f"openai:dead@http://127.0.0.1:{closed_port()}/v1"
    with LoopbackServer(fault=first_attempts(RATE_LIMITED, SERVER_ERROR, GARBAGE)) as server:
        result, got = run(
            pytester, f"openai:alive@{server.openai_base_url}", dead, extra=("--upskill-concurrency", "1")
        )
    alive, gone = got["results"]
    assert figures({"results": [alive]}) == figures(expected)
    assert gone["baseline"]["errors"] == gone["with_skill"]["errors"] == 4 and gone["lift"] is None
    assert got["errors_by_model"] == {dead: {"connection": 8}}
    result.stdout.fnmatch_lines(
        [
            "upskill: not scored (connection): openai:dead@*: not sent: * trials in a row could not connect (*cannot "
            "connect*); "
            "is the server up and the base URL right?",
            f"errors: {dead}: 8 trial(s) not scored (connection 8)",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("limit, fails", [("2", False), ("1", True), ("0.25", False), ("20%", True)])
def test_max_errors_tolerates_up_to_its_count_or_fraction(pytester, alpha, limit, fails):
    broken = lambda n, body: SERVER_ERROR if "Question 3" in json.dumps(body) else None  # 2 of 8 trials
    with LoopbackServer(fault=broken) as server:
        result, got = run(
            pytester,
            f"openai:m@{server.openai_base_url}",
            extra=("--upskill-max-errors", limit, "--upskill-retries", "0"),
        )
    assert got["errors"] == 2 and got["error_limit"]["exceeded"] is fails
    result.assert_outcomes(passed=3, xfailed=3, errors=2)  # the errors are still shown as errors
    result.stdout.fnmatch_lines(
        [
            "error limit: 2 unscored trial(s), --upskill-max-errors allows *: "
            f"{'the run fails' if fails else 'tolerated'}"
        ]
    )
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if fails else pytest.ExitCode.OK)


def test_max_errors_does_not_hide_a_failing_with_skill_trial(pytester, write_skill):
    write_skill("alpha-facts", {"tests": [{"input": "q", "expected": {"contains": "absent"}}]}, body=SKILL_BODY)
    with LoopbackServer() as server:
        result, _ = run(pytester, f"openai:m@{server.openai_base_url}", extra=("--upskill-max-errors", "5"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.parametrize("value", ["-1", "1.5", "lots"])
def test_a_bad_max_errors_value_is_a_usage_error(pytester, alpha, value):
    result = pytester.runpytest(
        "skills", "--upskill-models", "openai:m@http://127.0.0.1:1/v1", "--upskill-max-errors", value
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*upskill_max_errors must be a whole number of trials (5) or a fraction below 1*"])


def test_429s_halve_the_requests_in_flight_and_the_summary_says_so(pytester, write_skill):
    write_skill(
        "alpha-facts",
        {"tests": [{"input": f"q{i}", "expected": {"contains": "zeta"}} for i in range(16)]},
        body=SKILL_BODY,
    )
    with LoopbackServer(latency_s=0.05, fault=lambda n, body: RATE_LIMITED if 8 <= n < 16 else None) as server:
        result, got = run(
            pytester,
            f"openai:m@{server.openai_base_url}",
            extra=("--upskill-concurrency", "8", "--upskill-retries", "6"),
        )
    assert got["errors"] == 0
    ((model, seen),) = got["throttling"].items()
    assert seen["throttled"] == 8 and seen["concurrency"] == 8 and 1 <= seen["lowest_concurrency"] <= 4
    result.stdout.fnmatch_lines(
        ["throttled: openai:m@* answered 429 8 time(s); requests in flight went down to * of 8*"]
    )
