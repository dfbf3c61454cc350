"""Verdicts: thresholds judged on 95% intervals, and regressions against a stored report.

Thresholds (``--upskill-min-lift``, ``--upskill-min-pass-rate``, ``--upskill-max-token-increase``)
give each skill x model a verdict per figure:

* PASS: the whole 95% interval is on the right side of the threshold,
* FAIL: the whole interval is on the wrong side,
* INCONCLUSIVE: the interval straddles it, and that fails the gate: a gate passes only what the
  interval shows, so a skill whose true lift is at the threshold passes at most about 2.5% of the
  time (``benchmarks/verdicts.py`` measures every rule's error rates). ``--upskill-lenient``
  (``strict=False`` here) decides it on the point estimate instead: it fails below the threshold
  and passes otherwise, so a useless skill passes up to 40% of the time at 10 cases. The summary
  says which rule is in force and, for each INCONCLUSIVE verdict, how many cases give 80% power
  at the threshold + ``--upskill-effect`` (``stats.cases_for_power``).

Figures and thresholds compare exactly: a lift or pass rate is a ratio of counts (a Fraction), a
threshold the decimal it was written as, and an interval bound within ``stats.TOLERANCE`` of a
threshold meets it. The token increase (tokens per scored trial of the paired cases, with the skill
against without) is judged on its value alone: a point estimate, said as such, with no interval.

A comparison with the report of an earlier run (the pull request's check) is one paired
experiment per skill x model: the with-skill pass rate of the new run against the old one on the
cases both scored, per case (the baseline, replayed from the cache, is the same in both and
cancels), with the runs-aware interval of ``stats``. The change fails the run when its interval
lies wholly below ``-max_regression`` (a drop beyond the margin is shown), and, where the pull
request claims an improvement (``min_improvement``), when its interval does not lie wholly above
the claim. Cases whose with-skill majority flipped are listed for the reviewer and never fail the
run on their own; with-skill tokens per trial that grew by more than the token threshold fail it.
An old report without per-case results falls back to the two lifts' MOVER interval (Zou & Donner
2008), saying so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from typing import Any

from pytest_upskill.engine.arms import ARMS
from pytest_upskill.results import stats
from pytest_upskill.results.aggregate import Result
from pytest_upskill.results.report import FindingReport, RegressionReport, Report, ResultReport, VerdictReport
from pytest_upskill.skills.skill_md import THRESHOLD_KEYS
from pytest_upskill.types import Arm, Family

PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
NOT_EVALUATED = "NOT EVALUATED"  # a gate was set, and no trial of the skill × model was scored: never green
DEFAULT_TOKEN_GROWTH = 0.25  # for --upskill-compare when no --upskill-max-token-increase is set
DEFAULT_EFFECT = 0.2  # --upskill-effect: the true margin above a threshold the plan sizes runs for


@dataclass(frozen=True)
class Thresholds:
    min_lift: float | None = None
    min_pass_rate: float | None = None
    max_token_increase: float | None = None
    min_trigger_recall: float | None = None
    max_false_trigger: float | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def merged(self, own: dict[str, Any] | None) -> Thresholds:
        """These gates (the command line's and the ini's) with a skill's own from its
        ``skill_meta.json`` (or a shard's report): the stricter of the two for each, so what the CI
        sets is a floor that a file of a pull request can only raise. A value that is not a finite
        number is left out."""
        stricter: dict[str, float] = {}
        for key, value in (own or {}).items():
            if key not in THRESHOLD_KEYS or not isinstance(value, int | float) or not math.isfinite(value):
                continue
            current = getattr(self, key)
            pick = min if key.startswith("max_") else max
            stricter[key] = float(value) if current is None else pick(current, float(value))
        return replace(self, **stricter)


assert tuple(f.name for f in fields(Thresholds)) == THRESHOLD_KEYS  # the names skill_meta.json and the options use


RATES = ("pass_rate", "trigger_recall", "false_trigger")  # figures that are rates, shown without a sign
MAXIMA = ("token_increase", "false_trigger")  # figures a gate holds below a threshold
# what the power advice calls a figure (false triggers are sized on the right decisions on near misses)
_POWER_WORDS = {"trigger_recall": "trigger recall", "false_trigger": "rate of right decisions on near misses"}


@dataclass
class Finding:
    figure: str  # "lift", "pass_rate", "token_increase", "trigger_recall", "false_trigger"
    verdict: str
    value: Fraction | None  # exact: a ratio of counts
    interval: tuple[float, float] | None
    threshold: Fraction  # exact: the decimal as written
    fails: bool
    cases: int = 0  # the paired cases the figure is measured on
    cases_needed: int | None = None  # INCONCLUSIVE: cases for 80% power at threshold + effect (None: over 2,000)
    p_value: float | None = None  # one-sided, of "the figure is at most the threshold" (lift, pass rate)
    held_back: int = 0  # PASS on its own, not at the Holm level of a family of this many gates
    advice: str = ""  # INCONCLUSIVE: what would decide it, at 80% power
    level: str = "95%"  # the interval's level (wider under --upskill-runs auto: stats.sequential_level)

    def describe(self) -> str:
        value = (
            "not measured"
            if self.value is None
            else f"{float(self.value) * 100:.0f}%"
            if self.figure in RATES
            else f"{float(self.value) * 100:+.0f}%"
        )
        ci = (
            f" [{self.level} CI {self.interval[0] * 100:+.0f}%, {self.interval[1] * 100:+.0f}%]"
            if self.interval
            else ""
        )
        if self.figure == "token_increase" and self.value is not None:
            ci = " (point estimate, no interval)"
        side = "at most" if self.figure in MAXIMA else "at least"
        threshold = (
            f"{float(self.threshold) * 100:.0f}%" if self.figure in RATES else f"{float(self.threshold) * 100:+.0f}%"
        )
        return f"{self.figure} {value}{ci} vs {side} {threshold}"

    def label(self, strict: bool) -> str:
        """The verdict and, for an INCONCLUSIVE one, what it was decided as: the words every line uses."""
        if self.verdict != INCONCLUSIVE:
            return self.verdict
        if self.value is None:
            return "INCONCLUSIVE, not measured: fails"
        if self.held_back and (strict or self.fails):
            return "INCONCLUSIVE, fails: not shown at the Holm level"
        if strict:
            return f"INCONCLUSIVE, fails: not shown at {self.level}"
        return f"INCONCLUSIVE, {'fails' if self.fails else 'passes'} on the point estimate (--upskill-lenient)"

    def why(self, strict: bool) -> str:
        """For an INCONCLUSIVE verdict: why it is, and what would decide it."""
        if self.verdict != INCONCLUSIVE:
            return ""
        if self.value is None:
            return {
                "trigger_recall": "no should-trigger case was scored",
                "false_trigger": "no should-not-trigger case (near miss) was scored",
            }.get(self.figure, "no case was scored in both arms")
        if self.held_back:
            return (
                f"its 95% interval clears the threshold, but not at the Holm level for {self.held_back} gates "
                f"(--upskill-family holm; one-sided p = {self.p_value:.4f})"
            )
        if strict:
            how = f"the {self.level} interval straddles the threshold"
        else:
            side = (
                ("at or below" if self.value <= self.threshold else "above")
                if self.figure in MAXIMA
                else ("at or above" if self.value >= self.threshold else "below")
            )
            how = f"the {self.level} interval straddles the threshold and the point estimate is {side} it"
            how += " (without --upskill-lenient it fails)" if not self.fails else ""
        more = f"now {self.cases} case{'s' if self.cases != 1 else ''}; {self.advice}"
        return f"{how}; {more}"

    def failure_note(self, strict: bool) -> str:
        return f" ({self.label(strict)})" if self.verdict == INCONCLUSIVE else ""

    def to_model(self) -> FindingReport:
        return FindingReport(
            figure=self.figure,
            verdict=self.verdict,
            value=None if self.value is None else float(self.value),
            interval=list(self.interval) if self.interval else None,
            threshold=float(self.threshold),
            fails=self.fails,
            cases=self.cases,
            cases_needed=self.cases_needed,
            decided_on="point estimate" if self.verdict == INCONCLUSIVE and self.value is not None else "interval",
            p_value=self.p_value,
            held_back=self.held_back,
        )


@dataclass
class Verdict:
    skill: str
    model: str
    findings: list[Finding] = field(default_factory=list)
    unevaluated: str | None = None  # NOT EVALUATED: why no figure could be measured (every trial skipped)

    @property
    def verdict(self) -> str:
        if self.unevaluated is not None:
            return NOT_EVALUATED
        verdicts = {f.verdict for f in self.findings}
        return FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS

    @property
    def fails(self) -> bool:
        return self.unevaluated is not None or any(f.fails for f in self.findings)

    def to_model(self) -> VerdictReport:
        return VerdictReport(
            skill=self.skill,
            model=self.model,
            verdict=self.verdict,
            fails=self.fails,
            findings=[f.to_model() for f in self.findings],
            **({"why": self.unevaluated} if self.unevaluated is not None else {}),
        )


def _finding(
    figure: str,
    value: Fraction | None,
    interval: tuple[float, float] | None,
    threshold: Fraction,
    strict: bool,
    paired: stats.Paired,
    effect: float = DEFAULT_EFFECT,
    level: stats.Level = stats.LEVEL95,
) -> Finding:
    if value is None or interval is None:
        return Finding(figure, INCONCLUSIVE, value, interval, threshold, True, level=level.label)
    verdict = {1: PASS, -1: FAIL, 0: INCONCLUSIVE}[stats.side(interval, float(threshold))]
    fails = verdict == FAIL or (verdict == INCONCLUSIVE and (strict or value < threshold))
    runs = max(1, round(paired.skill_trials / paired.n)) if paired.skill_trials else 1
    needed, advice = None, ""
    sized = "lift" if figure == "lift" else "pass_rate"  # how stats sizes it: a difference, or a rate
    if verdict == INCONCLUSIVE:
        needed = stats.cases_for_power(float(threshold), float(threshold) + effect, runs, sized)
        advice = power_advice(float(threshold), effect, runs, sized, what=_POWER_WORDS.get(figure))
    bound = (
        (lambda z: paired.lift_ci(z)[0])  # type: ignore[index]
        if figure == "lift"
        else (lambda z: paired.pass_rate_ci(z)[0])  # type: ignore[index]
    )
    p_value = stats.one_sided_p(bound, float(threshold))
    return Finding(
        figure, verdict, value, interval, threshold, fails, paired.n, needed, p_value, advice=advice, level=level.label
    )


def token_increase(result: Result) -> Fraction | None:
    """The skill's relative token cost on the paired cases: tokens per scored trial with the skill
    against without, each arm over the cases scored in both (errors and unpaired cases left out, as
    from the rates). A point estimate: output tokens and agent loops are sampled, and no interval
    is drawn for it."""
    per_trial = []
    paired = result.pairing.cases
    for arm in (Arm.BASELINE, Arm.WITH_SKILL):
        trials = [
            t
            for case in paired
            for (a, _), t in result.details.get(case, {}).items()
            if a == arm and t.passed is not None
        ]
        tokens = sum((t.input_tokens or 0) + (t.output_tokens or 0) for t in trials)
        per_trial.append(Fraction(tokens, len(trials)) if trials else None)
    before, after = per_trial
    return (after - before) / before if before and after is not None else None


def verdict_for(
    result: Result,
    thresholds: Thresholds,
    strict: bool = False,
    effect: float = DEFAULT_EFFECT,
    level: stats.Level = stats.LEVEL95,
) -> Verdict:
    verdict = Verdict(result.skill, result.model)
    paired = result.pairing.paired
    if thresholds.min_lift is not None:
        lift_threshold = stats.exact(thresholds.min_lift)
        verdict.findings.append(
            _finding("lift", paired.lift, paired.lift_ci(level.z), lift_threshold, strict, paired, effect, level)
        )
    if thresholds.min_pass_rate is not None:
        verdict.findings.append(
            _finding(
                "pass_rate",
                paired.p_skill,
                paired.pass_rate_ci(level.z),
                stats.exact(thresholds.min_pass_rate),
                strict,
                paired,
                effect,
                level,
            )
        )
    if thresholds.max_token_increase is not None:
        value, limit = token_increase(result), stats.exact(thresholds.max_token_increase)
        ok = value is not None and value <= limit
        verdict.findings.append(Finding("token_increase", PASS if ok else FAIL, value, None, limit, not ok))
    if thresholds.min_trigger_recall is not None:
        should = result.pair(Arm.TRIGGER, Arm.TRIGGER, True).paired
        limit = stats.exact(thresholds.min_trigger_recall)
        verdict.findings.append(
            _finding(
                "trigger_recall", should.p_skill, should.pass_rate_ci(level.z), limit, strict, should, effect, level
            )
        )
    if thresholds.max_false_trigger is not None:
        verdict.findings.append(_false_trigger(result, thresholds.max_false_trigger, strict, effect, level))
    return verdict


def _false_trigger(result: Result, limit: float, strict: bool, effect: float, level: stats.Level) -> Finding:
    """At most ``limit`` false triggers: judged as the right decisions on the near misses (the
    should-not-trigger cases) at least 1 - ``limit``, and shown as false triggers."""
    near = result.pair(Arm.TRIGGER, Arm.TRIGGER, False).paired
    threshold = stats.exact(limit)
    found = _finding(
        "false_trigger", near.p_skill, near.pass_rate_ci(level.z), 1 - threshold, strict, near, effect, level
    )
    found.threshold = threshold
    if found.value is not None:
        found.value = 1 - found.value
    if found.interval is not None:
        found.interval = (1 - found.interval[1], 1 - found.interval[0])
    return found


# ------------------------------------------------------------------------------- comparison


CONTROLS = ("aa", "positive")  # validity controls: a failure says the harness is broken, and the run is invalid
_LABELS = {
    "no_worse": "NO WORSE",
    "not_shown": "INCONCLUSIVE",
    "flip": "FLIP",
    "moved": "MOVED",
    "improvement": "NOT SHOWN",
    "uncompared": "NOT COMPARED",
    "unchanged": "UNCHANGED",
    "deleted": "DELETED",
    "placebo": "PLACEBO",
}


def regression_label(kind: str, fails: bool) -> str:
    """The word a finding of the pull request's check is shown with (the terminal, Markdown, HTML)."""
    if kind in _LABELS:
        return _LABELS[kind]
    if kind in CONTROLS:
        return "INVALID" if fails else "VALID"
    return "REGRESSION" if fails else "NO REGRESSION"


@dataclass
class Regression:
    """One finding of the pull request's check, on one line: the change against the previous arm
    or an old report, a flip or a moved case (information), the validity controls, a token growth."""

    skill: str
    model: str
    # "change" (paired), "lift" (old reports), "improvement" (claimed, not shown), "flip" and "moved"
    # (information), "tokens", "uncompared", "unchanged", "deleted", "placebo", and the CONTROLS
    kind: str
    message: str
    case: str | None = None
    fails: bool = True  # a flip is shown to the reviewer and never fails the run

    @property
    def label(self) -> str:
        return regression_label(self.kind, self.fails)

    def to_model(self) -> RegressionReport:
        return RegressionReport(
            skill=self.skill, model=self.model, kind=self.kind, case=self.case, message=self.message, fails=self.fails
        )


NONINFERIORITY_MARGIN = 0.1  # --upskill-against's δ where --upskill-max-regression is not given


@dataclass(frozen=True)
class CompareRule:
    """How ``--upskill-compare`` judges a change of the with-skill pass rate on the shared cases.

    ``max_regression`` (δ): the change fails the run when its 95% interval lies wholly below -δ
    (a drop of more than δ is shown). ``min_improvement``: where the pull request claims an
    improvement, the change passes only when its interval lies wholly above it."""

    max_regression: float = 0.0
    min_improvement: float | None = None


def lift_difference_ci(
    new: float, new_ci: tuple[float, float], old: float, old_ci: tuple[float, float]
) -> tuple[float, float]:
    """MOVER interval for ``new - old`` from the two lifts' own intervals (independent runs)."""
    d = new - old
    lower = d - math.sqrt((new - new_ci[0]) ** 2 + (old_ci[1] - old) ** 2)
    upper = d + math.sqrt((new_ci[1] - new) ** 2 + (old - old_ci[0]) ** 2)
    return lower, upper


def _majority_passed(runs: list[Any]) -> bool | None:
    scored = [r for r in runs if r is not None]
    return None if not scored else sum(scored) * 2 >= len(scored) and sum(scored) > 0


def paired_change(before: ResultReport, after: ResultReport) -> stats.Paired:
    """The with-skill per-case rates of ``after`` (first) and ``before`` on the cases both scored:
    its ``lift`` is the change of the with-skill pass rate, its ``lift_ci`` that change's interval.
    The baseline, the same in both (replayed from the cache), cancels."""
    old_cases = {c.case: c for c in before.cases}
    new_rates: list[Fraction] = []
    old_rates: list[Fraction] = []
    trials = [0, 0]
    for case in after.cases:
        prior = old_cases.get(case.case)
        now = [v for v in case.with_skill if v is not None]
        then = [v for v in (prior.with_skill if prior else []) if v is not None]
        if now and then:
            new_rates.append(stats.case_rate(now))
            old_rates.append(stats.case_rate(then))
            trials[0] += len(now)
            trials[1] += len(then)
    return stats.Paired(tuple(new_rates), tuple(old_rates), trials[0], trials[1])


def _pct(x: float) -> str:
    return f"{x * 100:+.0f}%"


def judge_change(
    skill: str,
    model: str,
    change: stats.Paired,
    rule: CompareRule,
    what: str,
    noninferiority: bool = False,
    strict: bool = True,
    level: stats.Level = stats.LEVEL95,
) -> list[Regression]:
    """The paired change (``change.lift``: after - before, ``p_skill`` after, ``p_baseline``
    before) judged by ``rule``: a REGRESSION where its interval (at ``level``, 95% unless the
    looks of --upskill-runs auto read it wider) lies wholly below -δ, and
    superiority where an improvement is claimed. With ``noninferiority`` (the previous arm of
    --upskill-against) the change passes only where the interval shows it no worse than -δ (NO
    WORSE); between the two it is INCONCLUSIVE, which fails unless --upskill-lenient passes an
    estimate at or above -δ. Without it (--upskill-compare, two runs) only a shown drop fails."""
    d, (lo, hi) = float(change.lift), change.lift_ci(level.z)  # type: ignore[arg-type, misc]
    said = (
        f"{what} on the {change.n} shared case(s) {float(change.p_baseline) * 100:.0f}% → "  # type: ignore[arg-type]
        f"{float(change.p_skill) * 100:.0f}% (change {_pct(d)}, {level.label} CI {_pct(lo)} to {_pct(hi)})"  # type: ignore[arg-type]
    )
    margin = f"{rule.max_regression * 100:.0f}%"
    dropped = hi < -rule.max_regression - stats.TOLERANCE
    if dropped:
        found = [Regression(skill, model, "change", f"{said}: a drop of more than {margin} is shown")]
    elif not noninferiority:
        found = [Regression(skill, model, "change", f"{said}: no drop of more than {margin} is shown", fails=False)]
    elif lo >= -rule.max_regression - stats.TOLERANCE:
        found = [
            Regression(skill, model, "no_worse", f"{said}: shown no worse than -{margin} (non-inferior)", fails=False)
        ]
    else:
        fails = strict or d < -rule.max_regression - stats.TOLERANCE
        found = [
            Regression(
                skill,
                model,
                "not_shown",
                f"{said}: not shown to be no worse than -{margin}, nor worse: more cases or runs decide it "
                + (
                    "(fails: a check passes only what its interval shows)"
                    if fails
                    else "(--upskill-lenient: the estimate is within the margin)"
                ),
                fails=fails,
            )
        ]
    if rule.min_improvement is not None and stats.side((lo, hi), rule.min_improvement) != 1:
        found.append(
            Regression(
                skill,
                model,
                "improvement",
                f"{said}: an improvement of at least {_pct(rule.min_improvement)} is not shown "
                "(--upskill-min-improvement)",
            )
        )
    return found


def compare(
    old_report: Report, new_report: Report, token_growth: float | None, rule: CompareRule = CompareRule()
) -> list[Regression]:
    """What changed in ``new_report`` against ``old_report`` (an earlier --upskill-report), per
    skill x model: the paired change of the with-skill pass rate on the shared cases, judged by
    ``rule``; the cases whose with-skill majority flipped from pass to fail (listed, never failing);
    with-skill tokens per trial grown by more than ``token_growth``. An old report without per-case
    results is compared on the two lifts (MOVER, independent samples), saying so."""
    limit = DEFAULT_TOKEN_GROWTH if token_growth is None else token_growth
    old = {(r.skill, r.model): r for r in old_report.results}
    found: list[Regression] = []
    for new in new_report.results:
        before = old.get((new.skill, new.model))
        skill, model = new.skill, new.model
        if before is None:
            found.append(Regression(skill, model, "uncompared", "not in the old report: nothing to compare it with"))
            continue
        change = paired_change(before, new)
        if change.n:
            found += judge_change(skill, model, change, rule, "with-skill pass rate")
        elif not (new.lift is not None and before.lift is not None and new.lift_ci and before.lift_ci):
            found.append(
                Regression(
                    skill, model, "uncompared", "no case scored in both runs, and no lift in both: nothing compared"
                )
            )
        else:
            lo, hi = lift_difference_ci(new.lift, new.lift_ci, before.lift, before.lift_ci)
            if hi < -rule.max_regression - stats.TOLERANCE:
                found.append(
                    Regression(
                        skill,
                        model,
                        "lift",
                        f"lift fell from {_pct(before.lift)} to {_pct(new.lift)} "
                        f"(change {_pct(new.lift - before.lift)}, 95% CI {_pct(lo)} to {_pct(hi)}; the old report "
                        "holds no per-case results, so the two lifts were compared as independent samples, a weaker "
                        "check)",
                    )
                )
        old_cases = {c.case: c for c in before.cases}
        for case in new.cases:
            prior = old_cases.get(case.case)
            if prior and _majority_passed(prior.with_skill) and _majority_passed(case.with_skill) is False:
                found.append(
                    Regression(
                        skill,
                        model,
                        "flip",
                        f"case {case.case}: with skill passed before, fails now (shown for review; a flip alone "
                        "never fails the run)",
                        case.case,
                        fails=False,
                    )
                )
        old_tokens, new_tokens = before.with_skill.tokens_per_trial(), new.with_skill.tokens_per_trial()
        if old_tokens and new_tokens is not None and (new_tokens - old_tokens) / old_tokens > limit:
            found.append(
                Regression(
                    skill,
                    model,
                    "tokens",
                    f"with-skill tokens per trial grew {old_tokens:.0f} → {new_tokens:.0f} "
                    f"({(new_tokens - old_tokens) / old_tokens * 100:+.0f}%, limit {limit * 100:+.0f}%)",
                )
            )
    return found


POSITIVE_FLOOR = 0.9  # the positive control fails where activation on request is shown below this


def experiment(
    results: list[Result],
    rule: CompareRule,
    ref: str | None,
    deleted: list[str],
    strict: bool = True,
    level_for: Callable[[Result], stats.Level] = lambda r: stats.LEVEL95,
) -> list[Regression]:
    """The pull request's check as one experiment, per skill × model: with skill against the
    previous arm (--upskill-against), paired and judged by ``rule``; the cases whose outcome moved
    (information); and the controls (--upskill-controls): the A/A and positive controls, whose
    failure makes the run invalid (the harness, not the skill), and the placebo (information)."""
    found: list[Regression] = []
    for r in results:
        skill, model = r.skill, r.model
        if ref is not None:
            found += _trigger_changes(r, rule, ref, level_for(r))
        if ref is not None and (r.with_skill.total or not r.should):
            change = r.comparison(Arm.PREVIOUS)
            if change is not None and change.n:
                what = f"pass rate, previous ({ref}) → with skill"
                found += judge_change(skill, model, change, rule, what, True, strict, level_for(r))
                found += _moved(r)
            elif r.against == "same":
                found.append(
                    Regression(
                        skill,
                        model,
                        "unchanged",
                        f"the same at {ref}: no separate previous arm (its with-skill trials are the previous arm), "
                        "so there is no change to judge",
                        fails=False,
                    )
                )
            else:
                why = {
                    "new": f"new since {ref}: no previous arm to compare with",
                    "unreadable": f"it cannot be read at {ref} (its SKILL.md does not parse, or a file leaves its "
                    "folder): no previous arm to compare with",
                }.get(r.against or "", "the previous arm scored no case that the with-skill arm scored")
                found.append(Regression(skill, model, "uncompared", why))
        aa = r.comparison(Arm.AA_CONTROL)
        if aa is not None and aa.n:
            aa_level = stats.level(ARMS[Arm.AA_CONTROL].confidence)
            lo, hi = aa.lift_ci(aa_level.z) or (0.0, 0.0)
            broken = lo > stats.TOLERANCE or hi < -stats.TOLERANCE
            rates = f"{float(aa.p_skill) * 100:.0f}% and {float(aa.p_baseline) * 100:.0f}%"  # type: ignore[arg-type]
            said = (
                f"A/A control: the same skill in two arms on {aa.n} case(s), {rates} (difference "
                f"{_pct(float(aa.lift))}, {aa_level.label} CI {_pct(lo)} to {_pct(hi)})"  # type: ignore[arg-type]
            )
            found.append(
                Regression(
                    skill,
                    model,
                    "aa",
                    f"{said}: identical arms differ, so the harness is broken (nondeterminism between arms, a "
                    "wrongly keyed cache, arms that are not symmetric), not the skill; no verdict of this skill × "
                    "model can be trusted"
                    if broken
                    else f"{said}: identical arms agree",
                    fails=broken,
                )
            )
        positive = r.arms.get(Arm.POSITIVE_CONTROL)
        if positive is not None and positive.scored:
            rate = positive.passed / positive.scored
            lo, hi = stats.wilson(rate, positive.scored)
            broken = hi < POSITIVE_FLOOR - stats.TOLERANCE
            said = (
                f"positive control: asked for the skill by name, the model loaded it in {positive.passed}/"
                f"{positive.scored} trial(s) ({rate * 100:.0f}%, 95% CI {lo * 100:.0f}% to {hi * 100:.0f}%)"
            )
            found.append(
                Regression(
                    skill,
                    model,
                    "positive",
                    f"{said}: shown below {POSITIVE_FLOOR * 100:.0f}%, so the activation measurement (the listing, "
                    "read_skill) is broken, not the skill"
                    if broken
                    else f"{said}: loading works",
                    fails=broken,
                )
            )
        placebo = r.comparison(Arm.PLACEBO)
        if placebo is not None and placebo.n:
            lo, hi = placebo.lift_ci() or (0.0, 0.0)
            words = (
                "what the skill says helps, beyond a longer prompt"
                if lo > stats.TOLERANCE
                else "a neutral text of the skill's length does better than the skill"
                if hi < -stats.TOLERANCE
                else "not shown to do better than a neutral text of its length"
            )
            found.append(
                Regression(
                    skill,
                    model,
                    "placebo",
                    f"with skill {float(placebo.p_skill) * 100:.0f}% vs placebo "  # type: ignore[arg-type]
                    f"{float(placebo.p_baseline) * 100:.0f}% on {placebo.n} case(s) (difference "  # type: ignore[arg-type]
                    f"{_pct(float(placebo.lift))}, 95% CI {_pct(lo)} to {_pct(hi)}): {words} (information: never "  # type: ignore[arg-type]
                    "fails the run)",
                    fails=False,
                )
            )
    for folder in deleted:
        found.append(
            Regression(folder, "-", "deleted", f"a skill at {ref}, with no SKILL.md now: deleted", fails=False)
        )
    return found


def _trigger_changes(r: Result, rule: CompareRule, ref: str, level: stats.Level) -> list[Regression]:
    """The blast radius: a skill's trigger cases with the catalog as it is against the catalog's
    descriptions at REF, paired by case: recall on the should-trigger cases, the right decisions on
    the near misses. A drop of more than δ that the interval shows is a REGRESSION; anything else is
    information. (Non-inferiority, as for the skill's own change, would fail most pull requests on
    an untouched neighbour at the trigger cases a suite has: 88% at 20 cases, benchmarks/triggers.py.)"""
    if not r.should:
        return []
    found: list[Regression] = []
    shown = CompareRule(rule.max_regression)  # no improvement is claimed for the neighbours
    for should, what in ((True, "trigger recall"), (False, "right decisions on near misses (not loaded)")):
        change = r.trigger_change(should)
        if change is not None and change.n:
            said = f"{what}, the catalog at {ref} → now"
            found += judge_change(r.skill, r.model, change, shown, said, False, True, level)
    if not found:
        found.append(
            Regression(
                r.skill,
                r.model,
                "unchanged",
                f"the catalog's names and descriptions are the same at {ref}: its trigger cases are judged by their "
                "own gates, and nothing changed their listing",
                fails=False,
            )
        )
    return found


def _moved(r: Result) -> list[Regression]:
    """The cases whose with-skill majority differs from the previous arm's, either way (information)."""
    found = []
    for case, arms in sorted(r.cases.items()):
        before = _majority_passed(list(arms.get(Arm.PREVIOUS, {}).values()))
        after = _majority_passed(list(arms.get(Arm.WITH_SKILL, {}).values()))
        if before is None or after is None or before == after:
            continue
        how = "passed with the previous skill, fails now" if before else "failed with the previous skill, passes now"
        found.append(
            Regression(
                r.skill, r.model, "moved", f"case {case}: {how} (shown for review; never fails the run)", case, False
            )
        )
    return found


# ------------------------------------------------------------------------------- the run's verdict


@dataclass
class Evaluation:
    verdicts: list[Verdict]
    regressions: list[Regression]
    strict: bool = False
    compared: bool = False  # --upskill-compare: the pull request's check is a gate of its own
    family: str = Family.NONE  # Family.HOLM: the PASS verdicts hold at a family-wise 2.5% across the run's gates
    level: str = "95%"  # the intervals' level (--upskill-runs auto reads every look at a wider one)

    @property
    def gated(self) -> bool:
        """Any threshold set, or a comparison made: the exit status follows the verdicts and the
        comparison, not the with-skill trials one by one."""
        return bool(self.verdicts) or self.compared

    @property
    def failing_changes(self) -> list[Regression]:
        return [g for g in self.regressions if g.fails]

    @property
    def fails(self) -> bool:
        return any(v.fails for v in self.verdicts) or bool(self.failing_changes)

    def fail_reasons(
        self,
        *,
        unscored: int,
        allowed_errors: int,
        with_skill_failed: int,
        collection_errors: int,
        trigger_failed: int = 0,
    ) -> list[str]:
        """Why the skill trials fail the run, in words; empty when they do not.

        A failing verdict, a regression or a collection error always fails it; so do more
        unscored trials (errors, and trials with no outcome) than ``--upskill-max-errors`` allows.
        Without a threshold a failed with-skill trial fails it too; with one, the verdicts decide."""
        reasons = []
        failing = sum(v.fails and v.unevaluated is None for v in self.verdicts)
        if failing:
            reasons.append(f"{failing} skill × model result(s) failed a gate")
        unevaluated = sum(v.unevaluated is not None for v in self.verdicts)
        if unevaluated:
            reasons.append(
                f"{unevaluated} skill × model(s) with a gate set could not be evaluated: every trial was skipped "
                "(NOT EVALUATED above says why)"
            )
        invalid = [g for g in self.failing_changes if g.kind in CONTROLS]
        if invalid:
            reasons.append(
                f"{len(invalid)} validity control(s) failed, so the harness is broken, not the skill (INVALID above)"
            )
        regressed = [g for g in self.failing_changes if g.kind not in ("uncompared", "not_shown", *CONTROLS)]
        if regressed:
            reasons.append(f"{len(regressed)} regression(s) shown (REGRESSION and NOT SHOWN above)")
        undecided = sum(g.kind == "not_shown" for g in self.failing_changes)
        if undecided:
            reasons.append(
                f"{undecided} changed skill × model(s) not shown to be no worse than the previous skill "
                "(INCONCLUSIVE above: more cases or runs decide it)"
            )
        uncompared = sum(g.kind == "uncompared" for g in self.failing_changes)
        if uncompared:
            reasons.append(
                f"{uncompared} skill × model(s) could not be compared and have no gate of their own (NOT COMPARED "
                "above)"
            )
        if collection_errors:
            reasons.append(f"{collection_errors} file(s) could not be collected")
        if unscored > allowed_errors:
            reasons.append(
                f"{unscored} trial(s) could not be scored, more than --upskill-max-errors allows ({allowed_errors})"
            )
        if not self.gated and with_skill_failed:
            reasons.append(
                f"{with_skill_failed} with-skill trial(s) failed, and with no gate set every with-skill trial must "
                "pass "
                "(set --upskill-min-lift to judge the lift instead)"
            )
        if not self.gated and trigger_failed:
            reasons.append(
                f"{trigger_failed} trigger trial(s) failed (the skill was not loaded from the catalog where it should "
                "be, or was where it should not), and with no gate set every trigger trial must pass (set "
                "--upskill-min-trigger-recall and --upskill-max-false-trigger to judge the rates instead)"
            )
        return reasons

    def rule_line(self) -> str:
        """What a verdict means, in one line under the gates."""
        if self.strict:
            line = (
                f"exit status follows these verdicts: PASS passes (the {self.level} interval clears the threshold), "
                "FAIL and INCONCLUSIVE fail (a gate passes only what the interval shows; error rates: README, Verdicts)"
            )
        else:
            line = (
                "exit status follows these verdicts: PASS passes, FAIL fails, INCONCLUSIVE is decided on the point "
                "estimate (--upskill-lenient: fails below the threshold, passes at or above it; error rates: README, "
                "Verdicts)"
            )
        return line

    def family_line(self) -> str:
        gates = sum(f.p_value is not None for v in self.verdicts for f in v.findings)
        if self.family == Family.HOLM:
            return (
                f"many gates: Holm's procedure over the {gates} lift and pass-rate gate(s): every PASS holds at a "
                "family-wise 2.5% (--upskill-family holm)"
            )
        return (
            f"many gates: no adjustment over the {gates} lift and pass-rate gate(s): exit status 0 claims every "
            "gate at once, so a useless skill passes it no more often than its own gate allows "
            "(--upskill-family holm also holds each PASS read alone)"
        )

    def exit_line(self, reasons: list[str]) -> str:
        """The summary's last line: the exit status and why (``reasons``: what fails the run)."""
        if reasons:
            return f"upskill: exit status 1 because {'; '.join(reasons)}"
        if self.gated and not self.strict and any(f.verdict == INCONCLUSIVE for v in self.verdicts for f in v.findings):
            return (
                "upskill: exit status 0: every gate passed, some only on the point estimate (--upskill-lenient: not "
                "shown at 95%)"
            )
        if self.gated:
            return "upskill: exit status 0: every gate passed"
        return (
            "upskill: exit status 0: no gate is set and every with-skill and trigger trial passed (a failed baseline "
            "trial never fails the run)"
        )

    def lines(self) -> list[str]:
        out = []
        for v in self.verdicts:
            if v.unevaluated is not None:
                out.append(f"{NOT_EVALUATED} {v.skill} × {v.model}: {v.unevaluated}")
                continue
            out.append(
                f"{v.verdict:<12} {v.skill} × {v.model}: "
                + "; ".join(f"{f.describe()} {f.label(self.strict)}" for f in v.findings)
            )
            out += [f"             {f.figure}: {f.why(self.strict)}" for f in v.findings if f.verdict == INCONCLUSIVE]
        for v in self.verdicts:
            for f in v.findings:
                if f.fails:
                    out.append(f"FAILED GATE  {v.skill} × {v.model}: {f.describe()}{f.failure_note(self.strict)}")
        for g in self.regressions:
            out.append(f"{g.label:<12} {g.skill} × {g.model}: {g.message}")
        return out


def evaluate(
    results: list[Result],
    report: Report,
    thresholds: Thresholds,
    strict: bool,
    old_report: Report | None,
    rule: CompareRule = CompareRule(),
    family: str = "none",
    effect: float = DEFAULT_EFFECT,
    against: str | None = None,
    deleted: list[str] | None = None,
    level_for: Callable[[Result], stats.Level] = lambda r: stats.LEVEL95,
    sequential: bool = False,
) -> Evaluation:
    """The verdicts of every skill × model with a gate set, those that ran and those whose every
    trial was skipped (NOT EVALUATED, which fails the run: a gate never passes on nothing)."""
    verdicts = []
    for result in results:
        own = thresholds.merged(result.thresholds)
        if own.any:
            verdicts.append(verdict_for(result, own, strict, effect, level_for(result)))
    for gone in report.skipped:
        if thresholds.merged(gone.thresholds).any:
            why = f"every one of its {gone.trials} trial(s) was skipped: " + "; ".join(gone.reasons)
            verdicts.append(Verdict(gone.skill, gone.model, unevaluated=why))
    if family == Family.HOLM:
        hold_back(verdicts, strict)
    regressions = compare(old_report, report, thresholds.max_token_increase, rule) if old_report is not None else []
    regressions += experiment(results, rule, against, deleted or [], strict, level_for)
    judged = {(v.skill, v.model) for v in verdicts}
    for g in regressions:  # nothing unevaluated is green: a skill × model not compared needs a gate of its own
        if g.kind == "uncompared":
            g.fails = (g.skill, g.model) not in judged
            g.message += "; judged by its gates" if not g.fails else "; set a gate (--upskill-min-lift) to judge it"
    compared = old_report is not None or against is not None
    level = "stopping look's (--upskill-runs auto)" if sequential else "95%"
    return Evaluation(verdicts, regressions, strict, compared=compared, family=family, level=level)


FAMILIES = tuple(Family)
ALPHA = 0.025  # one-sided: the lower end of the 95% interval


def hold_back(verdicts: list[Verdict], strict: bool) -> None:
    """Holm's procedure over every lift and pass-rate gate of the run: a PASS whose p-value is not
    rejected at the family-wise level becomes INCONCLUSIVE (and so fails, unless lenient on an
    estimate at or above the threshold)."""
    findings = [f for v in verdicts for f in v.findings if f.p_value is not None]
    for finding, rejected in zip(findings, stats.holm([f.p_value for f in findings], ALPHA), strict=True):  # type: ignore[misc]
        if finding.verdict == PASS and not rejected:
            finding.verdict, finding.held_back = INCONCLUSIVE, len(findings)
            finding.fails = strict or (finding.value is not None and finding.value < finding.threshold)


def power_advice(
    threshold: float, effect: float, runs: int, figure: str = "lift", varied: bool = True, what: str | None = None
) -> str:
    """How many cases give 80% power to pass when the truth is ``effect`` above ``threshold``."""
    truth = threshold + effect
    shown = f"{truth * 100:.0f}%" if figure == "pass_rate" else f"{truth * 100:+.0f}%"
    what = what or ("pass rate" if figure == "pass_rate" else "lift")
    needed = stats.cases_for_power(threshold, truth, runs, figure)
    if needed is None:
        return f"no case count up to 2,000 gives {stats.POWER:.0%} power at a true {what} of {shown}"
    more = ""
    if figure == "lift" and runs < 3 and varied:
        fewer = stats.cases_for_power(threshold, truth, 3, figure)
        more = f", or about {fewer} × 3 runs if answers vary from run to run" if fewer else ""
    return (
        f"about {needed} cases × {runs} run{'s' if runs != 1 else ''} give {stats.POWER:.0%} power to pass at a true "
        f"{what} of {shown} (the threshold + --upskill-effect {effect:g}){more}"
    )


def resolution_line(
    skill: str, cases: int, runs: int, min_lift: float | None, effect: float = DEFAULT_EFFECT, varied: bool = True
) -> str:
    """``--upskill-plan``: the power of these cases against the lift threshold (or 0), and the
    cases that would give 80% (simulated: ``stats.power``)."""
    threshold = float(stats.exact(min_lift)) if min_lift is not None else 0.0
    truth = threshold + effect
    head = f"power: {skill}: {cases} case{'s' if cases != 1 else ''} × {runs} run{'s' if runs != 1 else ''}: "
    now = stats.power(cases, runs, threshold, truth)
    return (
        head + f"a true lift of {truth * 100:+.0f}% passes a lift gate at {threshold * 100:+.0f}% "
        f"{now:.0%} of the time; {power_advice(threshold, effect, runs, varied=varied)} (simulated: cases' rates "
        "spread over (0, 1))"
    )


# ------------------------------------------------------------------------------- --upskill-max-errors


@dataclass(frozen=True)
class ErrorLimit:
    """``--upskill-max-errors``: a count (``5``) or a fraction of the trials (``0.1`` or ``10%``)."""

    count: int | None = 0
    fraction: float | None = None

    def allowed(self, trials: int) -> int:
        return self.count if self.count is not None else math.floor((self.fraction or 0.0) * trials + 1e-9)

    def describe(self) -> str:
        return f"{self.count}" if self.count is not None else f"{(self.fraction or 0.0) * 100:g}% of the trials"


def parse_error_limit(value: str | None) -> ErrorLimit:
    text = str(value or "0").strip()
    try:
        if text.endswith("%"):
            fraction = float(text[:-1]) / 100
        elif text.isdigit():
            return ErrorLimit(int(text))
        else:
            fraction = float(text)
    except ValueError:
        fraction = -1.0
    if not 0 <= fraction < 1:
        raise ValueError(
            f"upskill_max_errors must be a whole number of trials (5) or a fraction below 1 (0.1 or 10%), not {value!r}"
        )
    return ErrorLimit(None, fraction)
