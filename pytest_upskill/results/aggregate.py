"""Aggregate outcomes per skill x model into results, and render them: terminal, JSON, JUnit.

Outcomes arrive typed (read from each trial's report by plugin/wire.py, under xdist too) in any
order; everything here is sorted so that a plain run and ``-n N`` give the same report.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

from pytest_upskill.engine.nodeids import in_case_file, parse_nodeid
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
    PairedCounts,
    PromptCache,
    RegressionReport,
    Report,
    ResultReport,
    SkippedReport,
    TokenDelta,
    Tokens,
    TrialReport,
    VerdictReport,
)
from pytest_upskill.types import Outcome

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
class Arm:
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


def _why_unpaired(arms: dict[str, dict[int, bool | None]]) -> str:
    reasons = []
    for arm, label in (("baseline", "baseline"), ("with_skill", "with skill")):
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
    baseline: Arm = field(default_factory=Arm)
    with_skill: Arm = field(default_factory=Arm)
    # case -> arm -> run -> passed (None = error)
    cases: dict[str, dict[str, dict[int, bool | None]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    thresholds: dict[str, float] = field(default_factory=dict)  # the skill's own, from skill_meta.json
    # case -> (arm, run) -> what the trial answered (from its report's detail)
    details: dict[str, dict[tuple[str, int], TrialReport]] = field(default_factory=lambda: defaultdict(dict))
    _pairing: Pairing | None = field(default=None, repr=False, compare=False)

    def add(self, outcome: Outcome, thresholds: dict[str, float] | None = None) -> None:
        if thresholds:
            self.thresholds = thresholds
        arm, run = str(outcome.arm), outcome.run
        (self.baseline if arm == "baseline" else self.with_skill).add(outcome)
        self.cases[outcome.case][arm][run] = outcome.passed
        self.details[outcome.case][(arm, run)] = trial_report(outcome)
        self._pairing = None

    @property
    def pairing(self) -> Pairing:
        if self._pairing is None:
            skill: list[Fraction] = []
            base: list[Fraction] = []
            left_out: list[tuple[str, str]] = []
            names: list[str] = []
            runs: set[int] = set()
            counts = {"baseline": [0, 0], "with_skill": [0, 0]}
            for case in sorted(self.cases):
                arms = self.cases[case]
                s = [v for v in arms.get("with_skill", {}).values() if v is not None]
                b = [v for v in arms.get("baseline", {}).values() if v is not None]
                if not (s and b):
                    left_out.append((case, _why_unpaired(arms)))
                    continue
                skill.append(stats.case_rate(s))
                base.append(stats.case_rate(b))
                names.append(case)
                runs.update((len(s), len(b)))
                for arm, scored in (("with_skill", s), ("baseline", b)):
                    counts[arm][0] += sum(scored)
                    counts[arm][1] += len(scored)
            self._pairing = Pairing(
                stats.Paired(tuple(skill), tuple(base), counts["with_skill"][1], counts["baseline"][1]),
                {k: (v[0], v[1]) for k, v in counts.items()},
                left_out,
                len(runs) <= 1,
                tuple(names),
            )
        return self._pairing

    def pass_rate(self, arm: str) -> float | None:
        """The arm's pass rate over the paired cases: the mean of their per-case rates."""
        paired = self.pairing.paired
        rate = paired.p_skill if arm == "with_skill" else paired.p_baseline
        return None if rate is None else float(rate)

    def pass_rate_ci(self, arm: str) -> tuple[float, float] | None:
        """The arm's 95% interval over the paired cases (continuity-corrected Wilson)."""
        rate, n = self.pass_rate(arm), self.pairing.paired.n
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
            values = list(arms.get("baseline", {}).values()) + list(arms.get("with_skill", {}).values())
            if not arms.get("baseline") or not arms.get("with_skill") or None in values:
                continue
            if all(values):
                found.append((case, "passes in both arms in every run"))
            elif not any(values):
                found.append((case, "fails in both arms in every run"))
        return found

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
        arms = {
            arm: getattr(self, arm).to_model(self.pass_rate(arm), self.pass_rate_ci(arm), pairing.counts[arm], prices)
            for arm in ("baseline", "with_skill")
        }
        return ResultReport(
            skill=self.skill,
            model=self.model,
            baseline=arms["baseline"],
            with_skill=arms["with_skill"],
            paired_cases=pairing.paired.n,
            unpaired_cases=[CaseWhy(case=c, why=why) for c, why in pairing.left_out],
            lift=self.lift,
            lift_ci=self.lift_ci,
            activation_rate=self.with_skill.activation_rate,
            token_delta=self.token_delta(),
            uninformative_cases=[CaseWhy(case=c, why=why) for c, why in self.uninformative_cases()],
            **({"thresholds": self.thresholds} if self.thresholds else {}),
            cases=[
                CaseRuns(
                    case=case,
                    baseline=[arms.get("baseline", {}).get(r) for r in sorted(arms.get("baseline", {}))],
                    with_skill=[arms.get("with_skill", {}).get(r) for r in sorted(arms.get("with_skill", {}))],
                    trials=[self.details[case][key] for key in sorted(self.details[case])],
                )
                for case, arms in sorted(self.cases.items())
            ],
        )


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
        self.cached_elsewhere = 0  # trials of merged shards that came from their caches (merge.py)

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
        return self.cached_elsewhere + sum(r.baseline.cached + r.with_skill.cached for r in self.results())

    def report(self, prices: dict[str, Prices] | None = None, **sections: Any) -> Report:
        """The report; ``sections`` (run, missing, throttling, ...) are set as given."""
        results = self.results()
        prices = prices or {}
        return Report(
            schema_version=SCHEMA_VERSION,
            statistics=STATISTICS,
            trials=self.trials,
            errors=sum(r.baseline.errors + r.with_skill.errors for r in results),
            cached=self.cached,
            errors_by_model=self.errors_by_model(),
            results=[r.to_model(prices.get(r.model, NO_PRICES)) for r in results],
            **sections,
        )

    def errors_by_model(self) -> dict[str, dict[str, int]]:
        """model -> error kind -> unscored trials, for every model with an error."""
        found: dict[str, Counter[str]] = {}
        for r in self.results():
            kinds = r.baseline.error_kinds + r.with_skill.error_kinds
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
                (prefix + "errors", str(r.baseline.errors + r.with_skill.errors)),
            ]
            if r.with_skill.offered:
                props.append((prefix + "activation_rate", _num(r.with_skill.activation_rate)))
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


