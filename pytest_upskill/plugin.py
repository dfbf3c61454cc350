"""pytest wiring only: options, collection of skill_meta.json, trial items, reports, summary.

The work happens in the core modules (skill, config, prompt, runner, checks, report, stats).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from . import hooks
from .checks import CheckRegistry
from .config import ConfigError, ModelSpec, node_ids, resolve_all, split_names
from .prompt import ARMS, DEFAULT_SCAFFOLD, build_request
from .report import Aggregator, outcome_from_properties, outcome_properties, terminal_lines
from .runner import Runner, Trial
from .skill import Case, Skill, SkillFileError, load_cases, load_skill

STATE = pytest.StashKey["UpskillState"]()


class UpskillState:
    """What one pytest process knows about this upskill run."""

    def __init__(self, config: pytest.Config, specs: list[ModelSpec]):
        self.config = config
        self.specs = specs
        self.labels = node_ids(specs)
        self.runs = _int_option(config, "upskill_runs")
        self.scaffold = config.getini("upskill_system_prompt") or DEFAULT_SCAFFOLD
        self.runner = Runner(
            concurrency=_int_option(config, "upskill_concurrency"),
            timeout=float(_option(config, "upskill_timeout")),
            retries=_int_option(config, "upskill_retries"),
        )
        self.aggregator = Aggregator([s.name for s in specs])
        self.is_worker = hasattr(config, "workerinput")
        self._prefetched_all = False

    # -- hooks: this object is registered as a plugin, so pytest calls these on it

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and not self.is_worker:
            outcome = outcome_from_properties(report.user_properties)
            if outcome is not None:
                self.aggregator.add(outcome)

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes the file
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.runner.close()
        if self.is_worker:
            return
        path = self.config.getoption("upskill_report")
        if path:
            self.aggregator.write_json(Path(self.config.invocation_params.dir, path))
        from _pytest.junitxml import xml_key  # junitxml keeps its LogXML here; suite properties go through it

        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            for name, value in self.aggregator.suite_properties():
                xml.add_global_property(name, value)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        results = self.aggregator.results()
        if not results:
            return
        terminalreporter.write_sep("=", "upskill: lift per skill × model")
        for line in terminal_lines(results):
            terminalreporter.write_line(line)
        for spec in self.specs:
            if spec.note:
                terminalreporter.write_line(f"note: {spec.note}")
        path = self.config.getoption("upskill_report")
        if path:
            terminalreporter.write_line(f"JSON report written to {path}")

    def prefetch(self, session: pytest.Session) -> None:
        """Submit the trials this process will run next, so they are in flight together."""
        if self.is_worker:
            queue = _xdist_queue(self.config)
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


def _option(config: pytest.Config, name: str):
    value = config.getoption(name)
    return value if value is not None else config.getini(name)


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
    group.addoption("--upskill-models", action="append", default=None, metavar="NAMES",
                    help="comma-separated models to test (repeatable): built-in aliases (haiku, sonnet, opus, gpt-5.5, ...), "
                         "[tool.upskill.models.NAME] aliases, or PROVIDER:MODEL[@BASE_URL]. Default: ini upskill_models.")
    group.addoption("--upskill-runs", type=int, default=None, metavar="N", help="trials per case, model and arm (default 1)")
    group.addoption("--upskill-concurrency", type=int, default=None, metavar="N", help="requests in flight per process (default 8)")
    group.addoption("--upskill-timeout", type=float, default=None, metavar="S", help="seconds per request attempt (default 120)")
    group.addoption("--upskill-retries", type=int, default=None, metavar="N", help="retries of a failed request (default 2)")
    group.addoption("--upskill-report", default=None, metavar="PATH", help="write the JSON report here")
    parser.addini("upskill_models", "models to test when --upskill-models is not given", type="args", default=[])
    parser.addini("upskill_runs", "trials per case, model and arm", default="1")
    parser.addini("upskill_concurrency", "requests in flight per process", default="8")
    parser.addini("upskill_timeout", "seconds per request attempt", default="120")
    parser.addini("upskill_retries", "retries of a failed request", default="2")
    parser.addini("upskill_system_prompt", "scaffolding system prompt shared by both arms", default="")


def pytest_configure(config: pytest.Config) -> None:
    names = split_names(config.getoption("upskill_models") or config.getini("upskill_models"))
    pyproject = config.inipath if config.inipath and config.inipath.name == "pyproject.toml" else config.rootpath / "pyproject.toml"
    try:
        specs = resolve_all(names, pyproject, check_keys=not config.getoption("collectonly"))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    state = config.stash[STATE] = UpskillState(config, specs)
    config.pluginmanager.register(state, "upskill-state")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    if file_path.name == "skill_meta.json" and (file_path.parent / "SKILL.md").is_file():
        return SkillFile.from_parent(parent, path=file_path)
    return None


# ---------------------------------------------------------------------------------- collection


class SkillFile(pytest.File):
    """``skill_meta.json`` beside a ``SKILL.md``: one item per case x model x arm x run."""

    def collect(self):
        state = self.config.stash[STATE]
        try:
            skill = load_skill(self.path.parent / "SKILL.md")
            custom: dict = {}
            for registered in self.ihook.pytest_upskill_checks():
                custom.update(registered or {})
            registry = CheckRegistry(custom)
            cases = load_cases(self.path, registry.prepare)
        except SkillFileError as exc:
            raise self.CollectError(str(exc.shown_from(self.config.invocation_params.dir))) from None
        except ValueError as exc:  # a conftest registering a bad check
            raise self.CollectError(f"{self.path}: {exc}") from None
        if not state.specs:
            for case in cases:
                yield UnconfiguredItem.from_parent(self, name=f"{case.key}[no-model]")
            return
        for case in cases:
            for spec in state.specs:
                for arm in ARMS:
                    for run in range(1, state.runs + 1):
                        label = f"{state.labels[spec.name]}-{arm}" + (f"-run{run}" if state.runs > 1 else "")
                        yield TrialItem.from_parent(
                            self, name=f"{case.key}[{label}]", skill=skill, case=case, spec=spec, arm=arm, run=run, registry=registry
                        )


class UnconfiguredItem(pytest.Item):
    def runtest(self) -> None:
        pytest.skip("no model named: pass --upskill-models NAME (e.g. --upskill-models haiku) or set upskill_models in the ini file")

    def reportinfo(self):
        return self.path, None, self.name


class TrialItem(pytest.Item):
    def __init__(self, *, skill: Skill, case: Case, spec: ModelSpec, arm: str, run: int, registry: CheckRegistry, **kwargs):
        super().__init__(**kwargs)
        state = self.config.stash[STATE]
        self.trial = Trial(
            skill=skill.name, case=case.key, model=spec.name, arm=arm, run=run, spec=spec,
            request=build_request(spec, arm, skill, case, state.scaffold),
            score=functools.partial(registry.score, case.expected),
        )
        self.case_line = case.line
        self.extra_keyword_matches.update({skill.name, state.labels[spec.name], arm})

    def setup(self) -> None:
        state = self.config.stash[STATE]
        state.prefetch(self.session)
        outcome = state.runner.outcome(self.trial)
        self.outcome = outcome
        self.user_properties.extend(outcome_properties(outcome.to_dict()))
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

    def reportinfo(self):
        t = self.trial
        return self.path, (self.case_line - 1) if self.case_line else None, f"{t.skill}::{t.case} [{t.model} {t.arm} run {t.run}]"


