"""Collection: a ``skill_meta.json`` beside a ``SKILL.md`` becomes one item per case × model ×
arm × run (trials.py plans them); which folders are entered, and which SKILL.md files were seen but
not collected (discovery.py). The items wait for their trial's outcome from the runner."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_upskill.engine.arms import ARMS
from pytest_upskill.engine.nodeids import CASE_FILES
from pytest_upskill.engine.providers import why_no_tools
from pytest_upskill.engine.trials import NO_CASES_ITEM, Trial, skill_trials
from pytest_upskill.errors import SkillFileError
from pytest_upskill.models import NO_MODEL
from pytest_upskill.plugin import wire
from pytest_upskill.plugin.looks import not_needed
from pytest_upskill.plugin.session import RUN
from pytest_upskill.scoring.checks import CheckRegistry
from pytest_upskill.scoring.validators import ValidatorRegistry
from pytest_upskill.skills.discovery import is_agent_folder
from pytest_upskill.skills.evals import load_evals
from pytest_upskill.skills.skill_md import EVALS_FILE, in_skill_folder, load_cases, load_skill, skill_md_in
from pytest_upskill.types import Arm, printable


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
        run = config.stash[RUN]
        if is_agent_folder(collection_path, run.settings.skill_folders):
            return False
        run.unseen.add_hidden(collection_path, config.rootpath)
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


NO_CASES = (
    'no test cases beside it: add skill_meta.json ({"tests": [{"input": ..., "expected": ...}]}) or '
    "upskill's tests.json (a list of such cases), or have a teacher draft them: "
    "pytest-upskill cases FOLDER --teacher MODEL"
)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    run = parent.config.stash[RUN]
    if file_path.name in CASE_FILES and skill_md_in(file_path.parent) is not None:
        first = next(name for name in CASE_FILES if (file_path.parent / name).is_file())
        if file_path.name == first and (run.wants(file_path.parent) or run.blast_radius()):
            return SkillFile.from_parent(parent, path=file_path)
    elif is_evals_file(file_path):
        if run.wants(file_path.parent.parent):  # no trigger case in it: nothing for the blast radius
            return SkillFile.from_parent(parent, path=file_path)
    elif file_path.name in ("SKILL.md", "skill.md") and not any(
        (file_path.parent / n).is_file() for n in (*CASE_FILES, EVALS_FILE)
    ):
        run.unseen.add(file_path, NO_CASES, parent.config.rootpath)
    return None


def is_evals_file(path: Path) -> bool:
    """Whether ``path`` is skill-creator's ``evals/evals.json`` of a skill."""
    return path.name == "evals.json" and path.parent.name == "evals" and skill_md_in(path.parent.parent) is not None


class SkillFile(pytest.File):
    """``skill_meta.json`` beside a ``SKILL.md``: one item per case x model x arm x run."""

    def collect(self) -> Iterator[pytest.Item]:
        run = self.config.stash[RUN]
        evals = is_evals_file(self.path)
        skill_dir = self.path.parent.parent if evals else self.path.parent
        try:
            skill_md = skill_md_in(skill_dir)
            assert skill_md is not None  # pytest_collect_file made this node only where there is one
            skill = load_skill(skill_md, run.context.spec)
            checks = CheckRegistry(_registered(self.ihook.pytest_upskill_checks()))
            judge = run.context.judge
            validators = ValidatorRegistry(
                _registered(self.ihook.pytest_upskill_validators()),
                judge.name if judge else None,
                why_no_tools(judge) if judge else None,
            )
            if evals:
                cases, self.thresholds = load_evals(self.path, skill.name), dict[str, float]()
            else:
                cases, self.thresholds = load_cases(
                    self.path, checks.prepare, lambda name, cfg: validators.get(name).prepare(cfg, skill_dir)
                )
        except SkillFileError as exc:
            raise self.CollectError(str(exc.shown_from(self.config.invocation_params.dir))) from None
        except ValueError as exc:  # a conftest registering a bad check or validator
            raise self.CollectError(f"{self.path}: {exc}") from None
        if not run.wants(skill_dir):  # unchanged, collected for the blast radius: its trigger cases only
            cases = [c for c in cases if c.is_trigger]
            if not cases:
                return
        if not cases:
            yield SkippedCase.from_parent(
                self,
                name=NO_CASES_ITEM,
                case_line=1,
                skill=skill.name,
                models=[s.name for s in run.specs],
                thresholds=self.thresholds,
                reason=(
                    f"{_shown(self.path, self.config.rootpath)} "
                    "has an empty list of test cases (what upskill writes when it generated none): add cases with "
                    f"'input' and 'expected', or have a teacher draft them: pytest-upskill cases "
                    f"{_shown(skill_dir, self.config.rootpath)} --teacher MODEL"
                ),
            )
            return
        if not run.specs:
            for case in cases:
                yield SkippedCase.from_parent(self, name=f"{case.key}[no-model]", reason=NO_MODEL, case_line=case.line)
            return
        for planned in skill_trials(skill, cases, run.context, checks, validators):
            if planned.trial is None:
                yield SkippedCase.from_parent(
                    self,
                    name=planned.name,
                    reason=planned.skip,
                    case_line=planned.line,
                    skill=skill.name,
                    models=[planned.model] if planned.model else [],
                    thresholds=self.thresholds,
                )
                continue
            t = planned.trial
            item = TrialItem.from_parent(
                self, name=planned.name, trial=t, case_line=planned.line, thresholds=self.thresholds
            )
            item.extra_keyword_matches.update({t.skill, run.labels[t.model], t.arm})
            if run.looks is not None:
                run.looks.add(t, self.thresholds)
            yield item


