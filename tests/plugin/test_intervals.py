"""Honest intervals through a whole run: the published method-10 values in the summary and the
JSON report, lift and rates over paired cases only, exact thresholds, what an INCONCLUSIVE verdict
was decided on and what would decide it, and the plan's smallest resolvable lift."""

from __future__ import annotations

import json

import pytest

from pytest_upskill.testing import Fault, LoopbackServer


def table_reply(system: str, user: str) -> str:
    """Each case's input names its cell of the paired table: both / skill / baseline / neither pass."""
    cell = user.split("cell=", 1)[1].split()[0]
    with_skill = "<skill" in system
    passes = cell == "both" or (cell == "skill" and with_skill) or (cell == "baseline" and not with_skill)
    return "PASS" if passes else "no"


def table_cases(e: int, f: int, g: int, h: int) -> list[dict]:
    cells = ["both"] * e + ["skill"] * f + ["baseline"] * g + ["neither"] * h
    return [
        {"id": f"c{i}", "input": f"cell={cell} question {i}", "expected": {"contains": "PASS"}}
        for i, cell in enumerate(cells)
    ]


def run(pytester, server, *args):
    return pytester.runpytest(
        "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-report", "r.json", *args
    )


def report(pytester) -> dict:
    return json.loads((pytester.path / "r.json").read_text())


@pytest.mark.parametrize(
    "table, shown, expected",
    [
        ((36, 12, 2, 0), "lift +20% [[]95% CI +6%, +34%[]]", (0.0569, 0.3404)),
        ((18, 12, 2, 18), "lift +20% [[]95% CI +6%, +33%[]]", (0.0562, 0.3290)),
    ],
)
def test_a_run_reproduces_newcombes_published_intervals(pytester, write_skill, table, shown, expected):
    write_skill("tabled", table_cases(*table), body="Answer.")
    with LoopbackServer(reply=table_reply) as server:
        result = run(pytester, server)
    result.stdout.fnmatch_lines(
        [f"  with skill  *{shown}", "*Newcombe's paired score interval (method 10) over cases*"]
    )
    r = report(pytester)["results"][0]
    assert r["lift_ci"] == pytest.approx(expected, abs=5e-5)
    assert r["paired_cases"] == sum(table) and r["lift"] == pytest.approx(0.2)


def test_agreeing_cases_do_not_collapse_the_interval_in_a_run(pytester, write_skill):
    write_skill("tabled", table_cases(5, 0, 0, 5), body="Answer.")  # the plain phi reported [+0%, +0%]
    with LoopbackServer(reply=table_reply) as server:
        run(pytester, server)
    lo, hi = report(pytester)["results"][0]["lift_ci"]
    assert lo < -0.15 and hi > 0.15


def test_a_case_scored_in_one_arm_only_is_left_out_of_the_lift_and_named(pytester, write_skill):
    # 4 cases fail in both arms; a fifth passes with the skill but its baseline always errors (HTTP 400)
    write_skill(
        "tabled",
        table_cases(0, 0, 0, 4) + [{"id": "lonely", "input": "cell=skill lonely", "expected": {"contains": "PASS"}}],
        body="Answer.",
    )
    bad = lambda n, body: (
        Fault(400, b'{"error": {"message": "bad"}}')
        if "lonely" in json.dumps(body) and "<skill" not in json.dumps(body)
        else None
    )
    with LoopbackServer(reply=table_reply, fault=bad) as server:
        result = run(pytester, server, "--upskill-max-errors", "1")
    result.stdout.fnmatch_lines(
        [
            "  baseline    *0/4 *0%",
            "  with skill  *0/4 *0%  lift +0% *",
            "  unpaired    1 case not scored in both arms, left out of the rates and the lift: lonely (baseline never "
            "scored (1 error))",
        ]
    )
    r = report(pytester)["results"][0]
    assert (
        r["lift"] == 0 and r["with_skill"]["pass_rate"] == 0 and r["paired_cases"] == 4
    )  # pooled over trials it was +20%
    assert r["unpaired_cases"] == [{"case": "lonely", "why": "baseline never scored (1 error)"}]
    assert r["with_skill"]["passed"] == 1 and r["with_skill"]["paired"] == {"passed": 0, "scored": 4}
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the trials themselves: 1 with-skill pass, 4 fails


