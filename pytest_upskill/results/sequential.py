"""``--upskill-runs auto``: sampling until decided. A skill × model runs its cases once, then looks:
where every verdict it has is decided (a gate PASS or FAIL, a change NO WORSE or REGRESSION), it
stops; else the cases whose outcomes disagree (between the arms, or between runs) run once more, and
it looks again, up to ``--upskill-max-runs`` runs.

Stopping at the first look that decides is optional stopping, and a plain 95% interval read at every
look would pass a useless skill more often than 5%. Look k is read at the level that spends its share
of the one-sided 2.5% (:func:`stats.sequential_level`: little at the first looks, most at the last),
and the final verdict at the level of the look it stopped at, so the error stays at most 2.5%
one-sided whatever look stops it. The study (``benchmarks/sequential.py``) measures the false-pass
rate, the power and the requests against fixed runs.

Every case of an undecided skill × model runs again, not only those whose outcomes disagree: the
study found that choosing the cases by their outcomes biases the change toward 0 (a false pass of a
worse skill in 16% of runs at 50 cases, against 2.5% allowed). At temperature 0 a model gives the
same answer every time, and gets one run (trials.py), read at 95% (no look, no stopping).
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_upskill.results import gates, stats
from pytest_upskill.results.aggregate import Result
from pytest_upskill.types import Arm

# the arms that run again at a look: those a verdict reads (the controls run once)
RERUN_ARMS = (Arm.BASELINE, Arm.WITH_SKILL, Arm.PREVIOUS, Arm.TRIGGER, Arm.PREVIOUS_TRIGGER)
DEFAULT_MAX_RUNS = 4


@dataclass(frozen=True)
class Rules:
    """What a look judges, as the run's evaluation does (gates.evaluate)."""

    thresholds: gates.Thresholds
    strict: bool
    effect: float
    rule: gates.CompareRule
    against: bool  # --upskill-against: the change against the previous arm is judged
    looks: int  # --upskill-max-runs: one look after each run

    def level(self, look: int) -> stats.Level:
        return stats.sequential_level(look, self.looks)


def runs_used(result: Result) -> int:
    """How many runs the skill × model has had: the looks made so far."""
    return max((max(runs, default=0) for arms in result.cases.values() for runs in arms.values()), default=0)


def open_questions(result: Result, rules: Rules) -> list[str]:
    """The verdicts of ``result`` that its data do not decide yet at the level of its look (after
    run :func:`runs_used`), in words (empty: decided)."""
    questions = []
    level = rules.level(runs_used(result))
    own = rules.thresholds.merged(result.thresholds)
    if own.any:
        verdict = gates.verdict_for(result, own, rules.strict, rules.effect, level)
        questions += [f.figure for f in verdict.findings if f.verdict == gates.INCONCLUSIVE and f.value is not None]
    change = result.comparison(Arm.PREVIOUS) if rules.against else None
    interval = change.lift_ci(level.z) if change is not None else None
    if interval is not None:
        margin = -rules.rule.max_regression
        if stats.side(interval, margin) == 0:  # neither shown no worse than -δ nor shown worse
            questions.append("change")
        if rules.rule.min_improvement is not None and stats.side(interval, rules.rule.min_improvement) == 0:
            questions.append("improvement")
    return questions


def has_question(result: Result, rules: Rules) -> bool:
    """Whether any verdict reads this skill × model (a gate, or a change to judge)."""
    return rules.thresholds.merged(result.thresholds).any or (
        rules.against and result.comparison(Arm.PREVIOUS) is not None
    )
