"""Gates: thresholds judged on intervals set the exit status; comparison with a stored report
names regressions; Markdown summary; audit; --upskill-changed-since; plan and budget."""

from __future__ import annotations

import json
import subprocess

import pytest

from pytest_upskill.testing import LoopbackServer

BODY = "The alpha code is ZETA-42."


def cases(n: int, text: str = "zeta-42") -> list[dict]:
    return [{"id": f"c{i}", "input": f"Question {i}?", "expected": {"contains": text}} for i in range(n)]


def run(pytester, server, *args):
    return pytester.runpytest(
        "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-report", "r.json", *args
    )


def report(pytester) -> dict:
    return json.loads((pytester.path / "r.json").read_text())


def test_min_lift_names_the_skill_below_it_and_fails_the_run(pytester, write_skill, model_server):
    write_skill("strong-skill", cases(12), body=BODY)  # lift +100% over 12 cases: interval clears 0.5
    write_skill("useless-skill", cases(12, "never-said"), body="Nothing useful.")  # lift 0: interval below 0.5
    result = run(pytester, model_server, "--upskill-min-lift", "0.5")
    result.stdout.fnmatch_lines(
        [
            "*upskill: gates*",
            "PASS         strong-skill × openai:m@*: lift +100% [[]95% CI *] vs at least +50% PASS",
            "FAIL         useless-skill × openai:m@*: lift +0% [[]95% CI -*] vs at least +50% FAIL",
            "FAILED GATE  useless-skill × openai:m@*: lift +0% *vs at least +50%",
            "exit status follows these verdicts: *",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    verdicts = {v["skill"]: v for v in report(pytester)["verdicts"]}
    assert verdicts["strong-skill"]["verdict"] == "PASS" and verdicts["useless-skill"]["verdict"] == "FAIL"


def test_with_thresholds_failed_with_skill_trials_no_longer_set_the_exit_status(pytester, write_skill, model_server):
    # 12 cases pass with the skill, 1 fails in both arms: a with-skill trial fails, the lift gate passes
    write_skill(
        "strong-skill", cases(12) + [{"id": "hard", "input": "x", "expected": {"contains": "never"}}], body=BODY
    )
    result = run(pytester, model_server, "--upskill-min-lift", "0.3")
    result.assert_outcomes(passed=12, failed=1, xfailed=13)
    assert result.ret == pytest.ExitCode.OK


def test_inconclusive_fails_by_default_and_lenient_decides_it_on_the_point_estimate(
    pytester, write_skill, model_server
):
    """Issue 30, item 3: a gate passes only what its interval shows; --upskill-lenient (the old
    default) decides an INCONCLUSIVE verdict on the point estimate, and says so."""
    write_skill("small-skill", cases(3), body=BODY)  # lift +100% over 3 cases: the interval straddles 0.8
    result = run(pytester, model_server, "--upskill-min-lift", "0.8")
    result.stdout.fnmatch_lines(
        [
            "INCONCLUSIVE small-skill × *: lift +100% *vs at least +80% INCONCLUSIVE, fails: not shown at 95%",
            "exit status follows these verdicts: PASS passes (the 95% interval clears the threshold), FAIL and "
            "INCONCLUSIVE fail*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert run(pytester, model_server, "--upskill-min-lift", "0.8", "--upskill-strict").ret == result.ret
    lenient = run(pytester, model_server, "--upskill-min-lift", "0.8", "--upskill-lenient")
    lenient.stdout.fnmatch_lines(
        [
            "INCONCLUSIVE small-skill × *: lift +100% *INCONCLUSIVE, passes on the point estimate (--upskill-lenient)",
            "exit status follows these verdicts: PASS passes, FAIL fails, INCONCLUSIVE is decided on the point "
            "estimate (--upskill-lenient*",
        ]
    )
    assert lenient.ret == pytest.ExitCode.OK
    both = run(pytester, model_server, "--upskill-min-lift", "0.8", "--upskill-lenient", "--upskill-strict")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    write_skill(
        "small-skill", cases(2) + [{"id": "c2", "input": "x", "expected": {"contains": "never"}}], body=BODY
    )  # lift 67% < 80%
    below = run(pytester, model_server, "--upskill-min-lift", "0.8", "--upskill-lenient")
    below.stdout.fnmatch_lines(["INCONCLUSIVE small-skill × *: lift +67% *", "FAILED GATE  small-skill × *"])
    assert below.ret == pytest.ExitCode.TESTS_FAILED


def test_pass_rate_and_token_thresholds_from_the_ini_and_per_skill(pytester, write_skill, model_server):
    # a skill's own threshold can only be stricter than the ini's (issue 27: a pull request cannot lower a gate)
    pytester.makeini("[pytest]\nupskill_min_pass_rate = 0.5\nupskill_max_token_increase = 5.0\n")
    write_skill("cheap-enough", {"tests": cases(12), "thresholds": {"max_token_increase": 9.0}}, body=BODY)
    meta = {"tests": cases(12), "thresholds": {"max_token_increase": 0.1}}
    write_skill("too-costly", meta, body=BODY + " " + "padding " * 50)
    result = run(pytester, model_server)
    result.stdout.fnmatch_lines(
        ["FAILED GATE  too-costly × *: token_increase +*% (point estimate, no interval) vs at most +10%"]
    )
    verdicts = {v["skill"]: v for v in report(pytester)["verdicts"]}
    assert verdicts["cheap-enough"]["verdict"] == "PASS"
    assert {f["figure"]: f["verdict"] for f in verdicts["too-costly"]["findings"]} == {
        "pass_rate": "PASS",
        "token_increase": "FAIL",
    }
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_per_skill_thresholds_reach_the_controller_under_xdist(pytester, write_skill, model_server):
    write_skill("strong-skill", {"tests": cases(12), "thresholds": {"min_lift": 0.99}}, body=BODY)
    result = run(pytester, model_server, "-n", "2", "--upskill-cache", "off")
    (verdict,) = report(pytester)["verdicts"]
    # +100% over 12 cases: the interval reaches below 99%, so the gate is not shown to pass
    assert verdict["findings"][0]["threshold"] == 0.99 and verdict["verdict"] == "INCONCLUSIVE"
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_compare_and_markdown_name_a_skill_that_lost_its_lift(pytester, write_skill, model_server):
    write_skill("alpha-facts", cases(12), body=BODY)
    run(pytester, model_server, "--upskill-report", "main.json")
    write_skill("alpha-facts", cases(12), body="The alpha code is secret.")  # the edit loses the fact
    result = run(pytester, model_server, "--upskill-compare", "main.json", "--upskill-markdown", "summary.md")
    result.stdout.fnmatch_lines(
        [
            "REGRESSION   alpha-facts × openai:m@*: with-skill pass rate on the 12 shared case(s) 100% → 0% "
            "(change -100%, 95% CI *): a drop of more than 0% is shown",
            "FLIP         alpha-facts × openai:m@*: case c0: with skill passed before, fails now (shown for review*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    md = (pytester.path / "summary.md").read_text()
    assert "| alpha-facts | openai\\:m\\@" in md  # every name escaped for Markdown
    assert "### The change, the cases that moved, the controls" in md
    shown = md.replace("\\", "")  # as Markdown renders the escaped text
    assert "**alpha-facts × openai:m@" in shown and "(REGRESSION, **fails**): with-skill pass rate" in shown
    assert "(FLIP): case c0: with skill passed before, fails now" in shown
    regressions = report(pytester)["regressions"]
    assert {(g["kind"], g["fails"]) for g in regressions} == {("change", True), ("flip", False)}


def test_an_unchanged_skill_is_no_regression(pytester, write_skill, model_server):
    write_skill("alpha-facts", cases(6), body=BODY)
    run(pytester, model_server, "--upskill-report", "main.json")
    result = run(pytester, model_server, "--upskill-compare", "main.json")
    assert [(g["kind"], g["fails"]) for g in report(pytester)["regressions"]] == [("change", False)]
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "NO REGRESSION alpha-facts × *: with-skill pass rate on the 6 shared case(s) 100% → 100% (change +0%, *): "
            "no drop of more than 0% is shown",
            "compared with main.json (--upskill-compare): no regression shown; a flipped case is listed for review "
            "and never fails the run",
        ]
    )


def test_a_broken_compare_report_is_a_usage_error(pytester, write_skill, model_server):
    write_skill("alpha-facts", cases(2), body=BODY)
    (pytester.path / "main.json").write_text("{broken")
    result = run(pytester, model_server, "--upskill-compare", "main.json")
    result.stderr.fnmatch_lines(
        ["*--upskill-compare main.json: not a report written by --upskill-report*Invalid JSON*"]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_markdown_goes_to_the_github_step_summary(pytester, write_skill, model_server, monkeypatch):
    summary = pytester.path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    write_skill("alpha-facts", cases(2), body=BODY)
    run(pytester, model_server, "--upskill-min-lift", "0.1")
    text = summary.read_text()
    assert text.startswith("earlier step\n## pytest-upskill\n")
    assert "| alpha-facts |" in text and "**INCONCLUSIVE**" in text


def test_audit_flags_cases_that_measure_nothing(pytester, write_skill, model_server):
    write_skill(
        "alpha-facts",
        [
            {"id": "useful", "input": "q", "expected": {"contains": "zeta"}},
            {"id": "baseline-only", "input": "q2", "expected": {"contains": "sure"}},
            {"id": "never", "input": "q3", "expected": {"contains": "nothing-like-this"}},
            {"id": "both", "input": "q4", "expected": {"regex": "."}},
        ],
        body=BODY,
    )
    result = run(pytester, model_server, "--upskill-runs", "2")
    result.stdout.fnmatch_lines(
        [
            "audit: alpha-facts × *: 1 case passing in both arms in every run, measuring nothing: both",
            "audit: alpha-facts × *: 1 case failing in both arms in every run, measuring nothing: never",
        ]
    )
    audit = report(pytester)["results"][0]["uninformative_cases"]
    assert [a["case"] for a in audit] == ["both", "never"]


def test_changed_since_keeps_only_skills_changed_since_the_ref(pytester, write_skill, model_server):
    write_skill("alpha-facts", cases(2), body=BODY)
    write_skill("beta-rules", cases(2), body=BODY)
    git = lambda *a: subprocess.run(["git", *a], cwd=pytester.path, check=True, capture_output=True)
    git("init", "-q")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    (pytester.path / "skills" / "beta-rules" / "SKILL.md").write_text(
        "---\nname: beta-rules\ndescription: changed.\n---\nZETA-42\n"
    )
    result = pytester.runpytest(
        "skills",
        "--collect-only",
        "-q",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "--upskill-changed-since",
        "HEAD",
    )
    result.stdout.fnmatch_lines(["skills/beta-rules/skill_meta.json::c0*", "4 tests collected*"])
    assert "alpha-facts" not in result.stdout.str()
    bad = pytester.runpytest(
        "skills",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "--upskill-changed-since",
        "no-such-ref",
    )
    bad.stderr.fnmatch_lines(["*--upskill-changed-since no-such-ref: unknown git ref 'no-such-ref'*"])


def test_plan_prints_requests_tokens_and_cost_without_calling(pytester, write_skill, model_server):
    write_skill("alpha-facts", cases(4), body=BODY)
    (pytester.path / "pyproject.toml").write_text(
        f'[tool.upskill.models.priced]\nprovider = "openai"\nmodel = "m"\nbase_url = "{model_server.openai_base_url}"\n'
        "max_tokens = 100\ninput_price = 1.0\noutput_price = 10.0\n"
    )
    for xdist in ([], ["-n", "2"]):  # under xdist too: the plan is made where the items are
        result = pytester.runpytest("skills", "--upskill-models", "priced", "--upskill-plan", *xdist)
        result.stdout.fnmatch_lines(["*upskill plan*", "priced * 8 * 8 * 800 *$0.008*", "nothing was sent*"])
        assert result.ret == pytest.ExitCode.OK
    assert model_server.requests == []


def test_max_cost_stops_sending_and_keeps_what_finished(pytester, write_skill):
    write_skill("alpha-facts", cases(10), body=BODY)
    with LoopbackServer() as server:
        (pytester.path / "pyproject.toml").write_text(
            f'[tool.upskill.models.priced]\nprovider = "openai"\nmodel = "m"\nbase_url = "{server.openai_base_url}"\n'
            "max_tokens = 1000\ninput_price = 0\noutput_price = 100000.0\n"  # $0.1 per output token
        )
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            "priced",
            "--upskill-max-cost",
            "3",
            "--upskill-concurrency",
            "1",
            "--upskill-report",
            "r.json",
        )
        sent = len(server.requests)
    data = report(pytester)
    assert 0 < sent < 20
    assert data["errors"] == 20 - sent and data["budget"]["not_sent"] == 20 - sent
    assert data["results"][0]["with_skill"]["error_kinds"] == {
        "over_budget": data["results"][0]["with_skill"]["errors"]
    }
    result.stdout.fnmatch_lines(
        ["budget: stopped sending at $* spent of $3; * trial(s) not sent*finished trials are kept"]
    )
    assert data["budget"]["spent"] >= 3


def test_a_broken_skill_fails_a_gated_run_even_when_the_others_pass(pytester, write_skill, model_server):
    write_skill("strong-skill", cases(12), body=BODY)
    write_skill("broken-skill", "{not json")
    result = run(pytester, model_server, "--upskill-min-lift", "0.3", "--continue-on-collection-errors")
    result.stdout.fnmatch_lines(["PASS         strong-skill × *"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
