"""Pass rates, the paired lift and their intervals. Pure functions, no I/O.

The **case** is the unit. Each case's runs are averaged into a per-case pass rate, and only
*paired* cases count: those with at least one scored trial in both arms. With ``n`` paired cases,

* an arm's pass rate is the mean of its per-case rates, and the lift is
  ``mean(skill rates) - mean(baseline rates)``: exact rationals, so a lift of 6/10 - 5/10 equals
  a threshold of 0.1;
* the lift's 95% interval is Newcombe's hybrid score interval for paired proportions (Newcombe
  1998, Statistics in Medicine 17:2635, method 10, with its corrected phi) computed on the
  *fractional* 2x2 table of the per-case rates: ``e = sum(s*b)`` (both pass), ``f = sum(s*(1-b))``
  (skill only), ``g = sum((1-s)*b)`` (baseline only), ``h = sum((1-s)*(1-b))`` (neither). With one
  run per case the table is the ordinary one and the interval is method 10 as published;
* a pass rate's interval is Wilson's score interval with continuity correction over the ``n``
  cases (Newcombe 1998, Statistics in Medicine 17:857, method 4).

Several runs per case make each case's rate more exact, and the interval uses that: each arm's
Wilson width is taken over its Kish effective number of units, ``n * p(1-p) / var`` of the
per-case rates (:func:`effective_n`, clipped to between the cases and the trials), and the
correlation is the per-case rates' covariance over the variances those widths imply. With one run
per case, or rates of 0 and 1 only, that is method 10 exactly; with 3 to 20 runs it is 24 to 45%
narrower than counting cases alone, and ``benchmarks/coverage.py`` measures its coverage (at least
0.94 in every cell of its grid). The pass-rate interval counts cases only.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from statistics import NormalDist
from typing import NamedTuple

Z95 = NormalDist().inv_cdf(0.975)
TOLERANCE = 1e-9  # interval bounds are irrational: a bound within this of a threshold meets it


class Level(NamedTuple):
    """A two-sided interval's level: its z and how the text names it ("95%")."""

    z: float
    label: str


LEVEL95 = Level(Z95, "95%")


def level(confidence: float) -> Level:
    """The two-sided interval of this confidence (0.95: :data:`LEVEL95`)."""
    if confidence == 0.95:
        return LEVEL95
    return Level(NormalDist().inv_cdf(0.5 + confidence / 2), f"{confidence * 100:.4g}%")


def sequential_level(look: int, looks: int, alpha: float = 0.025) -> Level:
    """The level at which look ``look`` of ``looks`` is read, so that stopping at the first look that
    decides keeps each one-sided error at most ``alpha``: look k spends ``alpha * (k³ - (k-1)³) /
    looks³`` (the Kim-DeMets power spending function, ρ = 3: little early, most at the last look),
    and the spends add up to ``alpha`` (the union bound: valid whatever the looks' correlation). One
    look is the 95% interval."""
    if looks <= 1:
        return LEVEL95
    one_sided = alpha * (look**3 - (look - 1) ** 3) / looks**3
    return Level(NormalDist().inv_cdf(1 - one_sided), f"{(1 - 2 * one_sided) * 100:.4g}%")


