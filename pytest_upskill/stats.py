"""Pass rates, paired lift and its interval. Pure functions, no I/O.

The lift of a skill is ``p_skill - p_baseline``, each the pass rate over the arm's *scored* trials.
Its 95% interval is Newcombe's hybrid score interval for a difference of paired proportions
(Newcombe 1998, "Improved confidence intervals for the difference between binomial proportions
based on paired data", method 10), with the **case** as the unit of pairing:

* each arm's proportion gets a Wilson score interval with ``n`` = the number of paired cases,
* the correlation between the arms is the Pearson correlation of the per-case pass rates
  (the phi coefficient when each case has one run; 0 when it is undefined),
* ``L = d - sqrt((p1-l1)^2 - 2 r (p1-l1)(u2-p2) + (u2-p2)^2)``,
  ``U = d + sqrt((u1-p1)^2 - 2 r (u1-p1)(p2-l2) + (p2-l2)^2)``.

Repeated runs of one case make that case's pass rate more precise but do not count as new cases:
a skill's lift generalises over tasks, so the interval is over cases. Unlike a t or bootstrap
interval it never collapses to a point when every case agrees (6/6 vs 6/6 gives about +-39%).
"""

from __future__ import annotations

import math
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


def rate(passed: int, scored: int) -> float | None:
    return passed / scored if scored else None


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed over ``n`` units."""
    if n <= 0:
        return 0.0, 1.0
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def pearson(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return 0.0
    return sxy / math.sqrt(sxx * syy)


def paired_lift_ci(
    skill_rates: list[float], baseline_rates: list[float], lift: float, p_skill: float, p_baseline: float, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe hybrid score interval around ``lift``; rates are per paired case (same order)."""
    n = len(skill_rates)
    if n == 0:
        return None
    l1, u1 = wilson(p_skill, n, z)
    l2, u2 = wilson(p_baseline, n, z)
    r = pearson(skill_rates, baseline_rates)
    lower = lift - math.sqrt(max(0.0, (p_skill - l1) ** 2 - 2 * r * (p_skill - l1) * (u2 - p_baseline) + (u2 - p_baseline) ** 2))
    upper = lift + math.sqrt(max(0.0, (u1 - p_skill) ** 2 - 2 * r * (u1 - p_skill) * (p_baseline - l2) + (p_baseline - l2) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def relative_change(before: float, after: float) -> float | None:
    return (after - before) / before if before else None
