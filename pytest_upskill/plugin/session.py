"""What every process of a run shares: the settings read once from the options, the models, the
cache, the runner, and what collection saw. The roles (controller.py, worker.py, terminal.py)
are built on it; plugin/__init__.py registers the ones this process plays (pytest-xdist splits its
``DSession``, ``WorkerInteractor`` and terminal reporting the same way)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_upskill.engine.budget import Budget
from pytest_upskill.engine.cache import ResponseCache, cache_key
from pytest_upskill.engine.catalogs import Catalogs
from pytest_upskill.engine.prompt import DEFAULT_SCAFFOLD
from pytest_upskill.engine.providers import check_available, tool_protocol, why_no_tools
from pytest_upskill.engine.redact import Redactor, secret_values
from pytest_upskill.engine.runner import Runner
from pytest_upskill.engine.trials import TrialContext
from pytest_upskill.errors import ConfigError, GitError, PreflightError
from pytest_upskill.models import NO_MODEL, ModelSpec, node_ids, resolve_all
from pytest_upskill.plugin.looks import Looks
from pytest_upskill.plugin.preflight import check_outputs, writable_folder
from pytest_upskill.results import stats
from pytest_upskill.results.aggregate import Result
from pytest_upskill.results.gates import (
    DEFAULT_EFFECT,
    NONINFERIORITY_MARGIN,
    CompareRule,
    ErrorLimit,
    Thresholds,
    parse_error_limit,
)
from pytest_upskill.results.sequential import Rules, runs_used
from pytest_upskill.results.shards import Shards, parse_shard
from pytest_upskill.settings import Settings
from pytest_upskill.skills.catalog import Catalog, find_catalog
from pytest_upskill.skills.changes import changed_files, is_changed
from pytest_upskill.skills.discovery import Unseen
from pytest_upskill.skills.previous import Against, Previous
from pytest_upskill.skills.skill_md import THRESHOLD_KEYS, Skill
from pytest_upskill.types import Arm, CacheMode, Request, Switch

RUN = pytest.StashKey["UpskillRun"]()


def run_arms(settings: Settings) -> tuple[Arm, ...]:
    """The arms of a run: no skill and the working tree's, the skill at --upskill-against, and the
    controls (trials.py leaves out, per skill, an arm that has nothing to offer it)."""
    arms = [Arm.BASELINE, Arm.WITH_SKILL, Arm.TRIGGER]
    if settings.against:
        arms += [Arm.PREVIOUS, Arm.PREVIOUS_TRIGGER]
    if settings.controls:
        arms += [Arm.PLACEBO, Arm.AA_CONTROL, Arm.POSITIVE_CONTROL]
    return tuple(arms)


class Role(Protocol):
    """The object that decides which trials this process starts ahead of pytest's loop."""

    def prefetch(self, session: pytest.Session) -> None: ...


def resolve_models(config: pytest.Config, names: list[str], check: bool = True) -> list[ModelSpec]:
    """The models named, from the built-in aliases and the project's own (``[tool.upskill.models]``
    in pyproject.toml); with ``check``, each must be able to run (its key, its runtime). A bad
    name or a missing key is a usage error that says what to do."""
    pyproject = (
        config.inipath
        if config.inipath and config.inipath.name == "pyproject.toml"
        else config.rootpath / "pyproject.toml"
    )
    try:
        return resolve_all(names, pyproject, check_keys=check, check_runtime=check_available)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None


GATE_SETTINGS = ("strict", "family", "max_errors", *THRESHOLD_KEYS)  # the settings of a merge that are its own


