"""Running trials against loopback servers driven by the real SDKs: outcomes, exit status, the
JSON report, JUnit properties, identical arms, concurrency and -n."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_upskill.testing import Fault, LoopbackServer

SKILL_BODY = "The alpha code is ZETA-42. Always sign answers with ~alpha."
CASES = [
    {"id": "code", "input": "What is the alpha code?", "expected": {"contains": "zeta-42"}},
    {"id": "sign", "input": "Sign this.", "expected": {"contains": ["~ALPHA", "skill"]}},
    {"id": "both", "input": "Be unsure.", "expected": {"contains": "not sure"}},
]


@pytest.fixture
def alpha(write_skill):
    return write_skill("alpha-facts", {"tests": CASES}, body=SKILL_BODY)


def models(server) -> list[str]:
    return [
        "--upskill-models",
        f"openai:m@{server.openai_base_url}",
        "--upskill-models",
        f"anthropic:c@{server.anthropic_base_url}",
    ]


def report(pytester, name="r.json") -> dict:
    return json.loads((pytester.path / name).read_text())


def test_lift_is_reported_per_skill_and_model_with_exact_counts(pytester, alpha, model_server):
    result = pytester.runpytest("skills", *models(model_server), "--upskill-report", "r.json")
    # with_skill fails "both" (the skill answer is not unsure) -> 2/3; baseline passes only "both" -> 1/3
    result.stdout.fnmatch_lines(
        [
            "*upskill: lift per skill × model*",
            "alpha-facts × openai:m@http://127.0.0.1:*/v1  (3 cases × 1 run)",
            "  baseline    ███████░░░░░░░░░░░░░    1/3     33%",
            "  with skill  █████████████░░░░░░░    2/3     67%  lift +33% [[]95% CI *]",
            "alpha-facts × anthropic:c@http://127.0.0.1:*  (3 cases × 1 run)",
            "*2 skill × model result(s); every trial scored*",
        ]
    )
    data = report(pytester)
    assert [(r["skill"], r["model"]) for r in data["results"]] == [
        ("alpha-facts", f"openai:m@{model_server.openai_base_url}"),
        ("alpha-facts", f"anthropic:c@{model_server.anthropic_base_url}"),
    ]
    for r in data["results"]:
        assert {k: r["baseline"][k] for k in ("passed", "failed", "errors", "total")} == {
            "passed": 1,
            "failed": 2,
            "errors": 0,
            "total": 3,
        }
        assert {k: r["with_skill"][k] for k in ("passed", "failed", "errors", "total")} == {
            "passed": 2,
            "failed": 1,
            "errors": 0,
            "total": 3,
        }
        assert r["lift"] == pytest.approx(1 / 3)
        lo, hi = r["lift_ci"]
        assert -1 <= lo < 1 / 3 < hi <= 1
    # one with_skill trial failed per model -> the run fails; baseline failures are xfailed
    result.assert_outcomes(passed=6, failed=2, xfailed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_token_totals_equal_what_the_server_counted(pytester, alpha, model_server):
    pytester.runpytest("skills", *models(model_server), "--upskill-report", "r.json")
    data = report(pytester)
    assert (
        sum(r[arm]["input_tokens"] for r in data["results"] for arm in ("baseline", "with_skill"))
        == model_server.input_tokens
    )
    assert (
        sum(r[arm]["output_tokens"] for r in data["results"] for arm in ("baseline", "with_skill"))
        == model_server.output_tokens
    )
    r = data["results"][0]
    assert r["token_delta"]["input_tokens"] == r["with_skill"]["input_tokens"] - r["baseline"]["input_tokens"] > 0


def test_baseline_failures_never_fail_the_run(pytester, write_skill, model_server):
    write_skill("alpha-facts", [{"input": "x", "expected": {"contains": "zeta-42"}}], body=SKILL_BODY)
    result = pytester.runpytest("skills", *models(model_server), "-rx")
    result.assert_outcomes(passed=2, xfailed=2)
    result.stdout.fnmatch_lines(["XFAIL *baseline failed (a point of comparison, never fails the run)*"])
    assert result.ret == pytest.ExitCode.OK


def test_a_failing_with_skill_trial_shows_the_check_and_the_output(pytester, write_skill, model_server):
    write_skill(
        "alpha-facts", [{"id": "miss", "input": "x", "expected": {"contains": ["zeta-42", "omega"]}}], body=SKILL_BODY
    )
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.stdout.fnmatch_lines(
        [
            "*alpha-facts::miss [[]openai:m@* with_skill run 1[]]*",
            "contains: missing (case-insensitive): ['omega']",
            "--- output (openai:m@*, with_skill) ---",
            "Following the skill: The alpha code is ZETA-42.*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_both_arms_send_identical_requests_except_the_skill_block(pytester, alpha, model_server):
    pytester.runpytest("skills", *models(model_server))
    block = f'\n\n<skill name="alpha-facts">\n{SKILL_BODY}\n</skill>'
    for protocol in ("openai", "anthropic"):
        bodies = [r.body for r in model_server.requests if r.protocol == protocol]
        assert len(bodies) == 6
        with_skill = [b for b in bodies if "<skill" in json.dumps(b)]
        baseline = [b for b in bodies if "<skill" not in json.dumps(b)]
        assert len(with_skill) == len(baseline) == 3
        for b in baseline:
            twin = next(w for w in with_skill if _user(w, protocol) == _user(b, protocol))
            # remove exactly one skill block from the with-skill request: what is left is byte-identical
            stripped = json.loads(json.dumps(twin).replace(json.dumps(block)[1:-1], "", 1))
            assert stripped == b


def _user(body: dict, protocol: str) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][0]


def test_context_files_are_appended_to_the_user_message_as_upskill_does(pytester, write_skill, model_server):
    case = {
        "input": "Fix it.",
        "context": {"files": {"a.py": "x = 1", "b.toml": "[t]"}},
        "expected": {"contains": "zeta"},
    }
    write_skill("alpha-facts", [case], body=SKILL_BODY)
    pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    assert {_user(r.body, "openai") for r in model_server.requests} == {
        "Fix it.\n\n```a.py\nx = 1\n```\n\n```b.toml\n[t]\n```"
    }


def test_junit_has_trial_properties_and_suite_lift(pytester, alpha, model_server):
    pytester.runpytest("skills", *models(model_server), "--junitxml=out.xml", "--upskill-report", "r.json")
    tree = ET.parse(pytester.path / "out.xml")
    cases = tree.findall(".//testcase")
    assert len(cases) == 12
    first = {p.get("name"): p.get("value") for p in cases[0].findall("properties/property")}
    for name in ("skill", "model", "arm", "run", "passed", "input_tokens", "output_tokens", "latency_s"):
        assert "upskill." + name in first
    assert first["upskill.skill"] == "alpha-facts" and first["upskill.run"] == "1"
    per_trial_tokens = sum(
        int(dict((p.get("name"), p.get("value")) for p in c.findall("properties/property"))["upskill.input_tokens"])
        for c in cases
    )
    assert per_trial_tokens == model_server.input_tokens
    suite = {p.get("name"): p.get("value") for p in tree.findall(".//testsuite/properties/property")}
    model = f"openai:m@{model_server.openai_base_url}"
    r = report(pytester)["results"][0]
    assert suite[f"upskill.alpha-facts.{model}.lift"] == f"{r['lift']:.4f}"
    assert suite[f"upskill.alpha-facts.{model}.input_tokens_delta"] == str(r["token_delta"]["input_tokens"])


def without_prompt_cache(data: dict) -> None:
    """Drop the prompt-cache figures of a report: which request wrote a prefix and which read it
    depends on what the server cached before and on the order the requests arrived in."""
    for result in data["results"]:
        for arm in ("baseline", "with_skill"):
            result[arm].pop("prompt_cache", None)
        for case in result["cases"]:
            for trial in case["trials"]:
                trial.pop("cache_read_tokens"), trial.pop("cache_write_tokens")


def test_xdist_gives_the_same_report_as_a_plain_run(pytester, alpha, write_skill, model_server):
    write_skill(
        "beta-rules", [{"input": f"q{i}", "expected": {"contains": "following"}} for i in range(5)], body="Rule."
    )
    args = ["skills", *models(model_server), "--upskill-runs", "2", "--upskill-cache", "off"]
    plain = pytester.runpytest(*args, "--upskill-report", "plain.json", "--junitxml=plain.xml")
    distributed = pytester.runpytest(*args, "-n", "2", "--upskill-report", "xdist.json", "--junitxml=xdist.xml")
    # how the bound on requests in flight moved depends on the machine's timing, not on the results,
    # and the run's time is when it ran
    plain_report, xdist_report = report(pytester, "plain.json"), report(pytester, "xdist.json")
    plain_report.pop("throttling"), xdist_report.pop("throttling")
    # nor what the server had in its prompt cache (the first run left the prefixes there)
    without_prompt_cache(plain_report), without_prompt_cache(xdist_report)
    assert plain_report.pop("run")["settings"] == xdist_report.pop("run")["settings"]
    assert plain_report == xdist_report
    assert plain.parseoutcomes() == {k: v for k, v in distributed.parseoutcomes().items()}
    suite = lambda name: {
        p.get("name"): p.get("value")
        for p in ET.parse(pytester.path / name).findall(".//testsuite/properties/property")
    }
    assert suite("plain.xml") == suite("xdist.xml") != {}


def test_runs_repeat_every_trial(pytester, alpha, model_server):
    pytester.runpytest(
        "skills",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "--upskill-runs",
        "4",
        "--upskill-report",
        "r.json",
    )
    r = report(pytester)["results"][0]
    assert r["baseline"]["total"] == r["with_skill"]["total"] == 12
    assert len(model_server.requests) == 24
    assert all(len(c["with_skill"]) == 4 for c in r["cases"])


def test_a_plain_run_keeps_requests_in_flight_up_to_the_concurrency_bound(pytester, write_skill):
    write_skill(
        "alpha-facts", [{"input": f"q{i}", "expected": {"contains": "zeta"}} for i in range(8)], body=SKILL_BODY
    )
    with LoopbackServer(latency_s=0.3) as server:
        pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-concurrency", "6"
        )
        assert server.max_in_flight == 6
    with LoopbackServer(latency_s=0.05) as server:
        pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-concurrency", "1"
        )
        assert server.max_in_flight == 1


def test_an_unscorable_trial_is_an_error_left_out_of_the_rates(pytester, alpha):
    # every request for the "code" case gets HTTP 400: not retried, recorded as an error
    bad = lambda n, body: (
        Fault(400, b'{"error": {"message": "bad"}}') if "What is the alpha code" in json.dumps(body) else None
    )
    with LoopbackServer(fault=bad) as server:
        result = pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-report", "r.json"
        )
    r = report(pytester)["results"][0]
    assert r["with_skill"] == {**r["with_skill"], "passed": 1, "failed": 1, "errors": 1, "total": 3, "pass_rate": 0.5}
    assert r["baseline"]["errors"] == 1 and r["baseline"]["pass_rate"] == 0.5
    assert r["with_skill"]["error_kinds"] == {"bad_request": 1}
    assert r["lift"] == 0.0
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of alpha-facts::code [[]openai:m@* baseline run 1[]]*",
            "upskill: not scored (bad_request): openai:m@*: HTTP 400 (check the model name and parameters)*",
            "  errors      2 trial(s) not scored, left out of the rates: bad_request 2",
        ]
    )
    result.assert_outcomes(passed=2, failed=1, xfailed=1, errors=2)