def reliability_lines(report: Report, error_limit: str) -> list[str]:
    """Errors per model with their kinds, trials with no outcome, throttling, the error limit
    (``error_limit``: --upskill-max-errors in words)."""
    lines = []
    for model, kinds in report.errors_by_model.items():
        lines.append(
            f"errors: {model}: {sum(kinds.values())} trial(s) not scored "
            f"({', '.join(f'{k} {n}' for k, n in kinds.items())})"
        )
    missing = report.missing
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        lines.append(
            f"missing: {len(missing)} trial(s) produced no outcome (a worker crashed or the run stopped early): {shown}"
        )
    for model, seen in report.throttling.items():
        lines.extend(pacing_lines(model, seen))
    limit = report.error_limit
    if limit and limit.unscored:
        verdict = "the run fails" if limit.exceeded else "tolerated"
        lines.append(
            f"error limit: {limit.unscored} unscored trial(s), --upskill-max-errors allows {limit.allowed} "
            f"({error_limit}): {verdict}"
        )
    return lines


def pacing_lines(model: str, seen: dict[str, Any]) -> list[str]:
    """How the bound on a model's requests in flight moved, and why."""
    lines, went = [], f"requests in flight went down to {seen['lowest_concurrency']} of {seen['concurrency']}"
    if seen.get("slots"):
        lines.append(
            f"paced: {model}: the server serves {seen['slots']} request(s) at a time (it says so at /props); "
            f"at most {min(seen['slots'], seen['concurrency'])} sent at once"
        )
    if seen.get("slowed"):
        lines.append(
            f"paced: {model}: answers slowed as requests queued on the server; {went} (time spent queued behind "
            "the run's own requests does not count toward --upskill-timeout)"
        )
    if seen.get("throttled"):
        lines.append(f"throttled: {model} answered 429 {seen['throttled']} time(s); {went} and back up as answers came")
    return lines


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


# ------------------------------------------------------------------------------------ terminal

BAR_WIDTH = 20


def bar(fraction: float | None) -> str:
    filled = round((fraction or 0.0) * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.0f}%" if signed else f"{value * 100:.0f}%"


def _tokens(before: int, after: int) -> str:
    change = stats.relative_change(before, after)
    return f"{before:,} → {after:,}" + (f" ({change * 100:+.0f}%)" if change is not None else "")


