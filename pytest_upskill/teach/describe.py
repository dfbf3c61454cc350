"""``pytest-upskill describe SKILL_DIR``: a teacher proposes descriptions from the trigger cases'
failures, and the best is kept, on three splits of the trigger cases:

* **train** — the students run the trigger cases among the catalog with a description; the
  failures (should have loaded it and did not, should not have and did) go to the teacher, which
  proposes the next description;
* **validation** — every description is measured here too, and the one kept is the best here (the
  original stays unless a proposal does better);
* **test** — never shown to the teacher nor used to choose: the original and the kept description
  are measured on it once, at the end, and that is the figure reported. (Picking by a score and
  reporting the same score is biased upward: skill-creator's loop does that.)

Each split keeps both kinds of case (stratified by ``should_trigger``), chosen by a hash of the
case's id (the same split every run). The proposal is written to ``SKILL.proposed.md`` beside the
skill, with only the description changed; SKILL.md is never written.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from pytest_upskill.errors import GenerateError, SkillFileError
from pytest_upskill.results.report import Report
from pytest_upskill.scoring.checks import CheckRegistry
from pytest_upskill.skills.catalog import find_catalog
from pytest_upskill.skills.skill_md import Case, Skill, load_cases
from pytest_upskill.teach.loop import FAILURE_CHARS, SHOWN_CHARS, TeachOptions, TeachRun, skill_folder
from pytest_upskill.teach.teacher import _Answer, answer_tool, front_of
from pytest_upskill.types import Arm

PROPOSED = "SKILL.proposed.md"
MIN_PER_KIND = 3  # should-trigger and should-not cases, each: one per split at least


class Described(_Answer):
    reasoning: str = Field(description="what the failures show about the description, in two or three sentences")
    description: str = Field(
        min_length=1,
        max_length=1024,
        description="the whole new description: what the skill does and when to use it (at most 1024 characters)",
    )


DESCRIBED = answer_tool(Described, "write_description", "The new description of the skill.")


@dataclass(frozen=True)
class Splits:
    train: list[Case]
    validation: list[Case]
    test: list[Case]


def three_way(cases: list[Case], seed: str = "describe") -> Splits:
    """Train, validation and test, each with both kinds of trigger case: a quarter of each kind to
    test and a quarter to validation (at least one each), the rest to train, by a hash of the id."""
    parts: tuple[list[Case], list[Case], list[Case]] = ([], [], [])
    for should in (True, False):
        kind = sorted(
            (c for c in cases if c.should_trigger is should),
            key=lambda c: hashlib.sha256(f"{seed}\0{c.key}".encode()).hexdigest(),
        )
        held = max(1, round(len(kind) / 4))
        parts[2].extend(kind[:held])
        parts[1].extend(kind[held : 2 * held])
        parts[0].extend(kind[2 * held :])
    return Splits(*parts)


@dataclass(frozen=True)
class Score:
    right: int  # trigger trials that decided right (loaded when it should, left it when it should not)
    scored: int
    failures: list[str]  # the wrong decisions, in words, for the teacher

    @property
    def rate(self) -> float:
        return self.right / self.scored if self.scored else 0.0

    def text(self) -> str:
        return f"{self.right}/{self.scored} right ({self.rate * 100:.0f}%)"


def score(report: Report, skill: str, queries: dict[str, str]) -> Score:
    """The trigger trials of ``skill`` in a students' report on the cases ``queries`` names (case
    key -> its query): right decisions, and the wrong ones."""
    right = scored = 0
    failures: list[str] = []
    for result in report.results:
        if result.skill != skill:
            continue
        for case in result.cases:
            if case.case not in queries:
                continue
            for trial in case.trials:
                if trial.arm != Arm.TRIGGER or trial.passed is None:
                    continue
                scored += 1
                right += trial.passed
                if not trial.passed:
                    should = "should load the skill" if case.should_trigger else "should NOT load the skill"
                    failures.append(
                        f"- {result.model}: {json.dumps(queries.get(case.case, case.case))[:SHOWN_CHARS]} ({should}): "
                        f"{trial.message}"
                    )
    return Score(right, scored, failures)


def describe_prompt(skill: Skill, description: str, failures: list[str], train: Score, catalog: list[str]) -> str:
    shown = "\n".join(failures)[:FAILURE_CHARS] or "(none: every decision was right)"
    others = ", ".join(n for n in catalog if n != skill.name) or "(none)"
    return (
        f"The skill {skill.name!r} is offered to a model by its name and description only, among other skills "
        f"({others}); the model loads it with a tool when the description fits the user's request. Rewrite the "
        "description so that the model loads this skill for the requests it is for, and leaves it alone for "
        "near misses that other skills or no skill should handle. Name the tasks and the words users say; say "
        "when not to use it where near misses are close. Keep it under 1024 characters, one paragraph, no angle "
        "brackets.\n\n"
        f"The skill's instructions, for what it does:\n<instructions>\n{skill.body[:6000]}\n</instructions>\n\n"
        f"The description now:\n<description>\n{description}\n</description>\n\n"
        f"On the training requests it decided {train.text()}. The wrong decisions:\n{shown}"
    )


def _check(answer: Described) -> str | None:
    if re.search(r"[<>]", answer.description):
        return "the description has '<' or '>', which breaks the listing of skills: leave them out"
    if "\n\n" in answer.description.strip():
        return "write the description as one paragraph"
    return None


class Measure:
    """Runs the students on trigger cases with a description, among the catalog: one run per
    description, scored split by split."""

    def __init__(self, session: TeachRun, settings: TeachOptions, skill: Skill, catalog: Path, work: Path):
        self.session, self.settings, self.skill, self.catalog, self.work = session, settings, skill, catalog, work
        self.runs = 0

    def __call__(self, description: str, *splits: list[Case]) -> list[Score]:
        self.runs += 1
        folder = self.work / f"run-{self.runs}" / self.skill.name
        folder.mkdir(parents=True)
        (folder / "SKILL.md").write_text(with_description(self.skill, description), encoding="utf-8")
        tests = [{"id": c.key, "query": c.input, "should_trigger": c.should_trigger} for cs in splits for c in cs]
        (folder / "skill_meta.json").write_text(json.dumps({"tests": tests}), encoding="utf-8")
        report = self.session.evaluate(
            folder / "skill_meta.json",
            self.settings.students,
            self.settings.runs,
            f"describe-{self.runs}",
            options=["--upskill-catalog", str(self.catalog)],
        )
        return [score(report, self.skill.name, {c.key: c.input for c in cs}) for cs in splits]


def with_description(skill: Skill, description: str) -> str:
    """The skill's SKILL.md with another description: its frontmatter as written, the description's
    lines (and their continuation lines) replaced by one double-quoted line; the body as it is."""
    lines = front_of(skill.path).splitlines()[1:-1]
    kept: list[str] = []
    skipping = False
    for line in lines:
        if re.match(r"description\s*:", line):
            kept.append(f"description: {json.dumps(description, ensure_ascii=False)}")
            skipping = True
        elif skipping and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        else:
            skipping = False
            kept.append(line)
    return "---\n" + "\n".join(kept) + "\n---\n\n" + skill.body + "\n"


def describe(session: TeachRun, settings: TeachOptions, folder: Path, rounds: int, catalog: Path | None) -> int:
    say = session.say
    _, skill = skill_folder(folder)
    try:
        meta = next((folder / n for n in ("skill_meta.json", "tests.json") if (folder / n).is_file()), None)
        cases = load_cases(meta, CheckRegistry({}).prepare).cases if meta is not None else []
    except SkillFileError as exc:
        raise GenerateError(str(exc), 2) from None
    triggers = [c for c in cases if c.is_trigger]
    kinds = {should: sum(c.should_trigger is should for c in triggers) for should in (True, False)}
    if min(kinds.values()) < MIN_PER_KIND:
        raise GenerateError(
            f"{folder}: describe needs at least {MIN_PER_KIND} should-trigger and {MIN_PER_KIND} should-not-trigger "
            f"cases (it has {kinds[True]} and {kinds[False]}), to split them into train, validation and an untouched "
            'test set; add cases {"query": "...", "should_trigger": true|false} to its skill_meta.json',
            2,
        )
    proposed_path = folder / PROPOSED
    if proposed_path.exists() and not settings.force:
        raise GenerateError(f"{proposed_path} exists: move it away, or pass --force to replace it", 2)
    catalog = (catalog or folder.parent).resolve()
    splits = three_way(triggers)
    say(
        f"trigger cases of {skill.name}: {len(splits.train)} to train on (the teacher sees their failures), "
        f"{len(splits.validation)} to choose on, {len(splits.test)} held out to report on (never seen, never chosen on)"
    )
    teacher = session.teacher(settings.teacher, settings)
    work = Path(tempfile.mkdtemp(prefix="upskill-describe-"))
    try:
        measure = Measure(session, settings, skill, catalog, work)
        names = find_catalog([catalog]).names()
        current = skill.description
        train, best_validation = measure(current, splits.train, splits.validation)
        best = current
        say(f"original description: train {train.text()}, validation {best_validation.text()}")
        for round_ in range(1, rounds + 1):
            prompt = describe_prompt(skill, current, train.failures, train, names)
            answer = teacher.ask(prompt, Described, DESCRIBED, _check)
            current = answer.description.strip()
            train, validation = measure(current, splits.train, splits.validation)
            kept = validation.rate > best_validation.rate
            say(
                f"round {round_}: train {train.text()}, validation {validation.text()}"
                + (": the best so far" if kept else ": not better on validation")
            )
            if kept:
                best, best_validation = current, validation
            if not train.failures:
                break
        if best == skill.description:
            say("no proposed description did better than the original on the validation cases: nothing written")
            return 1
        (before,), (after,) = measure(skill.description, splits.test), measure(best, splits.test)
        say(
            f"held-out test cases ({len(splits.test)}, never seen, never chosen on): original {before.text()} → "
            f"proposed {after.text()}"
        )
        if proposed_path.exists():
            shutil.copy2(proposed_path, proposed_path.with_name(PROPOSED + ".orig"))
        proposed_path.write_text(with_description(skill, best), encoding="utf-8")
        say(f"proposed description written to {proposed_path} (SKILL.md is unchanged): {best}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
