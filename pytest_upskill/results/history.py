"""History across runs: ``--upskill-history DIR`` adds each run's report to DIR (one JSON file per
run, with its time, git commit and branch, models and settings in ``run``), and
``pytest-upskill runs DIR`` reads them back through the same report model to show the latest
figures, the skill × model matrix and each figure's trend (views.py draws them).

A file that is not a report is named and left out, never fatal: a history folder is shared by
many runs, some of them older versions of this plugin.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_upskill import __version__
from pytest_upskill.files import write_atomic
from pytest_upskill.results.report import Report, ResultReport, RunInfo, read_report
from pytest_upskill.skills.changes import git_head


def run_info(
    root: Path,
    models: list[str],
    settings: dict[str, Any],
    now: datetime | None = None,
    versions: dict[str, str] | None = None,
) -> RunInfo:
    commit, branch = git_head(root)
    when = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return RunInfo(
        time=when.isoformat().replace("+00:00", "Z"),
        commit=commit,
        branch=branch,
        models=models,
        model_versions=versions or {},
        settings=settings,
        plugin_version=__version__,
    )


def entry_name(info: RunInfo) -> str:
    """``20261122T140501Z-123456789-1a2b3c4d-5e6f7a.json``: sorts by time, two runs of the same
    second by the nanoseconds this one was written at; the random tail keeps two runs of the same
    instant (CI shards on two machines) apart."""
    stamp = info.time.replace("-", "").replace(":", "")
    return f"{stamp}-{time.time_ns() % 10**9:09d}-{(info.commit or 'nogit')[:8]}-{secrets.token_hex(3)}.json"


def add_run(folder: Path, report: Report) -> Path:
    """Write ``report`` (which has its ``run`` set) into the history folder; the path written."""
    assert report.run is not None
    path = folder / entry_name(report.run)
    write_atomic(path, report.to_json_text())
    return path


@dataclass(frozen=True)
class Run:
    path: Path
    report: Report

    @property
    def info(self) -> RunInfo:
        return self.report.run or RunInfo(time="")

    @property
    def label(self) -> str:
        """How a run is named in a table: its date and time, and its commit where known."""
        info = self.info
        when = info.time.replace("T", " ").rstrip("Z")[:16] or self.path.stem
        return when + (f" {info.commit[:7]}" if info.commit else "")


def read_runs(folder: Path) -> tuple[list[Run], list[str]]:
    """The runs in ``folder``, oldest first, and a line per file that was left out (with why)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    runs, problems = [], []
    for path in sorted(folder.glob("*.json")):
        try:
            report = read_report(path)
        except (OSError, ValueError) as exc:  # ValidationError is a ValueError
            why = (
                f"{exc.error_count()} field(s) not as a report has them"
                if isinstance(exc, ValidationError)
                else str(exc)
            )
            problems.append(f"{path}: not a report, left out ({why})")
            continue
        runs.append(Run(path, report))
    runs.sort(key=lambda r: (r.info.time, r.path.name))
    return runs, problems


def select(
    runs: list[Run], skills: list[str] | None = None, models: list[str] | None = None, last: int | None = None
) -> list[Run]:
    """The last ``last`` runs that measured a chosen skill × model, each keeping only those results."""
    kept = []
    for run in runs:
        results = [
            r
            for r in run.report.results
            if (not skills or r.skill in skills) and (not models or r.model in models or _alias(r.model) in models)
        ]
        if results:
            kept.append(Run(run.path, run.report.model_copy(update={"results": results})))
    return kept[-last:] if last else kept


def _alias(model: str) -> str:
    """``openai:m@http://...`` is also found as ``openai:m``."""
    return model.split("@", 1)[0]


def series(runs: list[Run]) -> dict[tuple[str, str], list[tuple[Run, ResultReport]]]:
    """skill × model -> its result in each run that measured it, oldest first."""
    found: dict[tuple[str, str], list[tuple[Run, ResultReport]]] = {}
    for run in runs:
        for result in run.report.results:
            found.setdefault((result.skill, result.model), []).append((run, result))
    return found


@dataclass(frozen=True)
class Drift:
    """A skill × model whose model changed version between two runs on the same cases, and what
    that did to the lift: ``redundant`` (it cleared 0 before, its interval holds 0 now: the new
    model does as well without the skill), ``harmful`` (wholly below 0 now), or ``holds``."""

    skill: str
    model: str
    before: str  # the version (provider:model) of the earlier run
    after: str
    old: ResultReport
    new: ResultReport
    kind: str


def model_drift(found: dict[tuple[str, str], list[tuple[Run, ResultReport]]]) -> list[Drift]:
    """Each change of a model's version between consecutive runs of a skill × model whose cases
    are the same, judged on the lift's intervals (the skill is the same: what moved is the model)."""
    drifts = []
    for (skill, model), points in found.items():
        for (run_a, old), (run_b, new) in zip(points, points[1:], strict=False):
            before = run_a.info.model_versions.get(model)
            after = run_b.info.model_versions.get(model)
            if not (before and after) or before == after or {c.case for c in old.cases} != {c.case for c in new.cases}:
                continue
            if old.lift_ci is None or new.lift_ci is None:
                continue
            helped = old.lift_ci[0] > 0
            if new.lift_ci[1] < 0:
                kind = "harmful"
            elif helped and new.lift_ci[0] <= 0:
                kind = "redundant"
            else:
                kind = "holds"
            drifts.append(Drift(skill, model, before, after, old, new, kind))
    return drifts
