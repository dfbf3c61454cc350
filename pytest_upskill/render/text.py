"""Every line the run prints about its results, and the formatters they share: bars, percentages,
token counts. The terminal summary (terminal.py), the progress lines, the reliability lines and the
audit are drawn here; the Markdown summary (markdown.py), the HTML report and the views use the
same formatters."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from pytest_upskill.engine.arms import COMPARED
from pytest_upskill.engine.nodeids import parse_nodeid
from pytest_upskill.models import Prices
from pytest_upskill.results import stats
from pytest_upskill.results.aggregate import NO_PRICES, Result, arm_cost
from pytest_upskill.results.report import Report
from pytest_upskill.types import Arm


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


BAR_WIDTH = 20


def bar(fraction: float | None) -> str:
    """A fraction as a bar of BAR_WIDTH cells (clamped to [0, 1])."""
    filled = max(0, min(BAR_WIDTH, round((fraction or 0.0) * BAR_WIDTH)))
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def pct(value: float | None, signed: bool = False) -> str:
    """A fraction as a whole percentage (``+`` signed where asked); ``n/a`` for none."""
    if value is None:
        return "n/a"
    return f"{value * 100:+.0f}%" if signed else f"{value * 100:.0f}%"


def _tokens(before: int, after: int) -> str:
    change = stats.relative_change(before, after)
    return f"{before:,} → {after:,}" + (f" ({change * 100:+.0f}%)" if change is not None else "")


def _names(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def other_arm_lines(r: Result) -> list[str]:
    """The previous arm and the controls, each beside the with-skill arm on the cases both scored."""
    lines = []
    for d in COMPARED:
        paired = r.comparison(d.arm)
        if paired is None:
            continue
        if not paired.n:
            lines.append(f"  {d.label:<11} {r.arms[d.arm].total} trial(s), none paired with a scored with-skill trial")
            continue
        passed, scored = r.pair(Arm.WITH_SKILL, d.arm).counts[d.arm]
        level = stats.level(d.confidence)
        ci = paired.lift_ci(level.z)
        rate = float(paired.p_baseline)  # type: ignore[arg-type]
        shown = f"{d.difference} {pct(float(paired.lift), True)}"  # type: ignore[arg-type]
        shown += f" [{level.label} CI {pct(ci[0], True)}, {pct(ci[1], True)}]" if ci else ""
        lines.append(
            f"  {d.label:<11} {bar(rate)} {passed:>4}/{scored:<4} {pct(rate):>4}  {shown} on {paired.n} case(s)"
        )
    named = r.arms.get(Arm.POSITIVE_CONTROL)
    if named is not None and named.scored:
        rate = named.passed / named.scored
        lines.append(
            f"  named       {bar(rate)} {named.passed:>4}/{named.scored:<4} {pct(rate):>4}  loaded the skill when the "
            "request named it (positive control)"
        )
    return lines


def _aligned(r: Result, arm: str) -> str:
    passed, scored = r.pairing.counts[arm]
    return f"{passed:>4}/{scored:<4}"


INTERVALS = (
    "rates and lift over the cases scored in both arms; 95% CI: Newcombe's paired score interval "
    "(method 10) over cases, narrowed by what several runs show; continuity-corrected Wilson for a pass rate "
    "(docs/statistics.md)"
)


def terminal_lines(results: list[Result], prices: dict[str, Prices] | None = None) -> list[str]:
    lines: list[str] = []
    for r in results:
        b, s = r.baseline, r.with_skill
        pairing = r.pairing
        runs = max((len(runs) for arms in r.cases.values() for runs in arms.values()), default=0)
        n, triggers = len(r.cases) - len(r.should), len(r.should)
        counted = f"{n} case{'s' if n != 1 else ''}" if n or not triggers else ""
        counted += (" and " if counted and triggers else "") + (
            f"{triggers} trigger case{'s' if triggers != 1 else ''}" if triggers else ""
        )
        lines.append(f"{r.skill} × {r.model}  ({counted} × {runs} run{'s' if runs != 1 else ''})")
        if not (b.total or s.total):  # trigger cases only
            pass
        elif not (b.total and s.total):  # one arm deselected (-k): nothing to compare
            ran, arm = (b, "baseline") if b.total else (s, "with skill")
            lines.append(
                f"  {arm:<11} {ran.passed}/{ran.total} passed; the other arm was not run (deselected), so there is no "
                "lift"
            )
            lines.append(f"  tokens      in {ran.input_tokens:,}   out {ran.output_tokens:,} ({arm} only)")
        else:
            p_base, p_skill = r.pass_rate(Arm.BASELINE), r.pass_rate(Arm.WITH_SKILL)
            lines.append(f"  baseline    {bar(p_base)} {_aligned(r, 'baseline')} {pct(p_base):>4}")
            ci = r.lift_ci
            lift = f"lift {pct(r.lift, True)}" + (f" [95% CI {pct(ci[0], True)}, {pct(ci[1], True)}]" if ci else "")
            lines.append(f"  with skill  {bar(p_skill)} {_aligned(r, 'with_skill')} {pct(p_skill):>4}  {lift}")
            lines += other_arm_lines(r)
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
        lines += trigger_lines(r)
        lines += agent_lines(r)
        for note, n in sorted(sum((t.notes for t in r.tallies()), Counter[str]()).items()):
            lines.append(f"  note        {n} trial(s): {note}")
        errors = sum(t.errors for t in r.tallies())
        if errors:
            kinds = ", ".join(
                f"{k} {n}" for k, n in sorted(sum((t.error_kinds for t in r.tallies()), Counter[str]()).items())
            )
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
        total_errors = sum(t.errors for r in results for t in r.tallies())
        lines.append(
            f"{len(results)} skill × model result(s); {total_errors} trial(s) could not be scored"
            if total_errors
            else f"{len(results)} skill × model result(s); every trial scored"
        )
        lines.append(INTERVALS)
    return lines


def rate_ci(rate: float | None, ci: tuple[float, float] | None, label: str = "95% CI ") -> str:
    """A rate and its interval: ``80% [95% CI 38%, 96%]``."""
    return pct(rate) + (f" [{label}{pct(ci[0])}, {pct(ci[1])}]" if ci else "")


def trigger_lines(r: Result) -> list[str]:
    """The trigger cases among the catalog: recall, false triggers, routing; the catalog at REF."""
    t = r.triggering()
    if t is None:
        return []
    parts = []
    if t.should_trigger:
        parts.append(f"recall {rate_ci(t.recall, t.recall_ci)} on {t.should_trigger} case(s)")
    if t.should_not_trigger:
        parts.append(
            f"false triggers {rate_ci(t.false_trigger, t.false_trigger_ci)} on {t.should_not_trigger} near miss(es)"
        )
    if t.routed_elsewhere:
        parts.append(f"routed elsewhere in {t.routed_elsewhere} trial(s)")
    lines = ["  trigger     " + " · ".join(parts) + " (the catalog offered, read_skill; loaded when it should?)"]
    for change, what in ((t.recall_change, "recall"), (t.near_miss_change, "right on near misses")):
        if change is not None:
            lines.append(
                f"  at REF      {what} {pct(change.other)} → {pct(change.with_skill)} (change "
                f"{pct(change.difference, True)} [95% CI {pct(change.ci[0], True)}, {pct(change.ci[1], True)}] on "
                f"{change.cases} case(s); the catalog's descriptions at --upskill-against)"
            )
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
            [t.skill_loaded for (arm, _), t in trials.items() if arm == Arm.WITH_SKILL and t.skill_loaded is not None]
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
        lines.append(
            f"  judge       in {judge_in:,} out {judge_out:,} tokens (llm_judge, expectations; not in the figures "
            "above)"
        )
    return lines


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
