"""pytest wiring only: options, collection of skill_meta.json, trial items, reports, summary.

The work happens in the core modules (skill, config, prompt, runner, checks, report, stats).
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import time
from pathlib import Path

import pytest

from . import hooks
from .budget import Budget, ModelPlan, budget_summary, plan_lines
from .cache import MODES, ResponseCache, cache_key
from .changes import GitError, changed_files, is_changed
from .checks import CheckRegistry
from .config import NO_MODEL, ConfigError, ModelSpec, node_ids, resolve_all, split_names
from .discovery import AGENT_FOLDERS, Unseen, is_agent_folder
from .gate import THRESHOLD_KEYS, Thresholds, evaluate, parse_error_limit, resolution_line
from .preflight import PreflightError, check_outputs, compared_report, write_each
from .prompt import DEFAULT_SCAFFOLD, INJECTIONS
from .providers import check_available, tools_unsupported
from .redact import Redactor, secret_values
from .report import (
    Aggregator,
    Progress,
    RunLedger,
    markdown,
    outcome_from_properties,
    outcome_properties,
    write_text_atomic,
)
from .runner import Runner, Trial
from .skill import SkillFileError, in_skill_folder, load_cases, load_skill, skill_md_in
from .terminal import TerminalSummary
from .trials import Settings, skill_trials
from .validators import ValidatorRegistry

STATE = pytest.StashKey["UpskillState"]()


class UpskillState:
    """What one pytest process knows about this upskill run."""

    def __init__(self, config: pytest.Config, specs: list[ModelSpec], judge: ModelSpec | None = None):
        self.config = config
        self.specs = specs
        self.labels = node_ids(specs)
        injection = _option(config, "upskill_injection")
        if injection not in INJECTIONS:
            raise pytest.UsageError(f"upskill_injection must be one of {', '.join(INJECTIONS)}, not {injection!r}")
        self.settings = Settings(
            specs=specs,
            labels=self.labels,
            runs=_int_option(config, "upskill_runs"),
            scaffold=config.getini("upskill_system_prompt") or DEFAULT_SCAFFOLD,
            injection=injection,
            max_turns=_int_option(config, "upskill_max_turns"),
            judge=judge,
            tools_unsupported=tools_unsupported,
        )
        self.is_worker = hasattr(config, "workerinput")
        self.cache_mode = _option(config, "upskill_cache")
        if self.cache_mode not in MODES:
            raise pytest.UsageError(f"upskill_cache must be one of {', '.join(MODES)}, not {self.cache_mode!r}")
        cache_dir = Path(_option(config, "upskill_cache_dir") or config.rootpath / ".upskill-cache")
        self.cache = ResponseCache(cache_dir if cache_dir.is_absolute() else config.rootpath / cache_dir)
        self.write_problems: list[str] = []  # outputs that could not be written at the end
        _preflight(config, self.cache, self.cache_mode, self.is_worker)
        self.max_cost = _float_option(config, "upskill_max_cost")
        workers = int(config.workerinput.get("workercount", 1)) if self.is_worker else 1
        budget = (
            Budget(self.max_cost / workers) if self.max_cost is not None else None
        )  # each xdist worker gets its share
        self.redact = Redactor(secret_values(s.key_env for s in [*specs, judge] if s and s.key_env))
        self.runner = Runner(
            concurrency=_int_option(config, "upskill_concurrency"),
            timeout=_float_option(config, "upskill_timeout"),
            retries=_int_option(config, "upskill_retries"),
            backoff=_float_option(config, "upskill_backoff"),
            check_timeout=_float_option(config, "upskill_check_timeout"),
            cache=self.cache,
            cache_mode=self.cache_mode,
            budget=budget,
            redact=self.redact,
        )
        try:
            self.error_limit = parse_error_limit(_option(config, "upskill_max_errors"))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.thresholds = Thresholds(**{key: _float_option(config, f"upskill_{key}") for key in THRESHOLD_KEYS})
        gates = [f"--upskill-{k.replace('_', '-')}" for k in THRESHOLD_KEYS if getattr(self.thresholds, k) is not None]
        gates += ["--upskill-compare"] if config.getoption("upskill_compare") else []
        if gates and not specs and not config.getoption("collectonly"):  # a CI gate that would pass on nothing measured
            raise pytest.UsageError(
                f"{', '.join(gates)} set, but no model is named, so nothing would be measured: {NO_MODEL}"
            )
        self.aggregator = Aggregator([s.name for s in specs])
        self.evaluation = None
        self.report: dict = {}
        self.collection_errors = 0
        self.ledger = RunLedger()
        self.changed = self._changed_files()
        self.old_report = self._read_old_report()
        self._prefetched_all = False
        self._queue = None  # xdist's queue of this worker's next items
        self.unseen = Unseen()  # SKILL.md files seen but not collected
        self.exit_line = ""  # why the exit status is what it is, the summary's last line
        self.progress = Progress(_float_option(config, "upskill_progress") or 0.0, self.labels)

    def _changed_files(self) -> set[Path] | None:
        ref = self.config.getoption("upskill_changed_since")
        if not ref:
            return None
        try:
            return changed_files(self.config.rootpath, ref)
        except GitError as exc:
            raise pytest.UsageError(f"--upskill-changed-since {ref}: {exc}") from None

    def wants(self, skill_dir: Path) -> bool:
        return self.changed is None or is_changed(skill_dir, self.changed)

    # -- hooks: this object is registered as a plugin, so pytest calls these on it

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self.collection_errors += report.failed

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not self.is_worker:
            self._expect([item.nodeid for item in session.items])

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids: list[str]) -> None:
        """The controller of an xdist run collects nothing itself: the workers' ids say what to expect."""
        self._expect(ids)

    def _expect(self, nodeids: list[str]) -> None:
        if not self.ledger.expected:
            self.ledger.expect(nodeids)
            self.progress.expect(self.ledger.expected)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        """What a finished xdist worker found that is not in its reports: cache problems, throttling."""
        output = getattr(node, "workeroutput", None) or {}
        self.ledger.add_problems(output.get("upskill_cache_problems", []))
        self.ledger.add_throttling(output.get("upskill_throttling", {}))
        self.unseen.merge(output.get("upskill_unseen", {}))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        outcome = outcome_from_properties(report.user_properties)
        if report.when == "teardown" and outcome is not None:
            self.aggregator.add(outcome)
        self.ledger.record(report.nodeid, report.when, report.skipped, report.failed, outcome is not None)
        if (report.when == "teardown" and outcome is not None) or report.skipped:
            line = self.progress.tick(
                report.nodeid, outcome is not None and outcome.get("passed") is None, time.monotonic()
            )
            reporter = self.config.pluginmanager.get_plugin("terminalreporter") if line else None
            if reporter is not None:
                reporter.write_line(line)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """--upskill-plan: say what the run would send and cost, and run nothing."""
        if not self.config.getoption("upskill_plan") or self.config.getoption("collectonly"):
            return None
        plans: dict[str, ModelPlan] = {}
        skills: dict[str, tuple[set[str], set[int], float | None]] = {}  # skill -> cases, runs, min_lift
        for item in session.items:
            if isinstance(item, TrialItem):
                t = item.trial
                # a workspace trial's first turn offers its tools; when that turn is cached, so is the conversation
                first = t.agent.first_request(t.request) if t.agent is not None else t.request
                cached = self.cache_mode != "off" and self.cache.get(cache_key(t.spec, first, t.run)) is not None
                plans.setdefault(t.model, ModelPlan(t.model)).add(t.spec, t.request, cached)
                cases, runs, _ = skills.setdefault(
                    t.skill, (set(), set(), self.thresholds.merged(item.parent.thresholds).min_lift)
                )
                cases.add(t.case)
                runs.add(t.run)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        reporter.write_sep("=", "upskill plan")
        for line in plan_lines(list(plans.values())):
            reporter.write_line(line)
        for skill, (cases, runs, min_lift) in sorted(skills.items()):
            reporter.write_line(resolution_line(skill, len(cases), len(runs), min_lift))
        return True

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes the file and the terminal summary
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.runner.close()
        own_problems = [f"{p.path}: {p.reason}" for p in self.cache.problems]
        if self.is_worker:
            self.config.workeroutput["upskill_cache_problems"] = own_problems
            self.config.workeroutput["upskill_throttling"] = self.runner.throttling()
            self.config.workeroutput["upskill_unseen"] = self.unseen.files
            return
        ledger = self.ledger
        ledger.add_problems(own_problems)
        ledger.add_throttling(self.runner.throttling())
        results = self.aggregator.results()
        prices = {s.name: (s.input_price, s.output_price) for s in self.specs}
        ran = not (self.config.getoption("collectonly") or self.config.getoption("upskill_plan"))
        missing = ledger.missing() if ran else []
        report = self.report = self.aggregator.to_json(
            missing=missing,
            throttling=ledger.throttling,
            cache_problems=ledger.cache_problems,
            **({"budget": budget_summary(results, prices, self.max_cost)} if self.max_cost is not None else {}),
        )
        self.evaluation = evaluate(
            results, report, self.thresholds, self.config.getoption("upskill_strict"), self.old_report
        )
        report["verdicts"] = [v.to_json() for v in self.evaluation.verdicts]
        report["regressions"] = [g.to_json() for g in self.evaluation.regressions]
        unscored = report["errors"] + len(missing)
        allowed = self.error_limit.allowed(self.aggregator.trials + len(missing))
        report["error_limit"] = {"unscored": unscored, "allowed": allowed, "exceeded": unscored > allowed}
        path = self.config.getoption("upskill_report")
        outputs = (
            [
                (
                    f"the JSON report {path}",
                    lambda: write_text_atomic(self._path(path), json.dumps(report, indent=2) + "\n"),
                )
            ]
            if path
            else []
        )
        self.write_problems = write_each(outputs + self._markdown_outputs(results, report, prices))
        from _pytest.junitxml import xml_key  # junitxml keeps its LogXML here; suite properties go through it

        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            for name, value in self.aggregator.suite_properties():
                xml.add_global_property(name, value)
        if session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and (results or missing):
            reasons = self.evaluation.fail_reasons(
                unscored=unscored,
                allowed_errors=allowed,
                collection_errors=self.collection_errors,
                with_skill_failed=sum(r.with_skill.failed for r in results),
            )
            reasons += [f"{ledger.other_failures} other test(s) failed"] if ledger.other_failures else []
            reasons += ["an output could not be written"] if self.write_problems else []
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if reasons else pytest.ExitCode.OK
            self.exit_line = self.evaluation.exit_line(reasons)

    def _path(self, name: str) -> Path:
        return Path(self.config.invocation_params.dir, name)

    def _read_old_report(self) -> dict | None:
        path = self.config.getoption("upskill_compare")
        if not path or self.is_worker:
            return None
        try:
            report = json.loads(self._path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise pytest.UsageError(
                f"--upskill-compare {path}: cannot read the report: {exc.strerror or exc}"
            ) from None
        except ValueError as exc:
            raise pytest.UsageError(
                f"--upskill-compare {path}: not a JSON report ({exc}); pass a file written by --upskill-report"
            ) from None
        try:
            return compared_report(report, f"--upskill-compare {path}")
        except PreflightError as exc:
            raise pytest.UsageError(str(exc)) from None

    def _markdown_outputs(self, results, report: dict, prices: dict) -> list:
        path = self.config.getoption("upskill_markdown")
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if not path and not summary:
            return []
        text = markdown(
            results, report["verdicts"], report["regressions"], prices, self.aggregator.cached, self.aggregator.trials
        )

        def append_summary() -> None:
            with open(summary, "a", encoding="utf-8") as f:
                f.write(text)

        return (
            [(f"the Markdown summary {path}", lambda: write_text_atomic(self._path(path), text))] if path else []
        ) + ([(f"GITHUB_STEP_SUMMARY {summary}", append_summary)] if summary and results else [])

    def prefetch(self, session: pytest.Session) -> None:
        """Submit the trials this process will run next, so they are in flight together."""
        if self.is_worker:
            if self._queue is None:
                self._queue = _xdist_queue(self.config)
            queue = self._queue
            if queue is None:
                return
            with queue.lock() as pending:
                indices = [i for i in pending if isinstance(i, int)]
            items = [session.items[i] for i in indices]
        elif self._prefetched_all:
            return
        else:
            self._prefetched_all = True
            items = session.items
        for item in items:
            if isinstance(item, TrialItem):
                self.runner.submit(item.trial)


def _xdist_queue(config: pytest.Config):
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor" and hasattr(plugin, "torun"):
            return plugin.torun
    return None


def _preflight(config: pytest.Config, cache: ResponseCache, cache_mode: str, is_worker: bool) -> None:
    """Every place the run will write, checked before the first request (see preflight.py)."""
    here = config.invocation_params.dir
    outputs = (
        []
        if is_worker
        else [  # the controller writes the reports
            (what, Path(here, value))
            for option, what in (
                ("upskill_report", "--upskill-report"),
                ("upskill_markdown", "--upskill-markdown"),
                ("xmlpath", "--junitxml"),
            )
            if (value := config.getoption(option, None))
        ]
    )
    try:
        check_outputs(cache, cache_mode, outputs, None if is_worker else os.environ.get("GITHUB_STEP_SUMMARY"))
    except PreflightError as exc:
        raise pytest.UsageError(str(exc)) from None


def _option(config: pytest.Config, name: str):
    value = config.getoption(name, None)  # None also for the settings that are ini-only
    return value if value is not None else config.getini(name)


# what a number of seconds or dollars must be: (the test, in words)
_AT_LEAST = {
    "upskill_timeout": (lambda x: x > 0, "a number of seconds above 0"),
    "upskill_check_timeout": (lambda x: x > 0, "a number of seconds above 0"),
    "upskill_backoff": (lambda x: x >= 0, "a number of seconds, 0 or more"),
    "upskill_max_cost": (lambda x: x >= 0, "an amount in USD, 0 or more"),
    "upskill_progress": (lambda x: x >= 0, "a number of seconds, 0 or more"),
}


def _float_option(config: pytest.Config, name: str) -> float | None:
    value = _option(config, name)
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    test, words = _AT_LEAST.get(name, (lambda x: True, "a finite number (a fraction: 0.2 for 20%)"))
    if not math.isfinite(number) or not test(number):
        raise pytest.UsageError(f"--{name.replace('_', '-')} / {name} must be {words}, not {value!r}")
    return number


def _int_option(config: pytest.Config, name: str) -> int:
    value = _option(config, name)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{name} must be a whole number, not {value!r}") from None
    if number < (0 if name == "upskill_retries" else 1):
        raise pytest.UsageError(f"{name} must be at least {0 if name == 'upskill_retries' else 1}, not {number}")
    return number


# ------------------------------------------------------------------------------------ options


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("upskill", "regression-test agent skills (pytest-upskill)")
    group.addoption(
        "--upskill-models",
        action="append",
        default=None,
        metavar="NAMES",
        help="comma-separated models to test (repeatable): built-in aliases (haiku, sonnet, opus, gpt-5.5, ...), "
        "[tool.upskill.models.NAME] aliases, or PROVIDER:MODEL[@BASE_URL]. Default: ini upskill_models.",
    )
    group.addoption(
        "--upskill-runs", type=int, default=None, metavar="N", help="trials per case, model and arm (default 1)"
    )
    group.addoption(
        "--upskill-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="requests in flight per model and process; halved on 429s, then recovers (default 8)",
    )
    group.addoption(
        "--upskill-timeout", type=float, default=None, metavar="S", help="seconds per request attempt (default 120)"
    )
    group.addoption(
        "--upskill-retries", type=int, default=None, metavar="N", help="retries of a failed request (default 4)"
    )
    group.addoption(
        "--upskill-max-errors",
        default=None,
        metavar="N|FRACTION",
        help="unscored trials (errors) the run tolerates: a count (5) or a fraction (0.05, 5%%); default 0",
    )
    group.addoption(
        "--upskill-check-timeout",
        type=float,
        default=None,
        metavar="S",
        help="time limit of each check and validator, and of a sandboxed run of model output (default 30)",
    )
    group.addoption("--upskill-report", default=None, metavar="PATH", help="write the JSON report here")
    group.addoption(
        "--upskill-injection",
        default=None,
        choices=INJECTIONS,
        help="how the with-skill arm gets the skill: system (in the system prompt, default) or progressive "
        "(name and description only, plus a read_skill tool; activation is reported)",
    )
    group.addoption(
        "--upskill-max-turns",
        type=int,
        default=None,
        metavar="N",
        help="requests per workspace trial at most (default 10)",
    )
    group.addoption(
        "--upskill-judge-model", default=None, metavar="NAME", help="the model that grades llm_judge validators"
    )
    parser.addini("upskill_injection", "system or progressive", default="system")
    parser.addini("upskill_max_turns", "requests per workspace trial at most", default="10")
    parser.addini("upskill_judge_model", "the model that grades llm_judge validators", default="")
    parser.addini("upskill_models", "models to test when --upskill-models is not given", type="args", default=[])
    parser.addini("upskill_runs", "trials per case, model and arm", default="1")
    parser.addini("upskill_concurrency", "requests in flight per model and process", default="8")
    parser.addini("upskill_timeout", "seconds per request attempt", default="120")
    parser.addini("upskill_retries", "retries of a failed request", default="4")
    parser.addini(
        "upskill_backoff",
        "seconds before the first retry; doubles each retry, with jitter (Retry-After wins)",
        default="0.5",
    )
    parser.addini("upskill_max_errors", "unscored trials the run tolerates: a count or a fraction", default="0")
    parser.addini(
        "upskill_check_timeout", "time limit of each check, validator or sandboxed run, seconds", default="30"
    )
    parser.addini("upskill_system_prompt", "scaffolding system prompt shared by both arms", default="")
    parser.addini(
        "upskill_progress",
        "seconds between progress lines during a run (trials done per model, time left); 0: none",
        default="30",
    )
    parser.addini(
        "upskill_skill_folders",
        "hidden folders where agents keep skills, collected although pytest skips hidden folders",
        type="linelist",
        default=list(AGENT_FOLDERS),
    )
    group.addoption(
        "--upskill-cache",
        default=None,
        choices=MODES,
        help="rw: read and write the response cache (default); off; replay: never call a model",
    )
    group.addoption(
        "--upskill-cache-dir",
        default=None,
        metavar="DIR",
        help="response cache folder (default: ROOTDIR/.upskill-cache)",
    )
    parser.addini("upskill_cache", "response cache mode: rw, off or replay", default="rw")
    parser.addini("upskill_cache_dir", "response cache folder, relative to the rootdir", default="")
    for key, text in (
        ("min_lift", "lowest acceptable lift, e.g. 0.1"),
        ("min_pass_rate", "lowest acceptable with-skill pass rate"),
        ("max_token_increase", "highest acceptable relative token increase of the skill, e.g. 0.5"),
    ):
        group.addoption(
            f"--upskill-{key.replace('_', '-')}",
            dest=f"upskill_{key}",
            type=float,
            default=None,
            metavar="X",
            help=f"gate: {text}; judged on the 95%% interval",
        )
        parser.addini(f"upskill_{key}", f"gate: {text}", default="")
    group.addoption("--upskill-strict", action="store_true", default=False, help="gates: an INCONCLUSIVE verdict fails")
    group.addoption(
        "--upskill-compare",
        default=None,
        metavar="OLD.json",
        help="flag regressions against an earlier --upskill-report",
    )
    group.addoption(
        "--upskill-changed-since",
        default=None,
        metavar="REF",
        help="keep only skills whose folder changed since this git ref",
    )
    group.addoption(
        "--upskill-markdown", default=None, metavar="PATH", help="write a Markdown summary for a pull request"
    )
    group.addoption(
        "--upskill-plan",
        action="store_true",
        default=False,
        help="print trials, requests, tokens and cost per model; send nothing",
    )
    group.addoption(
        "--upskill-max-cost",
        dest="upskill_max_cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop sending requests once the estimated spend passes this",
    )
    parser.addini("upskill_max_cost", "spending limit in USD", default="")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """--upskill-plan sends nothing: plan in this process, where the items are, not in xdist workers.

    (Not xdist's ``worksteal``: it takes queued items back from a worker that has already sent
    them, so the same paid request would go out twice. ``load`` never takes an item back.)"""
    if config.getoption("upskill_plan"):
        config.option.numprocesses, config.option.dist, config.option.tx = None, "no", []


def pytest_configure(config: pytest.Config) -> None:
    names = split_names(config.getoption("upskill_models") or config.getini("upskill_models"))
    pyproject = (
        config.inipath
        if config.inipath and config.inipath.name == "pyproject.toml"
        else config.rootpath / "pyproject.toml"
    )
    judge_name = config.getoption("upskill_judge_model") or config.getini("upskill_judge_model")
    try:
        check = not config.getoption("collectonly")
        specs = resolve_all(names, pyproject, check_keys=check, check_runtime=check_available)
        judge = (
            resolve_all([judge_name], pyproject, check_keys=check, check_runtime=check_available)[0]
            if judge_name
            else None
        )
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = config.stash[STATE] = UpskillState(config, specs, judge)
    config.pluginmanager.register(state, "upskill-state")
    config.pluginmanager.register(TerminalSummary(state), "upskill-terminal")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter, config: pytest.Config):
    """Why the exit status is what it is: the last line before pytest's counts, after its own short
    summary of failures (this wrapper's second half runs after every other summary)."""
    result = yield
    state = config.stash.get(STATE, None)
    if state is not None and state.exit_line:
        terminalreporter.write_line(state.exit_line, bold=True)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A symlink to a folder above it (a loop) would make pytest collect the same skills again at
    every depth until the OS gives up: skip it. Python files inside a skill folder (its scripts/,
    a python_tests validator's test file) belong to the skill, not to this pytest run. The hidden
    folders where agents keep skills (upskill_skill_folders) are entered, unless --ignore'd; other
    hidden folders are not, and a SKILL.md in one is reported."""
    if collection_path.is_symlink() and collection_path.is_dir():
        target = collection_path.resolve()
        if target in {p.resolve() for p in collection_path.parents}:
            return True
    if (
        collection_path.name.startswith(".")
        and collection_path.is_dir()
        and not _ignored_by_option(collection_path, config)
    ):
        if is_agent_folder(collection_path, config.getini("upskill_skill_folders")):
            return False
        state = config.stash.get(STATE, None)
        if state is not None:
            state.unseen.add_hidden(collection_path, config.rootpath)
    if (
        collection_path.suffix == ".py"
        and collection_path.name != "conftest.py"
        and in_skill_folder(collection_path, config.rootpath)
    ):
        return True
    return None


def _ignored_by_option(path: Path, config: pytest.Config) -> bool:
    """--ignore and --ignore-glob, which the user's choice wins over upskill_skill_folders."""
    ignored = {Path(config.invocation_params.dir, p).resolve() for p in config.getoption("ignore") or []}
    return path.resolve() in ignored or any(
        fnmatch.fnmatch(str(path), str(g)) for g in config.getoption("ignore_glob") or []
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    state = parent.config.stash[STATE]
    if file_path.name == "skill_meta.json" and skill_md_in(file_path.parent) is not None:
        if state.wants(file_path.parent):
            return SkillFile.from_parent(parent, path=file_path)
    elif file_path.name in ("SKILL.md", "skill.md") and not (file_path.parent / "skill_meta.json").is_file():
        state.unseen.add(file_path, "no skill_meta.json beside it: add test cases", parent.config.rootpath)
    return None


# ---------------------------------------------------------------------------------- collection


class SkillFile(pytest.File):
    """``skill_meta.json`` beside a ``SKILL.md``: one item per case x model x arm x run."""

    def collect(self):
        state = self.config.stash[STATE]
        skill_dir = self.path.parent
        try:
            skill = load_skill(skill_md_in(skill_dir))
            checks = CheckRegistry(_registered(self.ihook.pytest_upskill_checks()))
            judge = state.settings.judge
            validators = ValidatorRegistry(
                _registered(self.ihook.pytest_upskill_validators()),
                judge.name if judge else None,
                tools_unsupported(judge) if judge else None,
            )
            cases, self.thresholds = load_cases(
                self.path, checks.prepare, lambda name, cfg: validators.get(name).prepare(cfg, skill_dir)
            )
        except SkillFileError as exc:
            raise self.CollectError(str(exc.shown_from(self.config.invocation_params.dir))) from None
        except ValueError as exc:  # a conftest registering a bad check or validator
            raise self.CollectError(f"{self.path}: {exc}") from None
        if not cases:
            yield SkippedCase.from_parent(
                self,
                name="no-cases",
                case_line=1,
                reason=(
                    f"{_shown(self.path, self.config.rootpath)} "
                    "has an empty list of test cases (what upskill writes when it generated none): add cases with "
                    "'input' and 'expected'"
                ),
            )
            return
        if not state.specs:
            for case in cases:
                yield SkippedCase.from_parent(self, name=f"{case.key}[no-model]", reason=NO_MODEL, case_line=case.line)
            return
        for planned in skill_trials(skill, cases, state.settings, checks, validators):
            if planned.trial is None:
                yield SkippedCase.from_parent(self, name=planned.name, reason=planned.skip, case_line=planned.line)
                continue
            t = planned.trial
            item = TrialItem.from_parent(self, name=planned.name, trial=t, case_line=planned.line)
            item.extra_keyword_matches.update({t.skill, state.labels[t.model], t.arm})
            yield item


def _shown(path: Path, root: Path) -> Path:
    """``path`` relative to the rootdir where it is inside it, as pytest shows paths."""
    return path.relative_to(root) if path.is_relative_to(root) else path


def _registered(answers: list) -> dict:
    """The merged dicts of a registration hook's implementations (checks, validators)."""
    merged: dict = {}
    for registered in answers:
        merged.update(registered or {})
    return merged


class SkippedCase(pytest.Item):
    """A case that runs no trial, with the reason."""

    def __init__(self, *, reason: str, case_line: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.reason = reason
        self.case_line = case_line

    def runtest(self) -> None:
        raise pytest.skip.Exception(self.reason, _use_item_location=True)  # -rs shows the case's file, not this one

    def reportinfo(self):
        return self.path, (self.case_line or 1) - 1, self.name


class TrialItem(pytest.Item):
    def __init__(self, *, trial: Trial, case_line: int | None, **kwargs):
        super().__init__(**kwargs)
        self.trial = trial
        self.case_line = case_line

    def setup(self) -> None:
        state = self.config.stash[STATE]
        state.prefetch(self.session)
        outcome = state.runner.outcome(self.trial)
        self.outcome = outcome
        self.user_properties.extend(outcome_properties(outcome.to_dict(), self.parent.thresholds))
        if outcome.is_error:
            pytest.fail(f"upskill: not scored ({outcome.error_kind}): {outcome.message}", pytrace=False)

    def runtest(self) -> None:
        outcome = self.outcome
        if outcome.passed:
            return
        text = f"{outcome.message}\n--- output ({self.trial.model}, {self.trial.arm}) ---\n{outcome.output[:2000]}"
        if self.trial.arm == "baseline":
            pytest.xfail(f"baseline failed (the point of comparison, never fails the run): {outcome.message}")
        pytest.fail(text, pytrace=False)

    def repr_failure(self, excinfo, style=None):
        """Our own failures (and baseline xfails) carry their whole message: no traceback to format,
        which for an xfail would cost pytest ~0.2 s of parsing source per trial."""
        if isinstance(excinfo.value, pytest.fail.Exception):  # pytest.xfail's exception is a subclass
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        t = self.trial
        return (
            self.path,
            (self.case_line - 1) if self.case_line else None,
            f"{t.skill}::{t.case} [{t.model} {t.arm} run {t.run}]",
        )