def test_a_one_arm_selection_pairs_no_case_and_says_so(pytester, write_skill):
    write_skill("tabled", table_cases(1, 1, 0, 0), body="Answer.")
    with LoopbackServer(reply=table_reply) as server:
        result = run(pytester, server, "-k", "with_skill")
    # issue 14, item 11: not "(2 cases × 0 runs)" nor "tokens 378 → 0 (−100%)"
    result.stdout.fnmatch_lines(
        [
            "tabled × *  (2 cases × 1 run)",
            "  with skill  2/2 passed; the other arm was not run (deselected), so there is no lift",
            "  tokens      in 38   out 2 (with skill only)",
        ]
    )
    assert "→" not in result.stdout.str().split("upskill: lift per skill")[1].split("rates and lift")[0]
    r = report(pytester)["results"][0]
    assert r["lift"] is None and [c["why"] for c in r["unpaired_cases"]] == ["baseline not run"] * 2


def test_several_runs_average_each_case_and_count_cases(pytester, write_skill):
    from fractions import Fraction

    from pytest_upskill.results import stats

    write_skill("tabled", table_cases(2, 3, 1, 2), body="Answer.")
    with LoopbackServer(reply=table_reply) as server:
        result = run(pytester, server, "--upskill-runs", "3")
    result.stdout.fnmatch_lines(["tabled × *(8 cases × 3 runs)", "  with skill  *15/24 *62%  lift +25% *"])
    r = report(pytester)["results"][0]
    one_run = stats.Paired(
        tuple(map(Fraction, [1, 1, 1, 1, 1, 0, 0, 0])), tuple(map(Fraction, [1, 1, 0, 0, 0, 1, 0, 0]))
    )
    assert r["lift_ci"] == pytest.approx(
        list(one_run.lift_ci())
    )  # deterministic runs: the cases' own interval, not 3x narrower


def test_a_lift_exactly_at_the_threshold_meets_it(pytester, write_skill):
    write_skill("tabled", table_cases(5, 1, 0, 4), body="Answer.")  # 6/10 - 5/10: 0.0999... in floating point
    with LoopbackServer(reply=table_reply) as server:
        result = run(pytester, server, "--upskill-min-lift", "0.1", "--upskill-lenient")
    result.stdout.fnmatch_lines(
        [
            "INCONCLUSIVE tabled × *: lift +10% [[]95% CI *] vs at least +10% INCONCLUSIVE, passes on the point "
            "estimate (--upskill-lenient)",
            "             lift: the 95% interval straddles the threshold and the point estimate is at or above it "
            "(without --upskill-lenient it fails); now 10 cases; about * cases × 1 run give 80% power*",
            "exit status follows these verdicts: PASS passes, FAIL fails, INCONCLUSIVE is decided on the point "
            "estimate*",
        ]
    )
    assert result.ret == pytest.ExitCode.OK
    finding = report(pytester)["verdicts"][0]["findings"][0]
    assert finding["decided_on"] == "point estimate" and finding["fails"] is False and finding["cases"] == 10


