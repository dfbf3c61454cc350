"""The controller role: the process that sees every item's report (the only process without
xdist, the xdist controller with it). It keeps the ledger of what ran, aggregates the outcomes,
writes the reports and decides the exit status. Without xdist it also starts the trials."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_upskill.engine.budget import budget_summary
from pytest_upskill.engine.trials import Trial
from pytest_upskill.errors import GitError, PreflightError
from pytest_upskill.files import write_atomic
from pytest_upskill.models import Prices
from pytest_upskill.plugin import wire
from pytest_upskill.plugin.collect import SKIPPED_PROPERTY, TrialItem
from pytest_upskill.plugin.looks import NOT_NEEDED_PROPERTY
from pytest_upskill.plugin.preflight import compared_report, write_each
from pytest_upskill.plugin.session import UpskillRun
from pytest_upskill.render.html import render_html
from pytest_upskill.render.markdown import markdown
from pytest_upskill.render.text import Progress
from pytest_upskill.results.aggregate import Aggregator, Result, RunLedger
from pytest_upskill.results.gates import Evaluation, evaluate
from pytest_upskill.results.history import add_run, read_runs, run_info
from pytest_upskill.results.report import AgainstReport, ErrorLimitReport, Report
from pytest_upskill.results.shards import outcomes
from pytest_upskill.types import Arm, CacheMode, printable

Output = tuple[str, Callable[[], None]]  # what is written (in words), and how


CHARS_PER_TOKEN = 4  # a rough count, enough to see that a prompt cannot fit


def too_long_for_context(trials: list[Trial]) -> list[str]:
    """A line per skill × model whose prompts, with the answer's max_tokens, are about as long as or longer
    than the local model's context (llama.cpp's n_ctx): its trials would fail or be cut, after minutes of
    evaluating the prompt on a CPU."""
    from pytest_upskill.engine.providers.local import N_CTX

    longest: dict[tuple[str, str], tuple[int, int]] = {}
    for trial in trials:
        if trial.spec.provider != "local":
            continue
        request = trial.first_request()
        tokens = (len(request.system) + len(request.user)) // CHARS_PER_TOKEN + request.max_tokens
        key = (trial.skill, trial.model)
        if tokens > longest.get(key, (0, 0))[0]:
            longest[key] = (tokens, request.max_tokens)
    return [
        f"{skill} × {model}: a prompt of about {tokens - max_tokens:,} tokens plus max_tokens {max_tokens} fills "
        f"the model's context of {N_CTX:,} tokens (at {CHARS_PER_TOKEN} characters a token): those trials will "
        "fail or be cut; shorten the skill or test it on a model with a longer context"
        for (skill, model), (tokens, max_tokens) in sorted(longest.items())
        if tokens > N_CTX * 0.9
    ]


class Controller:
    """Registered as a plugin on the controlling process; pytest calls its hooks."""

    def __init__(self, run: UpskillRun):
        self.run = run
        self.config = run.config
        self.aggregator = Aggregator([s.name for s in run.specs])
        self.ledger = RunLedger()
        self.progress = Progress(run.settings.progress, run.labels)
        self.old_report = self._read_old_report()
        self.collection_errors = 0
        self.not_needed: Counter[tuple[str, str]] = Counter()  # --upskill-runs auto: trials a look did not need
        self.evaluation: Evaluation | None = None
        self.report: Report | None = None  # built at the end of the session
        self.write_problems: list[str] = []  # outputs that could not be written at the end
        self.exit_line = ""  # why the exit status is what it is, the summary's last line
        self.history_written: Path | None = None  # this run's entry in --upskill-history's folder
        self._prefetched = False
        if run.shards is not None:  # --upskill-merge: the shards' trials, as if they had run here
            for report in run.shards.reports:
                for trial in outcomes(report):
                    self.aggregator.add(trial.outcome, trial.thresholds)
                self.aggregator.cached_elsewhere += report.cached
                self.ledger.add_problems(report.cache_problems)
                self.ledger.add_throttling(report.throttling)

    def prefetch(self, session: pytest.Session) -> None:
        """Without xdist this process runs every item: submit them all, so they are in flight together."""
        if self._prefetched:
            return
        self._prefetched = True
        looks = self.run.looks
        for item in session.items:
            if isinstance(item, TrialItem) and not (looks is not None and looks.defers(item.trial)):
                self.run.runner.submit(item.trial)

    # -- what ran

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection(self, session: pytest.Session) -> bool | None:
        """--upskill-merge collects nothing: its trials are the shards'."""
        return True if self.run.shards is not None else None

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.collection_errors += report.failed

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self._expect([item.nodeid for item in session.items])
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        for line in too_long_for_context([i.trial for i in session.items if isinstance(i, TrialItem)]):
            if reporter is not None:  # before the first request: a prompt that cannot fit is said up front
                reporter.write_line(f"upskill: warning: {line}", yellow=True)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """The controller of an xdist run collects nothing itself: the workers' ids say what to expect."""
        self._expect(ids)

    def _expect(self, nodeids: list[str]) -> None:
        if not self.ledger.expected:
            self.ledger.expect(nodeids)
            self.progress.expect(self.ledger.expected)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Tell each xdist worker where this process's cache is: one that runs elsewhere (a remote
        worker) hands its new entries back, to be written here (pytest_testnodedown)."""
        node.workerinput["upskill_cache_root"] = str(self.run.cache.root)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """What a finished xdist worker found that is not in its reports (worker.py)."""
        output = getattr(node, "workeroutput", None) or {}
        if self.run.cache_mode == CacheMode.RW:
            for entry in output.get("upskill_cache_entries", []):
                self.run.cache.add_entry(entry)
        self.ledger.add_problems(output.get("upskill_cache_problems", []))
        self.ledger.add_throttling(output.get("upskill_throttling", {}))
        self.run.unseen.merge(output.get("upskill_unseen", {}))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        got = wire.received(report.user_properties, getattr(report, "upskill_detail", None))
        outcome = got.outcome if got is not None else None
        if report.when == "teardown" and got is not None:
            self.aggregator.add(got.outcome, got.thresholds)
        self.ledger.record(report.nodeid, report.when, report.skipped, report.failed, outcome is not None)
        if report.skipped:
            for name, value in report.user_properties:
                if name == SKIPPED_PROPERTY:
                    self.ledger.record_skip(json.loads(str(value)))
                elif name == NOT_NEEDED_PROPERTY:
                    about = json.loads(str(value))
                    self.not_needed[(about["skill"], about["model"])] += 1
        if (report.when == "teardown" and outcome is not None) or report.skipped:
            unscored = outcome is not None and outcome.is_error
            line = self.progress.tick(report.nodeid, unscored, time.monotonic())
            reporter = self.config.pluginmanager.get_plugin("terminalreporter") if line else None
            if reporter is not None:
                reporter.write_line(line)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> Iterator[None]:
        """While the trials run, a line every upskill_progress seconds in which no trial ended: a
        long prompt or answer on a local model can take minutes, and silence looks like a hang."""
        stop = threading.Event()
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        started = time.monotonic()

        def watch() -> None:
            while not stop.wait(max(1.0, self.progress.interval or 0) / 4):
                line = self.progress.quiet(time.monotonic(), started)
                if line and reporter is not None:
                    reporter.write_line(line)

        watcher = threading.Thread(target=watch, name="upskill-progress", daemon=True)
        if self.progress.interval and reporter is not None and not self.run.is_worker:
            watcher.start()
        try:
            return (yield)
        finally:
            stop.set()

    # -- the reports and the exit status

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes the file and the terminal summary
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run, ledger, config = self.run, self.ledger, self.config
        run.runner.close()
        ledger.add_problems([f"{p.path}: {p.reason}" for p in run.cache.problems])
        ledger.add_throttling(run.runner.throttling())
        results = self.aggregator.results()
        prices = {s.name: s.prices for s in run.specs}
        ran = not (config.getoption("collectonly") or self.run.settings.plan)
        missing = ledger.missing() if ran else []
        merging = run.shards is not None
        if run.shards is not None:  # the shards' own missing trials: nothing was collected here
            missing = run.shards.missing
        budget = {"budget": budget_summary(results, prices, run.max_cost)} if run.max_cost is not None else {}
        report = self.aggregator.report(
            prices, missing=missing, throttling=ledger.throttling, cache_problems=ledger.cache_problems, **budget
        )
        if ran:
            report.skipped = ledger.wholly_skipped((r.skill, r.model) for r in results)
        deleted = self._deleted() if ran else []
        if run.against is not None:
            report.against = AgainstReport(ref=run.against.ref, deleted=deleted)
        evaluation = self.evaluation = evaluate(
            results,
            report,
            run.thresholds,
            run.strict,
            self.old_report,
            run.compare_rule,
            run.family,
            run.effect,
            against=run.against.ref if run.against is not None else None,
            deleted=deleted,
            level_for=run.level_for,
            sequential=run.auto_runs[0],
        )
        report.verdicts = [v.to_model() for v in evaluation.verdicts]
        report.regressions = [g.to_model() for g in evaluation.regressions]
        unscored = report.errors + len(missing)
        allowed = run.error_limit.allowed(self.aggregator.trials + len(missing))
        report.error_limit = ErrorLimitReport(unscored=unscored, allowed=allowed, exceeded=unscored > allowed)
        versions = {s.name: f"{s.provider}:{s.model}" for s in run.specs}
        report.run = run_info(
            config.rootpath, [s.name for s in run.specs], run.comparable_settings(), versions=versions
        )
        self.report = report
        self.write_problems = write_each(
            self._json_output(report)
            + self._markdown_outputs(results, report, prices)
            + self._history_outputs(report, ran)
            + self._html_output(report)
        )
        from _pytest.junitxml import xml_key  # junitxml keeps its LogXML here; suite properties go through it

        xml = config.stash.get(xml_key, None)
        if xml is not None:
            for name, value in self.aggregator.suite_properties():
                xml.add_global_property(name, value)
        if (merging or session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)) and (
            results or missing or report.skipped
        ):
            reasons = evaluation.fail_reasons(
                unscored=unscored,
                allowed_errors=allowed,
                collection_errors=self.collection_errors,
                with_skill_failed=sum(r.with_skill.failed for r in results),
                trigger_failed=sum(r.arms[Arm.TRIGGER].failed for r in results if Arm.TRIGGER in r.arms),
            )
            reasons += [f"{ledger.other_failures} other test(s) failed"] if ledger.other_failures else []
            reasons += ["an output could not be written"] if self.write_problems else []
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if reasons else pytest.ExitCode.OK
            self.exit_line = evaluation.exit_line(reasons)

    def _deleted(self) -> list[str]:
        """--upskill-against: the skills at REF, under the paths this run was given, that are gone."""
        against = self.run.against
        if against is None:
            return []
        given = [arg.split("::", 1)[0] for arg in self.config.args] or ["."]
        paths = {Path(self.config.invocation_params.dir, arg).resolve() for arg in given}
        try:
            return against.deleted({p if p.is_dir() else p.parent for p in paths})
        except GitError as exc:
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(printable(f"upskill: warning: --upskill-against: deleted skills not listed: {exc}"))
            return []

    def _json_output(self, report: Report) -> list[Output]:
        path = self.run.settings.report
        if not path:
            return []
        return [
            (
                f"the JSON report {path}",
                lambda: write_atomic(self.run.path(path), report.to_json_text()),
            )
        ]

    def _history_outputs(self, report: Report, ran: bool) -> list[Output]:
        """The run's report into --upskill-history's folder (not for a plan or a collection: nothing ran)."""
        folder = self.run.history
        if folder is None or not ran or not report.results:
            return []

        def add() -> None:
            self.history_written = add_run(folder, report)

        return [(f"the history entry in {folder}", add)]

    def _html_output(self, report: Report) -> list[Output]:
        path = self.run.settings.html
        if not path:
            return []

        def write() -> None:
            runs = read_runs(self.run.history)[0] if self.run.history and self.run.history.is_dir() else []
            write_atomic(self.run.path(path), render_html(report, runs))

        return [(f"the HTML report {path}", write)]

    def _markdown_outputs(self, results: list[Result], report: Report, prices: dict[str, Prices]) -> list[Output]:
        path = self.run.settings.markdown
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if not path and not summary:
            return []
        aggregator = self.aggregator
        text = markdown(results, report.verdicts, report.regressions, prices, aggregator.cached, aggregator.trials)

        def append_summary() -> None:
            with open(str(summary), "a", encoding="utf-8") as f:
                f.write(text)

        outputs: list[Output] = []
        if path:
            outputs.append((f"the Markdown summary {path}", lambda: write_atomic(self.run.path(path), text)))
        if summary and results:
            outputs.append((f"GITHUB_STEP_SUMMARY {summary}", append_summary))
        return outputs

    def _read_old_report(self) -> Report | None:
        path = self.run.settings.compare
        if not path:
            return None
        try:
            return compared_report(self.run.path(path), f"--upskill-compare {path}")
        except OSError as exc:
            raise pytest.UsageError(
                f"--upskill-compare {path}: cannot read the report: {exc.strerror or exc}"
            ) from None
        except PreflightError as exc:
            raise pytest.UsageError(str(exc)) from None
