"""The intervals: Newcombe's method 10 as published (corrected phi), on the paired cases' per-case
rates; exact figures; what more cases would decide. Published values from Newcombe (1998),
Statistics in Medicine 17:2635, table II; the pytester tests in test_intervals.py reproduce them
through a whole run."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pytest_upskill.results import stats

Z = 1.959963984540054


def paired(table: tuple[int, int, int, int], runs: int = 1) -> stats.Paired:
    """A Paired of one-run cases from a table (e both, f skill only, g baseline only, h neither)."""
    e, f, g, h = table
    skill = [1] * e + [1] * f + [0] * g + [0] * h
    base = [1] * e + [0] * f + [1] * g + [0] * h
    return stats.Paired(tuple(Fraction(s) for s in skill), tuple(Fraction(b) for b in base))


@pytest.mark.parametrize(
    "table, expected",
    [
        ((36, 12, 2, 0), (0.0569, 0.3404)),
        ((18, 12, 2, 18), (0.0562, 0.3290)),
        ((0, 30, 0, 0), (0.8395, 1.0000)),
        ((59, 6, 16, 80), (-0.1186, -0.0046)),
    ],
)
def test_method_10_reproduces_the_published_intervals(table, expected):
    assert stats.newcombe10(*table) == pytest.approx(expected, abs=5e-5)
    assert paired(table).lift_ci() == pytest.approx(expected, abs=5e-5)


def test_the_corrected_phi_subtracts_half_n_and_is_zero_on_an_empty_margin():
    e, f, g, h = 18, 12, 2, 18
    assert stats.corrected_phi(e, f, g, h) == pytest.approx(
        (e * h - f * g - 25) / ((e + f) * (g + h) * (e + g) * (f + h)) ** 0.5
    )
    assert stats.corrected_phi(3, 1, 1, 3) == pytest.approx((9 - 1 - 4) / 16)  # the plain phi is 0.5
    assert stats.corrected_phi(2, 1, 1, 1) == 0.0  # eh - fg = 1 < n/2: 0, not negative
    assert stats.corrected_phi(1, 2, 2, 1) == pytest.approx(-3 / 9)  # negative: not corrected
    assert stats.corrected_phi(5, 0, 0, 0) == 0.0  # a zero margin


def test_agreement_at_a_rate_between_0_and_1_does_not_collapse_the_interval():
    lo, hi = paired((5, 0, 0, 5)).lift_ci()  # 5 pass both, 5 fail both: the plain phi (1) gave [0, 0]
    assert lo < -0.15 and hi > 0.15


def test_three_discordant_cases_of_seven_do_not_claim_a_lift():
    lo, _ = paired((2, 3, 0, 2)).lift_ci()  # the plain phi gave a lower bound above 0
    assert lo < 0


def test_lift_and_rates_are_exact_fractions():
    p = paired((5, 1, 0, 4))  # 6/10 - 5/10
    assert p.lift == Fraction(1, 10) and p.lift >= stats.exact(0.1)
    assert p.p_skill == Fraction(3, 5) and p.p_baseline == Fraction(1, 2)
    assert stats.exact(0.1) == Fraction(1, 10) and stats.exact(1) == 1


def test_several_runs_use_the_fractional_table_of_per_case_rates():
    p = stats.Paired((Fraction(2, 3), Fraction(1, 1)), (Fraction(1, 3), Fraction(0, 1)))
    e = 2 / 3 * 1 / 3 + 0
    f = 2 / 3 * 2 / 3 + 1
    g = 1 / 3 * 1 / 3
    assert p.table() == pytest.approx((e, f, g, 2 - e - f - g))
    assert p.lift_ci() == pytest.approx(stats.newcombe10(e, f, g, 2 - e - f - g))
    assert p.lift == Fraction(2, 3)


def test_more_runs_of_the_same_cases_never_narrow_the_interval_below_the_cases_own():
    one_run = paired((3, 3, 1, 3))
    # the same cases, each run 20 times at the rate it showed: the per-case rates are the same
    assert stats.Paired(one_run.skill, one_run.baseline).lift_ci() == one_run.lift_ci()
    # noisier per-case rates (less agreement between the arms) widen it, never narrow it
    noisy = stats.Paired(
        tuple(Fraction(3, 4) if s else Fraction(1, 4) for s in one_run.skill),
        tuple(Fraction(3, 4) if b else Fraction(1, 4) for b in one_run.baseline),
    )
    lo, hi = noisy.lift_ci()
    assert hi - lo > one_run.lift_ci()[1] - one_run.lift_ci()[0] - 1e-9


@pytest.mark.parametrize(
    "passed, n, expected", [((15, 148, (0.0598, 0.1644))), (0, 20, (0.0, 0.2005)), (1, 29, (0.0018, 0.1963))]
)
def test_the_continuity_corrected_wilson_reproduces_newcombes_published_values(passed, n, expected):
    assert stats.wilson_cc(passed / n, n) == pytest.approx(expected, abs=5e-5)


def test_the_pass_rate_interval_is_the_corrected_wilson_over_cases():
    p = paired((3, 3, 0, 1))  # 6 of 7 cases pass with the skill
    assert p.pass_rate_ci() == stats.wilson_cc(6 / 7, 7)
    assert p.pass_rate_ci()[0] < stats.wilson(6 / 7, 7)[0]  # wider than the plain Wilson


def test_no_paired_case_gives_no_figure():
    p = stats.Paired((), ())
    assert p.lift is None and p.lift_ci() is None and p.pass_rate_ci() is None


def test_power_is_what_the_verdicts_study_measures_and_cases_for_power_reaches_80_percent():
    """Issue 30, item 5: the plan advises cases for 80% power, not for 50%."""
    assert stats.power(10, 1, 0.1, 0.1) <= 0.05  # at the threshold the default rule passes rarely
    assert stats.power(20, 5, 0.1, 0.3) > stats.power(20, 1, 0.1, 0.3) + 0.2  # runs buy power when answers vary
    needed = stats.cases_for_power(0.1, 0.3, 1)
    assert needed is not None and 50 < needed < 120
    assert stats.power(needed, 1, 0.1, 0.3) >= 0.8 > stats.power(needed // 2, 1, 0.1, 0.3)
    assert stats.cases_for_power(0.1, 0.1, 1) is None  # no power to pass a lift at the threshold
    assert stats.cases_for_power(0.6, 0.8, 1, "pass_rate") is not None


def test_with_one_run_per_case_the_runs_aware_interval_is_method_10_as_published():
    p = paired((36, 12, 2, 0))  # Newcombe 1998's example: +20% [5.69%, 34.04%]
    assert stats.Paired(p.skill, p.baseline, p.n, p.n).lift_ci() == pytest.approx((0.0569, 0.3404), abs=5e-5)
    assert p.n_skill == p.n_baseline == p.n


def test_deterministic_runs_count_as_cases_and_noisy_runs_narrow_the_interval():
    """Issue 30, item 4: several runs per case make each case's rate more exact; the arm's width is
    taken over Kish's effective number of units, clipped to between the cases and the trials."""
    zero_one = paired((3, 3, 1, 3))
    five_runs = stats.Paired(zero_one.skill, zero_one.baseline, 5 * zero_one.n, 5 * zero_one.n)
    assert five_runs.lift_ci() == zero_one.lift_ci()  # rates of 0 and 1: every run says the same
    skill = tuple(Fraction(k, 5) for k in (5, 4, 4, 3, 5, 2, 4, 5, 3, 4))
    base = tuple(Fraction(k, 5) for k in (2, 1, 3, 2, 2, 1, 0, 3, 2, 1))
    cases_only, with_runs = stats.Paired(skill, base), stats.Paired(skill, base, 50, 50)
    assert 10 < with_runs.n_skill <= 50 and 10 < with_runs.n_baseline <= 50
    lo, hi = with_runs.lift_ci()
    assert (lo, hi) == pytest.approx((0.2409, 0.5913), abs=5e-5)  # pinned: the values this method gives
    assert hi - lo < 0.75 * (cases_only.lift_ci()[1] - cases_only.lift_ci()[0])
    three_runs = stats.Paired(
        tuple(Fraction(k, 3) for k in (3, 2, 3, 1, 2, 3, 0, 3)),
        tuple(Fraction(k, 3) for k in (1, 2, 0, 1, 0, 2, 0, 1)),
        24,
        24,
    )
    assert three_runs.lift_ci() == pytest.approx((0.0631, 0.6501), abs=5e-5)  # cases only: (-0.0573, 0.6995)
    assert stats.effective_n([0.5] * 10, 50) == 50  # every case at its mean: the trials are the units
    assert stats.effective_n([0.0, 1.0] * 5, 50) == 10  # all the spread between cases: the cases are


def test_the_token_increase_is_per_trial_of_the_paired_cases_and_says_it_is_a_point_estimate():
    """Issue 30, item 7: errors and unpaired cases are left out of the token figure, as from the rates."""
    from pytest_upskill.results.aggregate import Result
    from pytest_upskill.results.gates import Finding, token_increase
    from pytest_upskill.types import Outcome

    result = Result("s", "m")
    for case, arm, passed, tokens in [
        ("a", "baseline", True, 100),
        ("a", "with_skill", True, 150),
        ("b", "baseline", False, 100),
        ("b", "with_skill", True, 150),
        ("c", "with_skill", True, 10_000),  # no baseline: unpaired
        ("b", "baseline", None, 5_000),  # an error (run 1): not scored
    ]:
        run = 1 if passed is None else 0
        result.add(Outcome("s", case, "m", arm, run, passed=passed, input_tokens=tokens))
    assert token_increase(result) == Fraction(1, 2)
    finding = Finding("token_increase", "PASS", Fraction(1, 2), None, Fraction(1), False)
    assert finding.describe() == "token_increase +50% (point estimate, no interval) vs at most +100%"