def _names(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def counts(r: Result, arm: str) -> str:
    """``passed/scored`` over the paired cases' trials of the arm."""
    passed, scored = r.pairing.counts[arm]
    return f"{passed}/{scored}"


def _aligned(r: Result, arm: str) -> str:
    passed, scored = r.pairing.counts[arm]
    return f"{passed:>4}/{scored:<4}"


INTERVALS = (
    "rates and lift over the cases scored in both arms; 95% CI: Newcombe's paired score interval "
    "(method 10) over cases, narrowed by what several runs show; continuity-corrected Wilson for a pass rate "
    "(README: The statistics)"
)


def terminal_lines(results: list[Result], prices: dict[str, Prices] | None = None) -> list[str]:
    lines: list[str] = []
    for r in results:
        b, s = r.baseline, r.with_skill
        pairing = r.pairing
        runs = max((len(runs) for arms in r.cases.values() for runs in arms.values()), default=0)
        n = len(r.cases)
        lines.append(f"{r.skill} × {r.model}  ({n} case{'s' if n != 1 else ''} × {runs} run{'s' if runs != 1 else ''})")
        if not (b.total and s.total):  # one arm deselected (-k): nothing to compare
            ran, arm = (b, "baseline") if b.total else (s, "with skill")
            lines.append(
                f"  {arm:<11} {ran.passed}/{ran.total} passed; the other arm was not run (deselected), so there is no "
                "lift"
            )
            lines.append(f"  tokens      in {ran.input_tokens:,}   out {ran.output_tokens:,} ({arm} only)")
        else:
            p_base, p_skill = r.pass_rate("baseline"), r.pass_rate("with_skill")
            lines.append(f"  baseline    {bar(p_base)} {_aligned(r, 'baseline')} {pct(p_base):>4}")
            ci = r.lift_ci
            lift = f"lift {pct(r.lift, True)}" + (f" [95% CI {pct(ci[0], True)}, {pct(ci[1], True)}]" if ci else "")
            lines.append(f"  with skill  {bar(p_skill)} {_aligned(r, 'with_skill')} {pct(p_skill):>4}  {lift}")
            lines.append(
                f"  tokens      in {_tokens(b.input_tokens, s.input_tokens)}   out "
                f"{_tokens(b.output_tokens, s.output_tokens)}   (totals, no interval)"
            )
        cache_figures = b.cache_read_tokens + s.cache_read_tokens + b.cache_write_tokens + s.cache_write_tokens
        replayed = b.cached == b.total and s.cached == s.total  # every answer from the response cache: none sent now
        if cache_figures and b.total and s.total and not replayed:
            shares = [pct(stats.rate(a.cache_read_tokens, a.input_tokens)) for a in (b, s)]
            written = b.cache_write_tokens + s.cache_write_tokens
            lines.append(
                f"  cached in   {b.cache_read_tokens:,} → {s.cache_read_tokens:,} of the input tokens read from the "
                f"prompt cache ({shares[0]} → {shares[1]})" + (f"; {written:,} written to it" if written else "")
            )
        spent = [arm_cost(a, (prices or {}).get(r.model, NO_PRICES)) for a in (b, s)]
        if spent[0] is not None and spent[1] is not None:
            lines.append(
                f"  cost        ${spent[0]:.4f} → ${spent[1]:.4f} ({spent[1] - spent[0]:+.4f} USD with the skill; "
                "the alias's prices per million tokens; totals, no interval)"
            )
        if b.capped or s.capped:
            shown = " → ".join(f"{a.capped}/{a.total}" for a in (b, s) if a.total)  # an arm deselected is not shown
            lines.append(
                f"  token cap   {shown} answers stopped at max_tokens, not where the model ended them (set max_tokens "
                "in the case or the model's alias)"
            )
        lines += agent_lines(r)
        for note, n in sorted((b.notes + s.notes).items()):
            lines.append(f"  note        {n} trial(s): {note}")
        errors = b.errors + s.errors
        if errors:
            kinds = ", ".join(f"{k} {n}" for k, n in sorted((b.error_kinds + s.error_kinds).items()))
            lines.append(f"  errors      {errors} trial(s) not scored, left out of the rates: {kinds}")
        if pairing.left_out and b.total and s.total:
            left = len(pairing.left_out)
            lines.append(
                f"  unpaired    {left} case{'s' if left != 1 else ''} not scored in both arms, left out of the rates "
                "and the lift: " + _names([f"{case} ({why})" for case, why in pairing.left_out])
            )
        if not pairing.balanced:
            lines.append(
                "  note        unequal scored runs per case: each rate is the mean of the per-case rates (the case is "
                "the unit)"
            )
    if results:
        total_errors = sum(r.baseline.errors + r.with_skill.errors for r in results)
        lines.append(
            f"{len(results)} skill × model result(s); {total_errors} trial(s) could not be scored"
            if total_errors
            else f"{len(results)} skill × model result(s); every trial scored"
        )
        lines.append(INTERVALS)
    return lines


def _mean(total: int, n: int) -> str:
    return f"{total / n:.1f}" if n else "–"


def agent_lines(r: Result) -> list[str]:
    """Turns and tool calls per trial of each arm, how often the skill was loaded, the judge's tokens."""
    b, s = r.baseline, r.with_skill
    lines = []
    if b.agentic or s.agentic:
        lines.append(
            f"  agent       turns {_mean(b.turns, b.agentic)} → {_mean(s.turns, s.agentic)} per trial, "
            f"tool calls {_mean(b.tool_calls, b.agentic)} → {_mean(s.tool_calls, s.agentic)}"
        )
    if s.offered:
        by_case = [
            [t.skill_loaded for (arm, _), t in trials.items() if arm == "with_skill" and t.skill_loaded is not None]
            for trials in r.details.values()
        ]
        rates = [sum(loaded) / len(loaded) for loaded in by_case if loaded]
        mean = sum(rates) / len(rates)
        lo, hi = stats.wilson_cc(mean, len(rates))
        lines.append(
            f"  activation  skill loaded in {s.loaded}/{s.offered} with-skill trial(s) ({pct(s.activation_rate)}); "
            f"by case {pct(mean)} [95% CI {pct(lo)}, {pct(hi)}] over {len(rates)} case(s) "
            "(progressive: name and description shown, read_skill offered)"
        )
    judge_in, judge_out = b.judge_input_tokens + s.judge_input_tokens, b.judge_output_tokens + s.judge_output_tokens
    if judge_in or judge_out:
        lines.append(f"  judge       in {judge_in:,} out {judge_out:,} tokens (llm_judge; not in the figures above)")
    return lines


def arm_cost(arm: Arm, prices: Prices) -> float | None:
    """USD spent on one arm's trials, or None without prices; cached input at the cache prices."""
    if not prices.known:
        return None
    return prices.cost(arm.input_tokens, arm.output_tokens, arm.cache_read_tokens, arm.cache_write_tokens)


def cost(result: Result, prices: Prices) -> float | None:
    """USD spent on this skill x model (both arms), or None without prices."""
    base, skill = arm_cost(result.baseline, prices), arm_cost(result.with_skill, prices)
    return None if base is None or skill is None else base + skill


AUDIT_NOTE = (
    "they measure nothing in this run, and they still belong in the suite: dropping the cases that did not "
    "discriminate after seeing the results selects on this run's noise and inflates the lift"
)


def audit_lines(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        groups: dict[str, list[str]] = defaultdict(list)
        for case, why in r.uninformative_cases():
            groups[why].append(case)
        for why, cases in groups.items():
            n, doing = len(cases), why.replace("passes", "passing").replace("fails", "failing")
            lines.append(
                f"{r.skill} × {r.model}: {n} case{'s' if n != 1 else ''} {doing}, measuring nothing: {', '.join(cases)}"
            )
    return [*lines, AUDIT_NOTE] if lines else lines


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>@~:&])")