def _shown(path: Path, root: Path) -> Path:
    """``path`` relative to the rootdir where it is inside it, as pytest shows paths."""
    return path.relative_to(root) if path.is_relative_to(root) else path


def _registered(answers: list[Any]) -> dict[str, Any]:
    """The merged dicts of a registration hook's implementations (checks, validators)."""
    merged: dict[str, Any] = {}
    for registered in answers:
        merged.update(registered or {})
    return merged


SKIPPED_PROPERTY = "upskill_skipped"  # on a skipped case's report: its skill, models, reason and gates, as JSON


class SkippedCase(pytest.Item):
    """A case that runs no trial, with the reason. Where models were named, its report says which
    skill × model it stands for (the controller counts them: a skill × model whose every trial was
    skipped is listed, and with a gate set it is NOT EVALUATED, never green)."""

    def __init__(
        self,
        *,
        reason: str,
        case_line: int | None = None,
        skill: str | None = None,
        models: list[str] | None = None,
        thresholds: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.case_line = case_line
        if skill and models:
            about = {"skill": skill, "models": models, "reason": reason, "thresholds": thresholds or None}
            self.user_properties.append((SKIPPED_PROPERTY, json.dumps(about, sort_keys=True)))

    def runtest(self) -> None:
        raise pytest.skip.Exception(self.reason, _use_item_location=True)  # -rs shows the case's file, not this one

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, (self.case_line or 1) - 1, self.name


class TrialItem(pytest.Item):
    """One trial: its outcome, from the runner, decides the item's."""

    def __init__(self, *, trial: Trial, case_line: int | None, thresholds: dict[str, float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trial = trial
        self.case_line = case_line
        self.thresholds = thresholds  # the skill's gates from its skill_meta.json, reported with each trial

    def setup(self) -> None:
        run = self.config.stash[RUN]
        run.role.prefetch(self.session)
        if run.looks is not None:  # --upskill-runs auto: a later run waits for the look before it
            why = run.looks.skip_reason(self.trial)
            if why:
                not_needed(self, self.trial, why)
        outcome = run.runner.outcome(self.trial)
        if run.looks is not None:
            run.looks.record(self.trial, outcome)
        self.outcome = outcome
        self.user_properties.extend(wire.properties(outcome, self.thresholds))
        if outcome.is_error:
            pytest.fail(printable(f"upskill: not scored ({outcome.error_kind}): {outcome.message}"), pytrace=False)

    def runtest(self) -> None:
        outcome = self.outcome
        if outcome.passed:
            return
        text = f"{outcome.message}\n--- output ({self.trial.model}, {self.trial.arm}) ---\n{outcome.output[:2000]}"
        if not ARMS[Arm(self.trial.arm)].tested:  # the baseline, the previous skill, a control: points of comparison
            label = ARMS[Arm(self.trial.arm)].label
            why = f"{label} failed (a point of comparison, never fails the run): {outcome.message}"
            pytest.xfail(printable(why))
        pytest.fail(printable(text), pytrace=False)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        """Our own failures (and baseline xfails) carry their whole message: no traceback to format,
        which for an xfail would cost pytest ~0.2 s of parsing source per trial."""
        if isinstance(excinfo.value, pytest.fail.Exception):  # pytest.xfail's exception is a subclass
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        t = self.trial
        return (
            self.path,
            (self.case_line - 1) if self.case_line else None,
            f"{t.skill}::{t.case} [{t.model} {t.arm} run {t.run}]",
        )


class TrialDetail:
    """Puts each trial's detail (its answer, failing checks and tool calls: wire.detail) on
    its teardown report as ``upskill_detail``, where the controller reads it: xdist carries a
    report's attributes to the controller, and junitxml does not write them."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        outcome = getattr(item, "outcome", None)
        if call.when == "teardown" and isinstance(item, TrialItem) and outcome is not None:
            report.upskill_detail = wire.detail(outcome)
        return report