def test_an_inconclusive_verdict_says_how_many_cases_would_decide_it(pytester, write_skill):
    write_skill("tabled", table_cases(2, 2, 0, 2), body="Answer.")  # +33% over 6 cases
    with LoopbackServer(reply=table_reply) as server:
        result = run(pytester, server, "--upskill-min-lift", "0.5")
    result.stdout.fnmatch_lines(
        [
            "INCONCLUSIVE tabled × *: lift +33% *vs at least +50% INCONCLUSIVE, fails: not shown at 95%",
            "             lift: the 95% interval straddles the threshold; now 6 cases; about * cases × 1 run give 80% "
            "power to pass at a true lift of +70% (the threshold + --upskill-effect 0.2), or about * × 3 runs if "
            "answers vary from run to run",
            "FAILED GATE  tabled × *: lift +33% *vs at least +50% (INCONCLUSIVE, fails: not shown at 95%)",
        ]
    )
    finding = report(pytester)["verdicts"][0]["findings"][0]
    from pytest_upskill.results import stats

    assert finding["cases_needed"] == stats.cases_for_power(0.5, 0.7, 1) and finding["cases_needed"] > 6
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_the_plan_prints_the_power_of_these_cases_and_the_cases_for_80_percent(pytester, write_skill):
    write_skill("tabled", table_cases(2, 3, 0, 2), body="Answer.")
    with LoopbackServer(reply=table_reply) as server:
        result = run(pytester, server, "--upskill-plan", "--upskill-runs", "2")
        assert not server.requests
    result.stdout.fnmatch_lines(
        [
            "power: tabled: 7 cases × 2 runs: a true lift of +20% passes a lift gate at +0% *% of the time; about * "
            "cases × 2 runs give 80% power to pass at a true lift of +20% (the threshold + --upskill-effect 0.2) "
            "(simulated: cases' rates spread over (0, 1))",
            "note: openai:m@* answer at temperature 0: where that makes the answers the same every time, runs after "
            "the first repeat them, multiplying the cost and buying no precision*",
        ]
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--upskill-min-lift", "nan"], "upskill_min_lift must be a finite number"),
        (["--upskill-min-pass-rate", "inf"], "upskill_min_pass_rate must be a finite number"),
    ],
)
def test_a_threshold_that_is_not_a_finite_number_is_a_usage_error(pytester, write_skill, args, message):
    write_skill("tabled", table_cases(1, 0, 0, 0), body="Answer.")
    result = pytester.runpytest("skills", "--upskill-models", "openai:m@http://127.0.0.1:9/v1", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_a_nan_threshold_in_skill_meta_is_a_collection_error(pytester, write_skill):
    write_skill("tabled", '{"tests": [{"input": "x", "expected": {"contains": "y"}}], "thresholds": {"min_lift": NaN}}')
    result = pytester.runpytest("skills", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*threshold 'min_lift' must be a finite number, not NaN*"])


def test_a_pass_rate_gate_uses_the_corrected_wilson_over_paired_cases(pytester, write_skill):
    write_skill("tabled", table_cases(3, 1, 0, 2), body="Answer.")  # 4 of 6 cases pass with the skill
    with LoopbackServer(reply=table_reply) as server:
        result = run(pytester, server, "--upskill-min-pass-rate", "0.6", "--upskill-lenient")
    result.stdout.fnmatch_lines(
        [
            "INCONCLUSIVE tabled × *: pass_rate 67% [[]95% CI *] vs at least 60% INCONCLUSIVE, passes on the point "
            "estimate (--upskill-lenient)",
            "             pass_rate: *the point estimate is at or above it*; now 6 cases; about * cases × 1 run give "
            "80% power to pass at a true pass rate of 80% (the threshold + --upskill-effect 0.2)",
        ]
    )
    from pytest_upskill.results import stats

    finding = report(pytester)["verdicts"][0]["findings"][0]
    assert finding["interval"] == pytest.approx(list(stats.wilson_cc(4 / 6, 6)))
    assert finding["cases_needed"] == stats.cases_for_power(0.6, 0.8, 1, "pass_rate")
    assert result.ret == pytest.ExitCode.OK


def test_holm_holds_back_a_pass_that_does_not_hold_for_the_family(pytester, write_skill):
    """Issue 30: many gates at once. Two skills each pass +60% over 5 cases alone (one-sided p
    0.019); under --upskill-family holm neither clears 0.0125, so both are held back."""
    for name in ("alpha", "beta"):
        write_skill(name, table_cases(0, 3, 0, 2), body="Answer.")
    with LoopbackServer(reply=table_reply) as server:
        alone = run(pytester, server, "--upskill-min-lift", "0")
        family = run(pytester, server, "--upskill-min-lift", "0", "--upskill-family", "holm")
    alone.stdout.fnmatch_lines(
        [
            "PASS         alpha × *: lift +60% *",
            "PASS         beta × *: lift +60% *",
            "many gates: no adjustment over the 2 lift and pass-rate gate(s): exit status 0 claims every gate at once*",
        ]
    )
    assert alone.ret == pytest.ExitCode.OK
    family.stdout.fnmatch_lines(
        [
            "INCONCLUSIVE alpha × *: lift +60% *INCONCLUSIVE, fails: not shown at the Holm level",
            "             lift: its 95% interval clears the threshold, but not at the Holm level for 2 gates "
            "(--upskill-family holm; one-sided p = 0.0191)",
            "many gates: Holm's procedure over the 2 lift and pass-rate gate(s)*",
        ]
    )
    assert family.ret == pytest.ExitCode.TESTS_FAILED
    finding = report(pytester)["verdicts"][0]["findings"][0]
    assert finding["held_back"] == 2 and finding["p_value"] == pytest.approx(0.0191, abs=1e-4)
