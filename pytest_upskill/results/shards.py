"""Shards of one suite across CI jobs, and their merge.

``pytest --upskill-shard K/N`` keeps the K-th of N shares of the collected items; a skill × model is
never split (its trials are what its lift and interval are computed on), and the shares are
balanced by item count (the largest skill × model first, each to the smallest shard so far). The
same collection gives every job the same cut, so N jobs run each item exactly once.

``pytest-upskill merge REPORT...`` (``pytest --upskill-merge REPORT``, repeated) reads the JSON
reports of the shards and feeds their trials to the controller as if they had run in this
session: lifts, intervals, verdicts, gates, exit status and every report are computed by the same
code as in one run, from the trials (not from the shards' figures).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_upskill.engine.nodeids import group_of
from pytest_upskill.errors import MergeError
from pytest_upskill.results.aggregate import Received, trial_outcome
from pytest_upskill.results.report import Report, first_problem, read_report

SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` as (K, N), 1 <= K <= N; ValueError saying what it must be."""
    match = SHARD.match(text or "")
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ValueError(
            f"--upskill-shard must be K/N with 1 <= K <= N (this job's shard of N), e.g. 1/4, not {text!r}"
        )
    return int(match[1]), int(match[2])


def shard_of(nodeids: Sequence[str], shards: int) -> dict[tuple[str, str], int]:
    """Each skill × model (nodeids.group_of) of the collection -> its shard, 1 to ``shards``."""
    sizes: dict[tuple[str, str], int] = {}
    for nodeid in nodeids:
        group = group_of(nodeid)
        sizes[group] = sizes.get(group, 0) + 1
    load = [0] * shards
    assigned = {}
    # largest first; ties in a fixed order that does not depend on the collection's order
    for group in sorted(sizes, key=lambda g: (-sizes[g], hashlib.sha256("\0".join(g).encode()).hexdigest())):
        k = min(range(shards), key=lambda i: (load[i], i))
        assigned[group] = k + 1
        load[k] += sizes[group]
    return assigned


def select_shard(items: Sequence[Any], k: int, n: int) -> tuple[list[Any], list[Any]]:
    """The items of shard ``k`` of ``n``, and the others."""
    shard = shard_of([item.nodeid for item in items], n)
    keep: list[Any] = []
    drop: list[Any] = []
    for item in items:
        (keep if shard[group_of(item.nodeid)] == k else drop).append(item)
    return keep, drop


SKILL_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # the Agent Skills spec's names (at most 64 characters)
SKILL_NAME_LENGTH = 64


def outcomes(report: Report) -> Iterator[Received]:
    """The report's trials, as the outcomes their items' reports carried (plugin/wire.py)."""
    for result in report.results:
        for case in result.cases:
            for trial in case.trials:
                yield Received(trial_outcome(result.skill, result.model, case.case, trial), result.thresholds or None)


@dataclass
class Shards:
    """What the shards' reports hold, checked to be one suite's shards."""

    paths: list[Path]
    reports: list[Report] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        first = self.reports[0].run if self.reports else None
        return list(first.models) if first is not None else []

    @property
    def settings(self) -> dict[str, Any]:
        first = self.reports[0].run if self.reports else None
        return {k: v for k, v in (first.settings if first else {}).items() if k != "shard"}

    @property
    def missing(self) -> list[str]:
        return [nodeid for report in self.reports for nodeid in report.missing]


def read_shards(config: Any, given: Sequence[str]) -> Shards | None:
    """--upskill-merge's reports (paths as given, from where pytest was started), or None; a report
    that cannot be merged is a usage error naming it."""
    import pytest

    if not given:
        return None
    try:
        return load_shards([Path(config.invocation_params.dir, p) for p in given])
    except MergeError as exc:
        raise pytest.UsageError(f"--upskill-merge: {exc}") from None


def load_shards(paths: Sequence[Path]) -> Shards:
    """The shards' reports; MergeError when one cannot be read, when they ran with different
    settings, when a skill × model appears in two of them, or when a shard is missing."""
    shards = Shards(list(paths))
    for path in paths:
        try:
            shards.reports.append(read_report(path))
        except OSError as exc:
            raise MergeError(f"{path}: cannot be read: {exc.strerror or exc}") from None
        except ValidationError as exc:
            raise MergeError(f"{path}: not a report written by --upskill-report ({first_problem(exc)})") from None
        except ValueError as exc:
            raise MergeError(f"{path}: not a report written by --upskill-report ({exc})") from None
    seen: dict[tuple[str, str], Path] = {}
    cut: dict[int, Path] = {}
    total: set[int] = set()
    for path, report in zip(paths, shards.reports, strict=True):
        if report.run is None or (report.results and not any(case.trials for r in report.results for case in r.cases)):
            raise MergeError(
                f"{path}: the report holds no trials (written by a version before 0.1, or a run that ran nothing)"
            )
        settings = {k: v for k, v in report.run.settings.items() if k != "shard"}
        if settings != shards.settings or report.run.models != shards.models:
            raise MergeError(
                f"{path}: ran with other models or settings than {paths[0]} ({report.run.models} {settings} against "
                f"{shards.models} {shards.settings}); merge the shards of one run"
            )
        shard = report.run.settings.get("shard")
        if isinstance(shard, str):
            k, n = parse_shard(shard)
            if k in cut:
                raise MergeError(f"{path} and {cut[k]} are both shard {shard}; pass each shard's report once")
            cut[k] = path
            total.add(n)
        for result in report.results:
            if (
                len(result.skill) > SKILL_NAME_LENGTH
                or not SKILL_NAME.fullmatch(result.skill)
                or result.model not in report.run.models
            ):
                raise MergeError(
                    f"{path}: a result for skill {result.skill[:80]!r} × model {result.model[:80]!r}, which is not a "
                    "skill name (lower-case letters, digits and hyphens) or not one of the shard's models: not a "
                    "shard of this suite"
                )
            key = (result.skill, result.model)
            if key in seen:
                raise MergeError(
                    f"{result.skill} × {result.model} is in both {seen[key]} and {path}: pass each shard's report once"
                )
            seen[key] = path
    if len(total) > 1:
        raise MergeError(f"the reports are shards of different cuts ({', '.join(f'N={n}' for n in sorted(total))})")
    if total:
        (n,) = total
        absent = [f"{k}/{n}" for k in range(1, n + 1) if k not in cut]
        if absent:
            raise MergeError(
                f"no report of shard {', '.join(absent)}: merge the reports of every shard (a shard whose job "
                "failed before it wrote its report is a failed run)"
            )
    return shards