def rate(passed: int, scored: int) -> float | None:
    return passed / scored if scored else None


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed over ``n`` units."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_cc(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval with continuity correction (Newcombe 1998, Statistics in Medicine
    17:857, method 4) for a proportion ``p`` over ``n`` units: the pass-rate interval. The plain
    Wilson interval dips to about 93% coverage at some ``n`` (its coverage oscillates with ``n``
    and ``p``); the corrected one stays above 95% in the coverage study."""
    if n <= 0:
        return 0.0, 1.0
    q, z2 = 1 - p, z * z
    lower = (
        0.0
        if p <= 0
        else (2 * n * p + z2 - 1 - z * math.sqrt(max(0.0, z2 - 2 - 1 / n + 4 * p * (n * q + 1)))) / (2 * (n + z2))
    )
    upper = (
        1.0
        if p >= 1
        else (2 * n * p + z2 + 1 + z * math.sqrt(max(0.0, z2 + 2 - 1 / n + 4 * p * (n * q - 1)))) / (2 * (n + z2))
    )
    return max(0.0, lower), min(1.0, upper)


def corrected_phi(e: float, f: float, g: float, h: float) -> float:
    """Newcombe's phi for method 10: ``eh - fg`` less ``n/2`` when positive (not below 0); 0 when a
    margin is 0."""
    n = e + f + g + h
    margins = (e + f) * (g + h) * (e + g) * (f + h)
    if margins <= 0:
        return 0.0
    cross = e * h - f * g
    if cross > 0:
        cross = max(cross - n / 2, 0.0)
    return cross / math.sqrt(margins)


def newcombe10(e: float, f: float, g: float, h: float, z: float = Z95) -> tuple[float, float]:
    """Newcombe's method 10 interval for ``(f - g) / n`` from a (possibly fractional) paired table:
    e both pass, f first arm only, g second arm only, h neither."""
    n = e + f + g + h
    return paired_interval((e, f, g, h), n, n, z)


def effective_n(rates: Sequence[float], trials: int) -> float:
    """Kish's effective number of units of an arm: ``n * p(1-p) / var`` of its per-case rates
    (``var`` with the ``n - 1`` divisor), clipped to ``[n, trials]``. With one run per case, or
    rates of 0 and 1 only, it is ``n``; with several runs it grows as the runs make each case's
    rate more exact than a coin of the same mean, up to the ``trials`` scored."""
    n = len(rates)
    if n < 2 or trials <= n:
        return float(n)
    p = sum(rates) / n
    spread = p * (1 - p)
    var = sum((x - p) ** 2 for x in rates) / (n - 1)
    if spread <= 0:
        return float(n)
    return float(trials) if var <= spread * n / trials else min(float(trials), max(float(n), n * spread / var))


def paired_interval(
    table: tuple[float, float, float, float], n_skill: float, n_baseline: float, z: float = Z95
) -> tuple[float, float]:
    """Newcombe's method 10 for the mean difference of per-case rates from their fractional table
    (e, f, g, h), each arm's Wilson interval over its effective number of units, the correlation
    the per-case rates' covariance (with Newcombe's continuity correction) over the variances
    those widths imply. With ``n_skill = n_baseline = n`` it is :func:`newcombe10`."""
    e, f, g, h = table
    n = e + f + g + h
    p1, p2 = (e + f) / n, (e + g) / n
    l1, u1 = wilson(p1, n_skill, z)
    l2, u2 = wilson(p2, n_baseline, z)
    # corrected_phi is cov / sqrt(p1 q1 p2 q2); each arm's per-case variance is p(1-p) n / n_eff
    phi = max(-1.0, min(1.0, corrected_phi(e, f, g, h) * math.sqrt(n_skill * n_baseline) / n))
    d = p1 - p2
    lower = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def case_rate(runs: Sequence[bool]) -> Fraction:
    """A case's pass rate over its scored runs."""
    return Fraction(sum(map(bool, runs)), len(runs))


@dataclass(frozen=True)
class Paired:
    """The per-case pass rates of both arms over the paired cases (same order in both)."""

    skill: tuple[Fraction, ...]
    baseline: tuple[Fraction, ...]
    skill_trials: int = 0  # scored trials over these cases (0: one per case)
    baseline_trials: int = 0

    @property
    def n(self) -> int:
        return len(self.skill)

    @property
    def n_skill(self) -> float:
        """The with-skill arm's effective number of units (:func:`effective_n`)."""
        return effective_n([float(x) for x in self.skill], self.skill_trials or self.n)

    @property
    def n_baseline(self) -> float:
        return effective_n([float(x) for x in self.baseline], self.baseline_trials or self.n)

    @property
    def p_skill(self) -> Fraction | None:
        return sum(self.skill, Fraction(0)) / self.n if self.n else None

    @property
    def p_baseline(self) -> Fraction | None:
        return sum(self.baseline, Fraction(0)) / self.n if self.n else None

    @property
    def lift(self) -> Fraction | None:
        return self.p_skill - self.p_baseline if self.n else None  # type: ignore[operator]

    def table(self) -> tuple[float, float, float, float]:
        """The fractional 2x2 table (e, f, g, h); the ordinary one with one run per case."""
        e = sum(float(s * b) for s, b in zip(self.skill, self.baseline, strict=True))
        f = sum(float(s * (1 - b)) for s, b in zip(self.skill, self.baseline, strict=True))
        g = sum(float((1 - s) * b) for s, b in zip(self.skill, self.baseline, strict=True))
        return e, f, g, self.n - e - f - g

    def lift_ci(self, z: float = Z95) -> tuple[float, float] | None:
        """The lift's interval: :func:`paired_interval` over the arms' effective numbers of units
        (method 10 as published with one run per case)."""
        return paired_interval(self.table(), self.n_skill, self.n_baseline, z) if self.n else None

    def pass_rate_ci(self, z: float = Z95) -> tuple[float, float] | None:
        """The with-skill pass rate's interval over the paired cases (continuity-corrected Wilson
        over the cases: over the effective number of units it fell to 0.92 coverage in the study)."""
        return wilson_cc(float(self.p_skill), self.n, z) if self.n else None  # type: ignore[arg-type]


# ----------------------------------------------------------------- where an interval lies


