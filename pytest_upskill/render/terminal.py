"""The terminal role: the report header, the plan (--upskill-plan), the summary a run prints and
the line that says why the exit status is what it is, from what the controller gathered
(pytest-xdist keeps its terminal reporting apart from the session in the same way)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pytest_upskill.engine.arms import ARMS
from pytest_upskill.engine.budget import ModelPlan, plan_lines
from pytest_upskill.engine.trials import is_no_cases
from pytest_upskill.models import NO_MODEL, ModelSpec, price_source
from pytest_upskill.plugin.collect import TrialItem
from pytest_upskill.plugin.controller import Controller
from pytest_upskill.plugin.session import UpskillRun
from pytest_upskill.render.text import audit_lines, reliability_lines, terminal_lines
from pytest_upskill.render.views import LEGEND, matrix_lines
from pytest_upskill.results.aggregate import Result
from pytest_upskill.results.gates import resolution_line
from pytest_upskill.results.sequential import runs_used
from pytest_upskill.results.stats import Level, sequential_level
from pytest_upskill.scoring.sandbox import missing_defences
from pytest_upskill.types import Arm, CacheMode, printable


def experiment_line(ref: str, margin: float) -> str:
    """What the verdicts of --upskill-against mean, under them."""
    return (
        f"the change against {ref} (with skill − previous, paired): NO WORSE passes (its 95% interval at or above "
        f"-{margin * 100:.0f}%: non-inferiority, --upskill-max-regression), REGRESSION and INCONCLUSIVE fail; "
        "INVALID fails (a control: the harness, not the skill); UNCHANGED, MOVED, PLACEBO and DELETED are "
        "information (error rates: docs/ci.md)"
    )


def auto_run_lines(
    results: list[Result],
    not_needed: dict[tuple[str, str], int],
    most: int,
    level_for: Callable[[Result], Level],
    specs: list[ModelSpec],
) -> list[str]:
    """--upskill-runs auto: how many runs each skill × model took, and what that saved."""
    levels = ", ".join(sequential_level(k, most).label for k in range(1, most + 1))
    lines = [
        f"auto runs: at most {most} per case; a skill × model stops at the first look that decides its verdicts; "
        f"look k is read at a level that spends its share of the error ({levels}), and a verdict at its look's, so "
        "stopping early keeps the error rates"
    ]
    for r in results:
        used = runs_used(r)
        skipped = not_needed.get((r.skill, r.model), 0)
        lines.append(
            f"  {r.skill} × {r.model}: {used} of {most} run(s) used, read at {level_for(r).label}; {skipped} trial(s) "
            "not needed"
        )
    cold = [s.name for s in specs if s.repeats_answers]
    if cold:
        lines.append(
            f"  {', '.join(cold)}: temperature 0, one run: a deterministic model repeats its answer, so extra runs "
            "are skipped"
        )
    return lines


def catalog_lines(run: UpskillRun) -> list[str]:
    """The skills the trigger cases were offered among, what was left out, and the blast radius."""
    catalog = run.catalogs.catalog
    where = (
        f"--upskill-catalog {run.settings.catalog}" if run.settings.catalog else "every SKILL.md under the paths given"
    )
    names = catalog.names()
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    lines = [f"catalog: the trigger cases offered {len(names)} skill(s) by name and description ({where}): {shown}"]
    lines += [f"catalog warning: {problem}" for problem in catalog.problems]
    changed = run.catalogs.changed if (run.changed is not None or run.against is not None) else ()
    if changed:
        ref = run.settings.against or run.settings.changed_since
        paired = (
            "each paired with the catalog's descriptions at the ref (at REF lines, and the verdicts below)"
            if run.against is not None
            else "judged by their gates; --upskill-against pairs each with the catalog at the ref"
        )
        lines.append(
            f"blast radius: the description of {', '.join(changed)} differs at {ref}, and a description decides when "
            f"a skill loads: the trigger cases of every skill ran, {paired}"
        )
    return lines


def arms_line(by_arm: dict[str, ModelPlan]) -> str:
    """--upskill-plan: the trials of each arm, and what the previous arm and the controls add."""
    # (the trigger arm runs other cases, the trigger cases, and adds nothing to the others)
    shown = ", ".join(f"{ARMS[Arm(a)].label} {by_arm[a].trials}" for a in Arm if a in by_arm)
    extra = [p for a, p in by_arm.items() if a not in (Arm.BASELINE, Arm.WITH_SKILL, Arm.TRIGGER)]
    line = f"arms: {shown} trial(s)"
    if Arm.TRIGGER in by_arm:
        line += " (a trigger trial sends a second request where the model answers first)"
    if not extra:
        return line
    costs = [p.cost for p in extra]
    cost = f", at most ${sum(c for c in costs if c is not None):.4f}" if costs and None not in costs else ""
    return (
        f"{line}; the previous arm and the controls add {sum(p.trials for p in extra)} trial(s), "
        f"{sum(p.requests for p in extra)} request(s){cost}"
    )


class TerminalSummary:
    """Registered beside the controller; pytest calls its hooks."""

    def __init__(self, controller: Controller):
        self.controller = controller
        self.run = controller.run

    def pytest_report_header(self) -> str | None:
        """The models under test; nothing where none is named (a project that tests no skill)."""
        run = self.run
        if run.shards is not None:
            names = ", ".join(run.settings.merge)
            return f"upskill: merging {len(run.shards.paths)} shard reports ({names}); nothing is sent"
        return f"upskill: models {', '.join(s.name for s in run.specs)}" if run.specs else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """--upskill-plan: say what the run would send and cost, and run nothing."""
        run = self.run
        if not run.settings.plan or run.config.getoption("collectonly"):
            return None
        plans: dict[str, ModelPlan] = {}
        by_arm: dict[str, ModelPlan] = {}
        skills: dict[str, tuple[set[str], set[int], float | None]] = {}  # skill -> cases, runs, min_lift
        for item in session.items:
            if not isinstance(item, TrialItem):
                continue
            t = item.trial
            cached = run.is_cached(t.spec, t.first_request(), t.run, t.cache_salt)
            plans.setdefault(t.model, ModelPlan(t.model)).add(t.spec, t.request, cached)
            by_arm.setdefault(t.arm, ModelPlan(t.arm)).add(t.spec, t.request, cached)
            if t.should_trigger is not None:  # a trigger case has no lift to size
                continue
            min_lift = run.thresholds.merged(item.thresholds).min_lift
            cases, runs, _ = skills.setdefault(t.skill, (set(), set(), min_lift))
            cases.add(t.case)
            runs.add(t.run)
        reporter = run.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:  # -p no:terminal: nothing to print, and still nothing is sent
            return True
        reporter.write_sep("=", "upskill plan")
        for line in plan_lines(list(plans.values())):
            reporter.write_line(line)
        source = price_source(run.specs)
        if source:
            reporter.write_line(source)
        if set(by_arm) - {Arm.BASELINE, Arm.WITH_SKILL}:
            reporter.write_line(arms_line(by_arm))
        if run.settings.auto_runs:
            reporter.write_line(
                f"--upskill-runs auto: these are the most, {run.settings.runs} run(s) per case; a skill × model "
                "stops at the first look that decides it (often after one run), and the controls run once"
            )
        varied = any(not s.repeats_answers for s in run.specs)  # at temperature 0 runs repeat the answers
        for skill, (cases, runs, min_lift) in sorted(skills.items()):
            reporter.write_line(resolution_line(skill, len(cases), len(runs), min_lift, run.effect, varied))
        cold = [s.name for s in run.specs if s.repeats_answers]
        if cold and any(len(runs) > 1 for _, runs, _ in skills.values()):
            reporter.write_line(
                f"note: {', '.join(cold)} answer at temperature 0: where that makes the answers the same every time, "
                "runs after the first repeat them, multiplying the cost and buying no precision (a case's rate stays "
                "0 or 1); the power above assumes answers that vary"
            )
        return True

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        run, state = self.run, self.controller
        results = state.aggregator.results()

        def write(line: str) -> None:  # every line may hold text of a model or a pull request's file
            terminalreporter.write_line(printable(line))

        unseen = run.unseen.line()
        if not run.specs and state.ledger.expected:
            terminalreporter.write_sep("=", "upskill: no trial ran", yellow=True)
            empty = sum(map(is_no_cases, state.ledger.expected))  # skills with no case
            found = len(state.ledger.expected) - empty
            write(
                f"upskill: {NO_MODEL}; the {found} case(s) found were skipped"
                + (f" ({empty} skill(s) have no case at all)" if empty else "")
                + ", and nothing was measured"
            )
        if unseen:
            write(unseen)
        report = state.report
        if report is None or (not results and not report.missing and not report.skipped):
            return
        terminalreporter.write_sep("=", "upskill: lift per skill × model")
        for line in terminal_lines(results, {s.name: s.prices for s in run.specs}):
            write(line)
        wholly = {(g.skill, g.model) for g in report.skipped}
        for (skill, model), seen in sorted(state.ledger.skipped.items()):  # partly skipped: why, without -rs
            if (skill, model) not in wholly:
                write(f"{skill} × {model}: {seen['trials']} trial(s) skipped: {'; '.join(seen['reasons'])}")
        for gone in report.skipped:  # every skill is listed, with what happened to it
            write(f"{gone.skill} × {gone.model}: not measured: all {gone.trials} of its trial(s) were skipped")
            for reason in gone.reasons:
                write(f"  skipped: {reason}")
        if run.shards is not None:
            write(f"{state.aggregator.trials} trial(s) from {len(run.shards.paths)} shard reports")
        else:
            cached, trials = state.aggregator.cached, state.aggregator.trials
            write(
                f"{cached} of {trials} trial(s) came from the cache ({run.cache.root})"
                if run.cache_mode != CacheMode.OFF
                else "cache off"
            )
        for spec in run.specs:
            if spec.note:
                write(f"note: {spec.note}")
        if any(r.should for r in results):
            for line in catalog_lines(run):
                write(line)
        for line in audit_lines(results):
            write(f"audit: {line}")
        if any(r.baseline.agentic or r.with_skill.agentic for r in results) and missing_defences():
            write(
                f"sandbox: this machine refuses {', '.join(missing_defences())} to the programs the models wrote; "
                "the other defences held (see SECURITY.md)"
            )
        for problem in state.ledger.cache_problems:
            write(f"cache warning: {problem} (ignored and fetched again)")
        for line in reliability_lines(report, run.error_limit.describe()):
            write(line)
        if run.settings.auto_runs:
            for line in auto_run_lines(results, state.not_needed, run.settings.max_runs, run.level_for, run.specs):
                write(line)
        budget = report.budget
        if budget and budget.not_sent:
            write(
                f"budget: stopped sending at ${budget.spent:.4f} spent of ${budget.limit:g}; "
                f"{budget.not_sent} trial(s) not sent "
                "(errors of kind over_budget); finished trials are kept"
            )
        if state.evaluation and (state.evaluation.verdicts or state.evaluation.regressions):
            terminalreporter.write_sep("=", "upskill: gates")
            for line in state.evaluation.lines():
                write(line)
            if state.evaluation.verdicts:
                write(state.evaluation.rule_line())
                if len(state.evaluation.verdicts) > 1:
                    write(state.evaluation.family_line())
            if run.against is not None:
                write(experiment_line(run.against.ref, run.compare_rule.max_regression))
        compared = run.settings.compare
        if compared and state.evaluation is not None and not state.evaluation.failing_changes:
            write(
                f"compared with {compared} (--upskill-compare): no regression shown; a flipped case is listed "
                "for review and never fails the run"
            )
        results_seen = report.results
        if len({r.skill for r in results_seen}) > 1 and len({r.model for r in results_seen}) > 1:
            terminalreporter.write_sep("=", "upskill: skill × model (pass rate baseline → with skill, lift)")
            for line in matrix_lines(results_seen, report.verdicts):
                write(line)
            if report.verdicts:
                write(LEGEND)
        for path, what in ((run.settings.report, "JSON report"), (run.settings.html, "HTML report")):
            if path and not any(p.startswith(f"could not write the {what} {path}:") for p in state.write_problems):
                write(f"{what} written to {path}")
        if state.history_written is not None:
            write(
                f"history: this run added as {state.history_written}; see the runs with: "
                f"pytest-upskill runs {run.history}"
            )
        for problem in state.write_problems:
            write(f"upskill: {problem} (exit status 1)")


class ExitLine:
    """Why the exit status is what it is: the last line before pytest's counts, after pytest's own
    short summary of failures (this wrapper's second half runs after every other summary). Its own
    plugin object: the summary above is an ordinary implementation of the same hook."""

    def __init__(self, controller: Controller):
        self.controller = controller

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Iterator[None]:
        result = yield
        if self.controller.exit_line:
            terminalreporter.write_line(printable(self.controller.exit_line), bold=True)
        return result