def md(text: object) -> str:
    """Text from a skill file, a model or another job's report, as Markdown shows it literally: one
    line, every character Markdown or GitHub reads (a table's ``|``, links and images, HTML, an
    ``@mention``, a heading, emphasis) escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def markdown(
    results: list[Result],
    verdicts: list[VerdictReport],
    regressions: list[RegressionReport],
    prices: dict[str, Prices],
    cached: int,
    trials: int,
) -> str:
    """A compact summary for a pull-request comment."""
    by_key = {(v.skill, v.model): v for v in verdicts}
    activation = any(r.with_skill.offered for r in results)
    head = (
        "| skill | model | baseline | with skill | lift [95% CI] |"
        + (" skill loaded |" if activation else "")
        + " tokens in/out (Δ) | cost | verdict |"
    )
    out = ["## pytest-upskill", "", head, "|---|---|---|---|---|" + ("---|" if activation else "") + "---|---|---|"]
    total_cost = 0.0
    for r in results:
        b, s = r.baseline, r.with_skill
        ci = r.lift_ci
        lift = pct(r.lift, True) + (f" [{pct(ci[0], True)}, {pct(ci[1], True)}]" if ci else "")
        delta = r.token_delta()
        spent = cost(r, prices.get(r.model, NO_PRICES))
        total_cost += spent or 0
        verdict = by_key.get((r.skill, r.model))
        errors = b.errors + s.errors
        out.append(
            f"| {md(r.skill)} | {md(r.model)} | {counts(r, 'baseline')} | "
            f"{counts(r, 'with_skill')}{f' ({errors} errors)' if errors else ''} | {lift} "
            + (f"| {s.loaded}/{s.offered} " if activation else "")
            + f"| {delta.input_tokens:+,} / {delta.output_tokens:+,} | "
            f"{f'${spent:.4f}' if spent is not None else '–'} "
            f"| {('**' + verdict.verdict + '**') if verdict else '–'} |"
        )
    failing = [v for v in verdicts if v.fails]
    if failing:
        out += ["", "### Failing gates", ""]
        for v in failing:
            if v.why is not None:  # NOT EVALUATED: every trial skipped
                out.append(f"- **{md(v.skill)} × {md(v.model)}**: {md(v.verdict)} ({md(v.why)})")
            for f in v.findings:
                if f.fails:
                    out.append(
                        f"- **{md(v.skill)} × {md(v.model)}**: {f.figure} {f.verdict} (value {_fmt(f.value)}, "
                        f"threshold {_fmt(f.threshold)})"
                    )
    if regressions:
        out += ["", "### Against the base report (failing the run: **fails**)", ""]
        out += [
            f"- **{md(g.skill)} × {md(g.model)}** ({md(g.kind)}{', **fails**' if g.fails else ''}): {md(g.message)}"
            for g in regressions
        ]
    unpaired = [
        f"{md(r.skill)} × {md(r.model)}: {md(case)} ({md(why)})" for r in results for case, why in r.pairing.left_out
    ]
    if unpaired:
        out += [
            "",
            "<details><summary>Cases left out of the rates and the lift (not scored in both arms)</summary>",
            "",
        ]
        out += [f"- {line}" for line in unpaired] + ["", "</details>"]
    audit = audit_lines(results)
    if audit:
        out += (
            ["", "<details><summary>Cases that measure nothing</summary>", ""]
            + [f"- {md(line)}" for line in audit]
            + ["", "</details>"]
        )
    out += [
        "",
        f"{trials} trials, {cached} from the cache"
        + (f", cost ${total_cost:.4f}" if total_cost else "")
        + ". "
        + INTERVALS[0].upper()
        + INTERVALS[1:]
        + ".",
    ]
    return "\n".join(out) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.1f}%"


class Progress:
    """A line per interval during a long run: trials done per model, errors, and the time left at
    the pace so far. Fed by the controller with each trial that ends (under xdist too)."""

    def __init__(self, interval: float, labels: dict[str, str]):
        self.interval = interval
        self.models = {label: model for model, label in labels.items()}  # node-id label -> model name
        self.expected: Counter[str] = Counter()
        self.done: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.start: float | None = None
        self.last = 0.0
        self._seen: set[str] = set()  # an xfail reports twice (call and teardown): counted once
        self._ended_at = 0.0  # when a trial last ended

    def label(self, nodeid: str) -> str | None:
        found = parse_nodeid(nodeid)
        return found.label if found is not None and found.label in self.models else None

    def expect(self, nodeids: Iterable[str]) -> None:
        for nodeid in nodeids:
            label = self.label(nodeid)
            if label is not None:
                self.expected[label] += 1

    def tick(self, nodeid: str, error: bool, now: float) -> str | None:
        """Count a trial that ended; the progress line when one is due."""
        label = self.label(nodeid)
        if label is None or not self.interval or nodeid in self._seen:
            return None
        self._seen.add(nodeid)
        self._ended_at = now
        self.start = self.start if self.start is not None else now
        self.last = self.last or now
        self.done[label] += 1
        self.errors[label] += error
        if now - self.last < self.interval or sum(self.done.values()) >= sum(self.expected.values()):
            return None
        self.last = now
        elapsed = now - self.start
        parts = []
        for label, expected in self.expected.items():
            done = self.done[label]
            left = (expected - done) * elapsed / done if done else None
            eta = "" if done >= expected or left is None else f", about {_duration(left)} left"
            parts.append(f"{self.models[label]} {done}/{expected} done ({self.errors[label]} errors{eta})")
        return "upskill progress: " + "; ".join(parts)

    def quiet(self, now: float, since: float) -> str | None:
        """The line for a long wait with no trial ending (a long prompt or answer on a local model, a
        slow teacher): due once an interval has passed since the last line, or since ``since`` (the
        run's start) when there was none; None when the run is done or a line is not due."""
        total, done = sum(self.expected.values()), sum(self.done.values())
        last = max(self.last or since, since)
        waited = now - (self._ended_at if done else since)
        if not self.interval or not total or done >= total or now - last < self.interval or waited < self.interval:
            return None
        self.last = now
        return f"upskill: still at work: {done}/{total} trial(s) done, none ended in the last {_duration(waited)}"


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"
