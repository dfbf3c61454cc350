"""Aggregate outcomes per skill x model into results, and render them: terminal, JSON, JUnit.

Outcomes arrive typed (read from each trial's report by plugin/wire.py, under xdist too) in any
order; everything here is sorted so that a plain run and ``-n N`` give the same report.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Any, NamedTuple

from pytest_upskill.engine.arms import ARMS, COMPARED
from pytest_upskill.engine.nodeids import in_case_file
from pytest_upskill.models import Prices
from pytest_upskill.results import stats
from pytest_upskill.results.report import (
    ANSWER_CHARS,
    SCHEMA_VERSION,
    Activation,
    AgentStats,
    ArmReport,
    CaseRuns,
    CaseWhy,
    Comparison,
    PairedCounts,
    PromptCache,
    Report,
    ResultReport,
    SkippedReport,
    TokenDelta,
    Tokens,
    TrialReport,
    TriggerReport,
)
from pytest_upskill.types import Arm, Outcome

NO_PRICES = Prices()
# the fields a trial's report keeps of its outcome, by the same name (the answer is renamed: see trial_report)
_TRIAL_FIELDS = tuple(name for name in TrialReport.model_fields if name in {f.name for f in fields(Outcome)})


class Received(NamedTuple):
    """A trial as its report carried it (plugin/wire.py) or a report recorded it (a shard's): its
    outcome, and the skill's own gate thresholds."""

    outcome: Outcome
    thresholds: dict[str, float] | None = None


def trial_report(outcome: Outcome) -> TrialReport:
    """A trial's record in the JSON report: its outcome's fields, the answer cut to ANSWER_CHARS."""
    values = {name: getattr(outcome, name) for name in _TRIAL_FIELDS if getattr(outcome, name) is not None}
    chars = len(outcome.output) if outcome.output_chars is None else outcome.output_chars
    return TrialReport(**values, answer=outcome.output[:ANSWER_CHARS], answer_chars=chars)


def trial_outcome(skill: str, model: str, case: str, trial: TrialReport) -> Outcome:
    """The outcome a report's trial records (a shard's, to merge; the students' run, to split)."""
    values = trial.model_dump(exclude_none=True, exclude={"answer", "answer_chars"})
    return Outcome(skill=skill, case=case, model=model, **values, output=trial.answer, output_chars=trial.answer_chars)


@dataclass
class ArmTally:
    """One arm's counts over a skill × model's trials (the arm itself is types.Arm)."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens, read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens, written to it
    cached: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    agentic: int = 0  # workspace / tool-loop trials among them
    turns: int = 0
    tool_calls: int = 0
    loaded: int = 0  # progressive disclosure: trials in which the model loaded the skill
    offered: int = 0  # trials that were offered read_skill
    judge_input_tokens: int = 0
    judge_output_tokens: int = 0
    capped: int = 0  # trials whose answer stopped at max_tokens
    notes: Counter[str] = field(default_factory=Counter)  # how trials ran where it differs from their case

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def scored(self) -> int:
        return self.passed + self.failed

    def add(self, outcome: Outcome) -> None:
        if outcome.passed is None:
            self.errors += 1
            self.error_kinds[outcome.error_kind or "error"] += 1
        elif outcome.passed:
            self.passed += 1
        else:
            self.failed += 1
        self.input_tokens += outcome.input_tokens
        self.output_tokens += outcome.output_tokens
        self.cache_read_tokens += outcome.cache_read_tokens
        self.cache_write_tokens += outcome.cache_write_tokens
        self.cached += outcome.cached
        if outcome.turns is not None:
            self.agentic += 1
            self.turns += outcome.turns
            self.tool_calls += outcome.tool_calls or 0
        if outcome.skill_loaded is not None:
            self.offered += 1
            self.loaded += outcome.skill_loaded
        self.judge_input_tokens += outcome.judge_input_tokens or 0
        self.judge_output_tokens += outcome.judge_output_tokens or 0
        self.capped += bool(outcome.hit_max_tokens)
        if outcome.note:
            self.notes[outcome.note] += 1

    @property
    def activation_rate(self) -> float | None:
        return stats.rate(self.loaded, self.offered)

    def to_model(
        self,
        pass_rate: float | None,
        interval: tuple[float, float] | None,
        paired: tuple[int, int],
        prices: Prices,
    ) -> ArmReport:
        """The arm's trial counts (all of them), and its rate over the paired cases with their trials."""
        extra: dict[str, Any] = {}
        spent = arm_cost(self, prices)
        if spent is not None:
            extra["cost"] = spent
        if self.agentic:
            extra["agent"] = AgentStats(
                trials=self.agentic,
                turns=self.turns,
                tool_calls=self.tool_calls,
                mean_turns=self.turns / self.agentic,
                mean_tool_calls=self.tool_calls / self.agentic,
            )
        if self.offered:
            extra["activation"] = Activation(loaded=self.loaded, offered=self.offered, rate=self.activation_rate)
        if self.cache_read_tokens or self.cache_write_tokens:
            extra["prompt_cache"] = PromptCache(
                read_tokens=self.cache_read_tokens,
                write_tokens=self.cache_write_tokens,
                read_share=stats.rate(self.cache_read_tokens, self.input_tokens),
            )
        if self.judge_input_tokens or self.judge_output_tokens:
            extra["judge_tokens"] = Tokens(input_tokens=self.judge_input_tokens, output_tokens=self.judge_output_tokens)
        return ArmReport(
            passed=self.passed,
            failed=self.failed,
            errors=self.errors,
            total=self.total,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            hit_max_tokens=self.capped,
            error_kinds=dict(sorted(self.error_kinds.items())),
            **extra,
            pass_rate=pass_rate,
            pass_rate_ci=interval,
            paired=PairedCounts(passed=paired[0], scored=paired[1]),
        )


@dataclass(frozen=True)
class Pairing:
    """The cases scored in both arms (what the rates, the lift and the intervals are computed on),
    the trials of those cases per arm, and the cases left out with why."""

    paired: stats.Paired
    counts: dict[str, tuple[int, int]]  # arm -> (passed, scored) over the paired cases' trials
    left_out: list[tuple[str, str]]  # (case, why)
    balanced: bool  # every paired case has the same number of scored runs in both arms
    cases: tuple[str, ...] = ()  # the paired cases, in the order of ``paired``


def _why_unpaired(arms: dict[str, dict[int, bool | None]], compared: tuple[str, str]) -> str:
    reasons = []
    for arm in compared:
        label = ARMS[Arm(arm)].label
        runs = arms.get(arm, {})
        if not runs:
            reasons.append(f"{label} not run")
        elif all(v is None for v in runs.values()):
            reasons.append(f"{label} never scored ({len(runs)} error{'s' if len(runs) != 1 else ''})")
    return "; ".join(reasons)


@dataclass
class Result:
    skill: str
    model: str
    arms: dict[str, ArmTally] = field(default_factory=lambda: defaultdict(ArmTally))  # arm -> its trials
    # case -> arm -> run -> passed (None = error)
    cases: dict[str, dict[str, dict[int, bool | None]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    thresholds: dict[str, float] = field(default_factory=dict)  # the skill's own, from skill_meta.json
    # case -> (arm, run) -> what the trial answered (from its report's detail)
    details: dict[str, dict[tuple[str, int], TrialReport]] = field(default_factory=lambda: defaultdict(dict))
    against: str | None = None  # --upskill-against: the skill changed, is the same or is new at REF
    should: dict[str, bool] = field(default_factory=dict)  # trigger case -> whether the skill should load
    routed: int = 0  # should-trigger trials of the trigger arm that loaded another skill and not this one
    _pairings: dict[tuple[str, str, bool | None], Pairing] = field(default_factory=dict, repr=False, compare=False)

    @property
    def baseline(self) -> ArmTally:
        return self.arms[Arm.BASELINE]

    @property
    def with_skill(self) -> ArmTally:
        return self.arms[Arm.WITH_SKILL]

    def tallies(self) -> list[ArmTally]:
        """Every arm's trials (the controls' and the previous arm's too): what was spent and what erred."""
        return [self.arms[arm] for arm in Arm if arm in self.arms]

    def add(self, outcome: Outcome, thresholds: dict[str, float] | None = None) -> None:
        if thresholds:
            self.thresholds = thresholds
        arm, run = str(outcome.arm), outcome.run
        self.arms[arm].add(outcome)
        if outcome.against:
            self.against = outcome.against
        if outcome.should_trigger is not None:
            self.should[outcome.case] = outcome.should_trigger
            loaded = outcome.loaded or []
            self.routed += bool(
                arm == Arm.TRIGGER and outcome.should_trigger and loaded and outcome.skill not in loaded
            )
        self.record(outcome.case, arm, run, outcome.passed)
        self.details[outcome.case][(arm, run)] = trial_report(outcome)

    def record(self, case: str, arm: str, run: int, passed: bool | None) -> None:
        """A trial's verdict alone, what the pairings read (``add`` records a whole outcome; the
        studies in benchmarks/ record millions of verdicts this way)."""
        self.arms[arm]  # noqa: B018  # the arm ran (a defaultdict: reading it adds it)
        self.cases[case][arm][run] = passed
        self._pairings.clear()

    def pair(self, first: str = Arm.WITH_SKILL, second: str = Arm.BASELINE, should: bool | None = None) -> Pairing:
        """The cases scored in both ``first`` and ``second``: ``first``'s rate minus ``second``'s is
        the ``lift`` of the result's ``paired``. Trigger arms pair trigger cases (``should``: only
        those that should, or should not, trigger), the others every other case."""
        trigger = ARMS[Arm(first)].trigger
        if (first, second, should) not in self._pairings:
            rates: tuple[list[Fraction], list[Fraction]] = ([], [])
            left_out: list[tuple[str, str]] = []
            names: list[str] = []
            runs: set[int] = set()
            counts = {first: [0, 0], second: [0, 0]}
            for case in sorted(self.cases):
                if (case in self.should) != trigger or (should is not None and self.should.get(case) != should):
                    continue
                arms = self.cases[case]
                scored = [[v for v in arms.get(arm, {}).values() if v is not None] for arm in (first, second)]
                if not (scored[0] and scored[1]):
                    if arms.get(first) or arms.get(second) or second == Arm.BASELINE:
                        left_out.append((case, _why_unpaired(arms, (second, first))))
                    continue
                names.append(case)
                for i, (arm, values) in enumerate(zip((first, second), scored, strict=True)):
                    rates[i].append(stats.case_rate(values))
                    runs.add(len(values))
                    if i == 0 or first != second:  # an arm read on its own (the positive control) counts once
                        counts[arm][0] += sum(values)
                        counts[arm][1] += len(values)
            self._pairings[(first, second, should)] = Pairing(
                stats.Paired(tuple(rates[0]), tuple(rates[1]), counts[first][1], counts[second][1]),
                {k: (v[0], v[1]) for k, v in counts.items()},
                left_out,
                len(runs) <= 1,
                tuple(names),
            )
        return self._pairings[(first, second, should)]

    @property
    def pairing(self) -> Pairing:
        """The lift's: with skill against the baseline."""
        return self.pair(Arm.WITH_SKILL, Arm.BASELINE)

    def comparison(self, other: Arm) -> stats.Paired | None:
        """With skill against another arm of the run (previous, placebo, the A/A control), on the
        cases both scored; None where that arm did not run."""
        if other not in self.arms:
            return None
        return self.pair(Arm.WITH_SKILL, other).paired

    def _paired_for(self, arm: str) -> tuple[Pairing, bool]:
        """The pairing an arm's rate is read on (the baseline's and with skill's: the lift's; any
        other's: its comparison with the with-skill arm), and whether the arm is its first."""
        if arm in (Arm.BASELINE, Arm.WITH_SKILL):
            return self.pairing, arm == Arm.WITH_SKILL
        if arm == Arm.POSITIVE_CONTROL:  # scored on its own: did the model load the skill it was asked for?
            return self.pair(Arm.POSITIVE_CONTROL, Arm.POSITIVE_CONTROL), True
        if ARMS[Arm(arm)].trigger:  # trigger cases, scored on their own: the right decisions
            return self.pair(arm, arm), True
        return self.pair(Arm.WITH_SKILL, arm), False

    def pass_rate(self, arm: str) -> float | None:
        """The arm's pass rate over the paired cases: the mean of their per-case rates."""
        pairing, first = self._paired_for(arm)
        rate = pairing.paired.p_skill if first else pairing.paired.p_baseline
        return None if rate is None else float(rate)

    def pass_rate_ci(self, arm: str) -> tuple[float, float] | None:
        """The arm's 95% interval over the paired cases (continuity-corrected Wilson)."""
        rate, n = self.pass_rate(arm), self._paired_for(arm)[0].paired.n
        return stats.wilson_cc(rate, n) if rate is not None and n else None

    @property
    def lift(self) -> float | None:
        lift = self.pairing.paired.lift
        return None if lift is None else float(lift)

    @property
    def lift_ci(self) -> tuple[float, float] | None:
        return self.pairing.paired.lift_ci()

    def uninformative_cases(self) -> list[tuple[str, str]]:
        """Cases that measure nothing: every run of both arms passed, or every run of both failed."""
        found = []
        for case, arms in sorted(self.cases.items()):
            values = list(arms.get(Arm.BASELINE, {}).values()) + list(arms.get(Arm.WITH_SKILL, {}).values())
            if not arms.get(Arm.BASELINE) or not arms.get(Arm.WITH_SKILL) or None in values:
                continue
            if all(values):
                found.append((case, "passes in both arms in every run"))
            elif not any(values):
                found.append((case, "fails in both arms in every run"))
        return found

    def triggering(self) -> TriggerReport | None:
        """Recall and false triggers over the trigger cases (None: no trigger case scored); under
        --upskill-against each paired with the catalog's descriptions at REF."""
        if Arm.TRIGGER not in self.arms:
            return None
        should, near = (
            self.pair(Arm.TRIGGER, Arm.TRIGGER, True).paired,
            self.pair(Arm.TRIGGER, Arm.TRIGGER, False).paired,
        )
        if not should.n and not near.n:
            return None
        values: dict[str, Any] = {}
        if should.n:
            values["recall"], values["recall_ci"] = float(should.p_skill), should.pass_rate_ci()  # type: ignore[arg-type]
        if near.n:
            lo, hi = near.pass_rate_ci() or (0.0, 1.0)
            values["false_trigger"], values["false_trigger_ci"] = 1 - float(near.p_skill), (1 - hi, 1 - lo)  # type: ignore[arg-type]
        for name, flag in (("recall_change", True), ("near_miss_change", False)):
            change = self.trigger_change(flag)
            if change is not None and change.n:
                values[name] = Comparison.of(change, stats.Z95)
        return TriggerReport(should_trigger=should.n, should_not_trigger=near.n, routed_elsewhere=self.routed, **values)

    def trigger_change(self, should: bool) -> stats.Paired | None:
        """The right decisions on the trigger cases that should (or should not) trigger: now against
        the catalog's descriptions at REF, paired by case (None where that arm did not run)."""
        if Arm.PREVIOUS_TRIGGER not in self.arms:
            return None
        return self.pair(Arm.TRIGGER, Arm.PREVIOUS_TRIGGER, should).paired

    def token_delta(self) -> TokenDelta:
        b, s = self.baseline, self.with_skill
        return TokenDelta(
            input_tokens=s.input_tokens - b.input_tokens,
            output_tokens=s.output_tokens - b.output_tokens,
            input_tokens_relative=stats.relative_change(b.input_tokens, s.input_tokens),
            output_tokens_relative=stats.relative_change(b.output_tokens, s.output_tokens),
        )

    def to_model(self, prices: Prices = NO_PRICES) -> ResultReport:
        pairing = self.pairing
        arms: dict[str, ArmReport] = {}
        for arm in Arm:
            if arm not in self.arms and arm not in (Arm.BASELINE, Arm.WITH_SKILL):
                continue
            on = self._paired_for(arm)[0]
            arms[arm] = self.arms[arm].to_model(self.pass_rate(arm), self.pass_rate_ci(arm), on.counts[arm], prices)
        compared = {
            d.compared: Comparison.of(paired, stats.level(d.confidence).z)
            for d in COMPARED
            if d.compared and (paired := self.comparison(d.arm)) is not None and paired.n
        }
        values: dict[str, Any] = {**arms, **compared}
        if self.against:
            values["against"] = self.against
        triggering = self.triggering()
        if triggering is not None:
            values["triggering"] = triggering
        if self.thresholds:
            values["thresholds"] = self.thresholds
        return ResultReport(
            skill=self.skill,
            model=self.model,
            **values,
            paired_cases=pairing.paired.n,
            unpaired_cases=[CaseWhy(case=c, why=why) for c, why in pairing.left_out],
            lift=self.lift,
            lift_ci=self.lift_ci,
            activation_rate=self.with_skill.activation_rate,
            token_delta=self.token_delta(),
            uninformative_cases=[CaseWhy(case=c, why=why) for c, why in self.uninformative_cases()],
            cases=[
                CaseRuns(
                    case=case,
                    **_runs_by_arm(by_arm),
                    should_trigger=self.should.get(case),
                    trials=[self.details[case][key] for key in sorted(self.details[case])],
                )
                for case, by_arm in sorted(self.cases.items())
            ],
        )


def _runs_by_arm(by_arm: dict[str, dict[int, bool | None]]) -> dict[str, Any]:
    """A case's runs per arm, in run order: the two arms always, the others where they ran."""
    return {
        arm: [runs[r] for r in sorted(runs)]
        for arm in Arm
        if (runs := by_arm.get(arm, {})) or arm in (Arm.BASELINE, Arm.WITH_SKILL)
    }


STATISTICS = {
    "unit": "case: each case's scored runs are averaged; only cases scored in both arms count",
    "confidence": 0.95,
    "lift_interval": "Newcombe 1998 method 10 (hybrid score, corrected phi) on the paired table of per-case rates, "
    "each arm over its Kish effective number of units (the cases with one run per case)",
    "pass_rate_interval": "Wilson score with continuity correction (Newcombe 1998 method 4) over the paired cases",
    "thresholds": "compared exactly (figures are ratios of counts); an interval bound within "
    f"{stats.TOLERANCE:g} of a threshold meets it",
}


class Aggregator:
    """Collects outcomes (once per trial) and builds results in a stable order."""

    def __init__(self, model_order: list[str] | None = None):
        self.model_order = model_order or []
        self._results: dict[tuple[str, str], Result] = {}
        self.trials = 0
        self.cached_elsewhere = 0  # trials of merged shards that came from their caches (shards.py)

    def add(self, outcome: Outcome, thresholds: dict[str, float] | None = None) -> None:
        key = (outcome.skill, outcome.model)
        if key not in self._results:
            self._results[key] = Result(*key)
        self._results[key].add(outcome, thresholds)
        self.trials += 1

    def results(self) -> list[Result]:
        order = {name: i for i, name in enumerate(self.model_order)}
        return [
            self._results[k] for k in sorted(self._results, key=lambda k: (k[0], order.get(k[1], len(order)), k[1]))
        ]

    @property
    def cached(self) -> int:
        return self.cached_elsewhere + sum(t.cached for r in self.results() for t in r.tallies())

    def report(self, prices: dict[str, Prices] | None = None, **sections: Any) -> Report:
        """The report; ``sections`` (run, missing, throttling, ...) are set as given."""
        results = self.results()
        prices = prices or {}
        return Report(
            schema_version=SCHEMA_VERSION,
            statistics=STATISTICS,
            trials=self.trials,
            errors=sum(t.errors for r in results for t in r.tallies()),
            cached=self.cached,
            errors_by_model=self.errors_by_model(),
            results=[r.to_model(prices.get(r.model, NO_PRICES)) for r in results],
            **sections,
        )

    def errors_by_model(self) -> dict[str, dict[str, int]]:
        """model -> error kind -> unscored trials, for every model with an error."""
        found: dict[str, Counter[str]] = {}
        for r in self.results():
            kinds = sum((t.error_kinds for t in r.tallies()), Counter[str]())
            if kinds:
                found.setdefault(r.model, Counter()).update(kinds)
        return {model: dict(sorted(kinds.items())) for model, kinds in found.items()}

    def suite_properties(self) -> list[tuple[str, str]]:
        """Per skill x model figures for the JUnit <testsuite> properties."""
        props = []
        for r in self.results():
            prefix = f"upskill.{r.skill}.{r.model}."
            ci = r.lift_ci
            delta = r.token_delta()
            props += [
                (prefix + "baseline", counts(r, "baseline")),
                (prefix + "with_skill", counts(r, "with_skill")),
                (prefix + "lift", _num(r.lift)),
                (prefix + "lift_ci", f"{_num(ci[0])},{_num(ci[1])}" if ci else ""),
                (prefix + "input_tokens_delta", str(delta.input_tokens)),
                (prefix + "output_tokens_delta", str(delta.output_tokens)),
                (prefix + "errors", str(sum(t.errors for t in r.tallies()))),
            ]
            if r.with_skill.offered:
                props.append((prefix + "activation_rate", _num(r.with_skill.activation_rate)))
            triggering = r.triggering()
            if triggering is not None:  # trigger cases among the catalog
                props += [
                    (prefix + "trigger_recall", _num(triggering.recall)),
                    (prefix + "false_trigger", _num(triggering.false_trigger)),
                ]
            change = r.comparison(Arm.PREVIOUS)
            if change is not None and change.lift is not None:  # --upskill-against: with skill - previous
                lo, hi = change.lift_ci() or (0.0, 0.0)
                props += [
                    (prefix + "change", _num(float(change.lift))),
                    (prefix + "change_ci", f"{_num(lo)},{_num(hi)}"),
                ]
        return props


class RunLedger:
    """The controller's bookkeeping beside the outcomes: which trials the run expected and which
    ended (the rest are ``missing``: a crashed worker, a run stopped early), failures that are no
    trial's, and what xdist workers send besides their reports (cache problems, throttling)."""

    def __init__(self) -> None:
        self.expected: list[str] = []
        self.finished: set[str] = set()
        self.other_failures = 0  # failed tests that are not scored trials: the user's own, a crashed worker's item
        self.cache_problems: list[str] = []  # "path: reason"
        self.throttling: dict[
            str, dict[str, Any]
        ] = {}  # model -> 429s met and the lowest concurrency, over every process
        # (skill, model) -> the skipped cases standing for its trials: how many, why, the skill's own gates
        self.skipped: dict[tuple[str, str], dict[str, Any]] = {}

    def expect(self, nodeids: Iterable[str]) -> None:
        """The node ids collected; under xdist every worker sends the same list, the first one counts."""
        if not self.expected:
            self.expected = [i for i in nodeids if in_case_file(i)]

    def record(self, nodeid: str, when: str, skipped: bool, failed: bool, has_outcome: bool) -> None:
        if (when == "teardown" and has_outcome) or skipped:  # skipped: a case that runs no trial
            self.finished.add(nodeid)
        elif failed and not has_outcome:
            self.other_failures += 1

    def missing(self) -> list[str]:
        return [nodeid for nodeid in self.expected if nodeid not in self.finished]

    def record_skip(self, about: dict[str, Any]) -> None:
        """A skipped case's report: the skill × models it stands for (collect.SkippedCase)."""
        for model in about["models"]:
            seen = self.skipped.setdefault(
                (about["skill"], model), {"trials": 0, "reasons": [], "thresholds": about.get("thresholds")}
            )
            seen["trials"] += 1
            if about["reason"] not in seen["reasons"]:
                seen["reasons"].append(about["reason"])

    def wholly_skipped(self, ran: Iterable[tuple[str, str]]) -> list[SkippedReport]:
        """The skill × model pairs of which no trial ran, every one skipped (``ran``: the pairs that have results)."""
        done = set(ran)
        return [
            SkippedReport(skill=skill, model=model, **seen)
            for (skill, model), seen in sorted(self.skipped.items())
            if (skill, model) not in done
        ]

    def add_problems(self, problems: Iterable[str]) -> None:
        self.cache_problems.extend(p for p in problems if p not in self.cache_problems)

    def add_throttling(self, per_model: dict[str, dict[str, Any]]) -> None:
        for model, seen in per_model.items():
            merged = self.throttling.setdefault(model, dict(seen, throttled=0, slowed=0))
            merged["throttled"] += seen["throttled"]
            merged["slowed"] += seen.get("slowed", 0)
            merged["slots"] = merged.get("slots") or seen.get("slots")
            merged["lowest_concurrency"] = min(merged["lowest_concurrency"], seen["lowest_concurrency"])


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def counts(r: Result, arm: str) -> str:
    """``passed/scored`` over the paired cases' trials of the arm."""
    passed, scored = r.pairing.counts[arm]
    return f"{passed}/{scored}"


def arm_cost(arm: ArmTally, prices: Prices) -> float | None:
    """USD spent on one arm's trials, or None without prices; cached input at the cache prices."""
    if not prices.known:
        return None
    return prices.cost(arm.input_tokens, arm.output_tokens, arm.cache_read_tokens, arm.cache_write_tokens)


def cost(result: Result, prices: Prices) -> float | None:
    """USD spent on this skill x model (every arm), or None without prices."""
    spent = [arm_cost(t, prices) for t in result.tallies()]
    return None if not spent or None in spent else sum(x for x in spent if x is not None)