class UpskillRun:
    """The run as one pytest process sees it, built in ``pytest_configure``: a bad setting is a
    usage error here, before collection and before the first request."""

    role: Role  # the controller (which also runs the trials without xdist) or an xdist worker

    def __init__(
        self,
        config: pytest.Config,
        settings: Settings,
        specs: list[ModelSpec],
        judge: ModelSpec | None = None,
        shards: Shards | None = None,
    ):
        self.config = config
        self.settings = settings  # every option and ini setting, read and checked once (settings.py)
        self.specs = specs
        self.shards = shards  # --upskill-merge: the shards' reports; nothing is collected or sent
        try:
            self.shard: tuple[int, int] | None = parse_shard(settings.shard) if settings.shard is not None else None
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.labels = node_ids(specs)
        self.is_worker = hasattr(config, "workerinput")
        self.closing: list[Against] = []  # folders of skills at a ref, removed at the end of the run
        self.against = self._against()
        self.catalogs = Catalogs(self._find_catalog, self._descriptions_at_ref())
        self.context = TrialContext(
            specs=specs,
            labels=self.labels,
            runs=settings.runs,
            scaffold=settings.system_prompt or DEFAULT_SCAFFOLD,
            injection=settings.injection,
            max_turns=settings.max_turns,
            judge=judge,
            why_no_tools=why_no_tools,
            tool_protocol=tool_protocol,
            spec=settings.spec,
            arms=run_arms(settings),
            auto_runs=settings.auto_runs,
            against=self.against.of if self.against is not None else None,
            catalogs=self.catalogs,
        )
        self.cache_mode = settings.cache
        cache_dir = Path(settings.cache_dir or config.rootpath / ".upskill-cache")
        self.cache = ResponseCache(cache_dir if cache_dir.is_absolute() else config.rootpath / cache_dir)
        self.history: Path | None = None
        if settings.history:
            self.history = (
                config.rootpath / settings.history if settings.history_from_ini else self.path(settings.history)
            )
        self._preflight()
        self.max_cost = settings.max_cost
        workers = int(config.workerinput.get("workercount", 1)) if self.is_worker else 1  # type: ignore[attr-defined]
        budget = Budget(self.max_cost / workers) if self.max_cost is not None else None  # each worker gets its share
        self.redact = Redactor(secret_values(s.key_env for s in [*specs, judge] if s and s.key_env))
        self.runner = Runner(
            concurrency=settings.concurrency,
            timeout=settings.timeout,
            retries=settings.retries,
            backoff=settings.backoff,
            check_timeout=settings.check_timeout,
            cache=self.cache,
            cache_mode=self.cache_mode,
            budget=budget,
            redact=self.redact,
            prompt_cache=settings.prompt_cache == Switch.AUTO,
            prefix_reuse=settings.prefix_reuse == Switch.AUTO,
        )
        try:
            self.error_limit: ErrorLimit = parse_error_limit(settings.max_errors)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        self.thresholds = Thresholds(**{key: getattr(settings, key) for key in THRESHOLD_KEYS})
        # a gate passes what its 95% interval shows; --upskill-lenient decides the rest on the estimate
        self.strict = not settings.lenient
        self.effect = DEFAULT_EFFECT if settings.effect is None else settings.effect
        self.family = settings.family
        margin = settings.max_regression
        if margin is None:  # non-inferiority needs a margin; "shown worse" (--upskill-compare) does not
            margin = NONINFERIORITY_MARGIN if settings.against else 0.0
        self.compare_rule = CompareRule(margin, settings.min_improvement)
        gates = [f"--upskill-{k.replace('_', '-')}" for k in THRESHOLD_KEYS if getattr(self.thresholds, k) is not None]
        gates += ["--upskill-compare"] if settings.compare else []
        # a CI gate that would pass on nothing measured (a merge measures the shards' trials)
        if gates and not specs and not config.getoption("collectonly") and shards is None:
            raise pytest.UsageError(
                f"{', '.join(gates)} set, but no model is named, so nothing would be measured: {NO_MODEL}"
            )
        self.looks: Looks | None = None
        if settings.auto_runs:  # each look, and the verdict where it stopped, at its level (results/sequential.py)
            rules = Rules(
                self.thresholds, self.strict, self.effect, self.compare_rule, bool(settings.against), settings.max_runs
            )
            left = (lambda b=budget: b.spent < b.limit) if budget is not None else None
            self.looks = Looks(self.runner, rules, left)
        self.changed = self._changed_files()
        self.unseen = Unseen()  # SKILL.md files seen but not collected

    @property
    def auto_runs(self) -> tuple[bool, int]:
        """Whether the trials were sampled until decided, and the most runs: this run's settings, or
        a merge's shards' (they looked; the merge reads their verdicts at the same levels)."""
        if self.shards is not None:
            ran = self.shards.settings
            return bool(ran.get("auto_runs")), int(ran.get("runs", 1))
        return self.settings.auto_runs, self.settings.runs

    def level_for(self, result: Result) -> stats.Level:
        """The level a result's verdicts are read at: 95%, or under --upskill-runs auto the level of
        the look it stopped at (a model at temperature 0 has one run and no look: 95%)."""
        auto, most = self.auto_runs
        if not auto or any(s.name == result.model and s.repeats_answers for s in self.specs):
            return stats.LEVEL95
        return stats.sequential_level(runs_used(result), most)

    def _against(self) -> Against | None:
        ref = self.settings.against
        if not ref:
            return None
        try:
            return Against(self.config.rootpath, ref, self.config.invocation_params.dir, self.settings.spec)
        except GitError as exc:
            raise pytest.UsageError(f"--upskill-against {ref}: {exc}") from None

    def _find_catalog(self) -> Catalog:
        """--upskill-catalog DIR, else every skill under the paths pytest was given."""
        if self.settings.catalog:
            roots = [self.path(self.settings.catalog)]
            if not roots[0].is_dir():
                roots = [self.config.rootpath / self.settings.catalog]
        else:
            roots = [self.path(arg.split("::", 1)[0]) for arg in self.config.args] or [self.config.rootpath]
        return find_catalog(roots, self.settings.spec, self.settings.skill_folders)

    def _descriptions_at_ref(self) -> Callable[[Skill], Previous] | None:
        """The skills at the ref they are compared with (--upskill-against, else
        --upskill-changed-since): whose descriptions changed decides the blast radius."""
        if self.against is not None:
            return self.against.of
        ref = self.settings.changed_since
        if not ref:
            return None
        found: list[Against] = []

        def of(skill: Skill) -> Previous:  # the skills at REF are read only where a catalog is compared
            if not found:
                found.append(Against(self.config.rootpath, ref, self.config.invocation_params.dir, self.settings.spec))
                self.closing.append(found[0])
            return found[0].of(skill)

        return of

    def blast_radius(self) -> tuple[str, ...]:
        """--upskill-changed-since: the skills of the catalog whose description changed; where
        there is one, the trigger cases of every skill are collected, changed or not."""
        return self.catalogs.changed if self.changed is not None else ()

    def _changed_files(self) -> set[Path] | None:
        ref = self.settings.changed_since
        if not ref:
            return None
        try:
            return changed_files(self.config.rootpath, ref)
        except GitError as exc:
            raise pytest.UsageError(f"--upskill-changed-since {ref}: {exc}") from None

    def comparable_settings(self) -> dict[str, Any]:
        """What makes two runs' figures comparable, for the report's ``run`` (and so the history)."""
        settings = self.context
        found: dict[str, Any] = {
            "runs": settings.runs,
            "injection": settings.injection,
            "max_turns": settings.max_turns,
            "system_prompt": "default" if settings.scaffold == DEFAULT_SCAFFOLD else "custom",
            "cache": self.cache_mode,
            "strict": self.strict,
            "family": self.family,
            "max_errors": self.error_limit.describe(),
        }
        found.update({k: v for k, v in asdict(self.thresholds).items() if v is not None})
        if settings.judge is not None:
            found["judge_model"] = settings.judge.name
        if self.settings.auto_runs:
            found["auto_runs"] = True  # runs: the most; the looks add them only where they can decide
        if self.settings.against:
            found["against"] = self.settings.against
        if self.settings.controls:
            found["controls"] = True
        if self.max_cost is not None:
            found["max_cost"] = self.max_cost
        if self.shard is not None:
            found["shard"] = f"{self.shard[0]}/{self.shard[1]}"
        if self.shards is not None:  # what the shards ran with; the gates are this run's
            ran = {k: v for k, v in self.shards.settings.items() if k not in GATE_SETTINGS}
            found = {**ran, **{k: v for k, v in found.items() if k in GATE_SETTINGS}}
        return found

    def is_cached(self, spec: ModelSpec, request: Request, run: int, salt: str | None = None) -> bool:
        """Whether the response cache holds this request's answer (so it costs nothing)."""
        return self.cache_mode != CacheMode.OFF and self.cache.get(cache_key(spec, request, run, salt)) is not None

    def wants(self, skill_dir: Path) -> bool:
        """Whether the skill in ``skill_dir`` is collected (--upskill-changed-since)."""
        return self.changed is None or is_changed(skill_dir, self.changed)

    def path(self, name: str) -> Path:
        """An output path as the user gave it: relative to where pytest was started."""
        return Path(self.config.invocation_params.dir, name)

    def _preflight(self) -> None:
        """Every place the run will write, checked before the first request (see preflight.py):
        the cache everywhere, the reports where they are written (the controller)."""
        config = self.config
        names = (
            ("upskill_report", "--upskill-report"),
            ("upskill_markdown", "--upskill-markdown"),
            ("upskill_html", "--upskill-html"),
            ("xmlpath", "--junitxml"),
        )
        outputs = (
            []
            if self.is_worker
            else [(what, self.path(v)) for name, what in names if (v := config.getoption(name, None))]
        )
        try:
            check_outputs(
                self.cache, self.cache_mode, outputs, None if self.is_worker else os.environ.get("GITHUB_STEP_SUMMARY")
            )
            if self.history is not None and not self.is_worker:
                writable_folder(self.history, "--upskill-history (upskill_history)")
        except PreflightError as exc:
            raise pytest.UsageError(str(exc)) from None
