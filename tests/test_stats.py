"""The interval of the lift: Newcombe's paired hybrid score interval, checked against values
computed by hand from its closed form, and its behaviour at the boundaries."""

from __future__ import annotations

import math

import pytest

from pytest_upskill import stats

Z = 1.959963984540054


def test_wilson_matches_its_closed_form_at_the_boundary():
    # p = 1: the lower bound is n / (n + z^2)
    assert stats.wilson(1.0, 6) == pytest.approx((6 / (6 + Z * Z), 1.0))
    assert stats.wilson(0.0, 6) == pytest.approx((0.0, Z * Z / (6 + Z * Z)))


def test_agreement_in_every_case_does_not_collapse_the_interval():
    lo, hi = stats.paired_lift_ci([1.0] * 6, [1.0] * 6, 0.0, 1.0, 1.0)
    half = 1 - 6 / (6 + Z * Z)
    assert (lo, hi) == pytest.approx((-half, half))


def test_interval_follows_newcombe_method_10_closed_form():
    # skill passes 4/6, baseline 2/6, one run per case
    skill = [1, 1, 1, 1, 0, 0]
    base = [1, 0, 1, 0, 0, 0]
    # the phi coefficient of the paired 2x2 table: a = both pass, b = skill only, c = baseline only, d = neither
    a, b, c, d_ = 2, 2, 0, 2
    r = (a * d_ - b * c) / math.sqrt((a + b) * (c + d_) * (a + c) * (b + d_))
    p1, p2, n = 4 / 6, 2 / 6, 6
    l1, u1 = stats.wilson(p1, n)
    l2, u2 = stats.wilson(p2, n)
    d = p1 - p2
    expected = (
        d - math.sqrt((p1 - l1) ** 2 - 2 * r * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 - 2 * r * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2),
    )
    assert stats.paired_lift_ci(skill, base, d, p1, p2) == pytest.approx(expected)
    assert expected[0] < d < expected[1]


def test_positive_correlation_narrows_the_interval():
    same_cases = stats.paired_lift_ci([1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0], 1 / 6, 0.5, 1 / 3)
    other_cases = stats.paired_lift_ci([1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1], 1 / 6, 0.5, 1 / 3)
    assert same_cases[1] - same_cases[0] < other_cases[1] - other_cases[0]


def test_a_large_lift_over_many_cases_clears_zero():
    lo, hi = stats.paired_lift_ci([1.0] * 30, [0.0] * 30, 1.0, 1.0, 0.0)
    assert 0.8 < lo < 1.0 and hi == 1.0


def test_no_paired_case_gives_no_interval():
    assert stats.paired_lift_ci([], [], 0.0, 0.0, 0.0) is None