def side(interval: tuple[float, float], threshold: float) -> int:
    """Where an interval lies against a threshold: 1 at or above it (a bound within TOLERANCE
    meets it), -1 wholly below it, 0 straddling it."""
    lo, hi = interval
    bound = threshold - TOLERANCE
    return 1 if lo >= bound else -1 if hi < bound else 0


# ----------------------------------------------------------------- power, for planning

POWER = 0.8  # the power the plan and the INCONCLUSIVE advice size runs for
POWER_REPS = 400  # simulated runs per case count (Monte Carlo SE about 2 points at 80%)


def _spread_rates(rng: random.Random, n: int, lift: float) -> tuple[list[float], list[float]]:
    """The planning scenario: every case has its own baseline rate, spread uniformly over
    (0.05, 0.95 - lift), and the skill adds ``lift`` to it (the study's "stochastic" scenario; for
    a pass rate, the with-skill rates are spread evenly around it)."""
    base = [rng.uniform(0.05, 0.95 - lift) for _ in range(n)]
    return [b + lift for b in base], base


def power(n: int, runs: int, threshold: float, truth: float, figure: str = "lift", reps: int = POWER_REPS) -> float:
    """P(a gate passes under the default rule: the 95% interval clears ``threshold``) when the
    true lift (or with-skill pass rate) is ``truth``, by simulation of the planning scenario with
    the intervals of this module. Deterministic: the seed is fixed."""
    rng = random.Random(f"{n}|{runs}|{threshold}|{truth}|{figure}")
    lift = min(truth, 0.85) if figure == "lift" else 0.0
    passed = 0
    for _ in range(reps):

        def observed(truths: list[float]) -> list[float]:
            return [sum(rng.random() < t for _ in range(runs)) / runs for t in truths]

        if figure == "lift":
            skill_truth, base_truth = _spread_rates(rng, n, lift)
            skill, base = observed(skill_truth), observed(base_truth)
            e = sum(x * y for x, y in zip(skill, base, strict=True))
            table = (e, sum(skill) - e, sum(base) - e, n - sum(skill) - sum(base) + e)
            interval = paired_interval(table, effective_n(skill, n * runs), effective_n(base, n * runs))
        else:  # the with-skill rates spread evenly around the truth; the baseline plays no part
            skill = observed([truth + rng.uniform(-1, 1) * min(truth, 1 - truth) for _ in range(n)])
            interval = wilson_cc(sum(skill) / n, n)
        passed += side(interval, threshold) == 1
    return passed / reps


@functools.lru_cache(maxsize=256)
def cases_for_power(
    threshold: float, truth: float, runs: int, figure: str = "lift", target: float = POWER
) -> int | None:
    """About how many cases give ``target`` power (:func:`power`) at ``truth``; None past 2,000."""
    if truth <= threshold:
        return None
    hi = 4
    while power(hi, runs, threshold, truth, figure) < target:
        if hi >= 2000:
            return None
        hi = min(hi * 2, 2000)
    lo = hi // 2
    while hi - lo > max(1, lo // 20):  # to about 5%
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power(mid, runs, threshold, truth, figure) >= target else (mid, hi)
    return hi


def detectable(n: int, runs: int, threshold: float, target: float = POWER) -> float | None:
    """The smallest true lift that ``n`` cases × ``runs`` pass at ``target`` power (to 0.01);
    None when not even a lift of 0.85 does."""
    if n < 1 or power(n, runs, threshold, 0.85) < target:
        return None
    lo, hi = threshold, 0.85
    while hi - lo > 0.01:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power(n, runs, threshold, mid) >= target else (mid, hi)
    return hi


# ----------------------------------------------------------------- p-values, for Holm's procedure


def one_sided_p(bound: Callable[[float], float], threshold: float) -> float:
    """The one-sided p-value of "the figure is at most ``threshold``" from a family of lower
    bounds: the smallest ``alpha`` at which ``bound(z)``, the lower end of the two-sided interval
    at ``z = z(1 - alpha)``, still clears the threshold (1 when not even ``z = 0`` clears it).
    The 95% interval's verdict PASS is ``p <= 0.025``."""
    if side((bound(0.0), 1.0), threshold) != 1:
        return 1.0
    lo, hi = 0.0, 10.0
    if side((bound(hi), 1.0), threshold) == 1:
        return 1 - NormalDist().cdf(hi)
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if side((bound(mid), 1.0), threshold) == 1 else (lo, mid)
    return 1 - NormalDist().cdf(lo)


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected at family-wise level ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


# ----------------------------------------------------------------- comparing with thresholds


def exact(value: float | int | Fraction) -> Fraction:
    """A threshold as the decimal it was written as (0.1 is 1/10, not the nearest binary float)."""
    return (
        value if isinstance(value, Fraction) else Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    )


def relative_change(before: float, after: float) -> float | None:
    return (after - before) / before if before else None
