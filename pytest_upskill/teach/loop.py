"""``pytest-upskill generate`` and ``pytest-upskill cases``: a teacher drafts a skill and its cases,
the plugin itself measures them on each student, and the teacher revises the skill on the failures.

The loop, measured:

1. The teacher drafts SKILL.md and N cases (or ``--from`` gives it a trace to distil, or a skill to
   improve), then ``--held-out`` more cases in a request of their own that shows only the task:
   those **held-out** cases decide the exit status (improving a skill holds out a third of its own
   cases, chosen by a fixed hash).
2. Each version of the skill is run on every student by :func:`~pytest_upskill.measure` (the
   plugin's own engine: the same runner, cache, settings and report as any run).
3. While the lift on the *training* cases is not PASS against ``--min-lift`` (the gate's own
   verdict, on its 95% interval) for every student, the teacher gets the training cases the
   students failed with the skill (the request, the answer, the checks that failed) and revises the
   instructions, up to ``--attempts`` times. It never sees a held-out case.
4. The version kept is the one whose lowest lower bound of the training lift (over the students)
   is highest, the earliest on a tie: never simply the last. The verdict that sets the exit status
   is on the held-out cases, which the loop could not fit; the training lift is printed as
   optimistic. Every attempt's figures go into skill_meta.json's ``metadata``.

Nothing of the user's is overwritten silently: a new skill goes to a new folder; an improved one
is written beside the old (``SKILL.proposed.md``, ``skill_meta.proposed.json``), or over it with
``--force``, the old files kept as ``*.orig``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_upskill import __version__
from pytest_upskill.engine.budget import price
from pytest_upskill.engine.prompt import DEFAULT_SCAFFOLD
from pytest_upskill.errors import GenerateError, MeasureError, SkillFileError, TeacherError, TrialError
from pytest_upskill.files import write_atomic
from pytest_upskill.models import ModelSpec, price_source
from pytest_upskill.plugin.session import UpskillRun
from pytest_upskill.render.text import pct
from pytest_upskill.results import stats
from pytest_upskill.results.aggregate import Result, trial_outcome
from pytest_upskill.results.gates import PASS, Thresholds, verdict_for
from pytest_upskill.results.report import Report
from pytest_upskill.skills.skill_md import Skill, load_skill, skill_md_in
from pytest_upskill.teach.students import measure
from pytest_upskill.teach.teacher import (
    DraftCase,
    DraftCases,
    DraftSkill,
    Revision,
    Teacher,
    answer_tool,
    case_files,
    cases_meta,
    cases_prompt,
    check_cases,
    check_draft,
    draft_prompt,
    front_of,
    frontmatter,
    held_out_prompt,
    problems_of,
    revise_prompt,
    unique_ids,
    write_files,
    write_skill,
)
from pytest_upskill.teach.traces import cut, read_trace
from pytest_upskill.types import Arm, CacheMode, Completion, Request

HELD_OUT = 6  # held-out cases drafted by default, in a request of their own that never shows the skill
FAILURE_CHARS = 12_000  # of failures shown to the teacher per revision
SHOWN_CHARS = 1_500  # of one request or answer among them


@dataclass
class TeachOptions:
    """What the commands were asked (from cli/main.py's arguments)."""

    teacher: ModelSpec
    students: list[ModelSpec]
    cases: int
    attempts: int
    held_out: int | None
    min_lift: float
    runs: int | None
    force: bool
    repairs: int
    teacher_max_tokens: int
    adversary: ModelSpec | None = None
    adversary_cases: int = 0


@dataclass
class TeachRun:
    """The commands' link to the plugin: the run's settings from the same ini, the runner that sends
    the teacher's requests, and the spending limit shared with the students' runs."""

    config: pytest.Config
    run: UpskillRun
    say: Callable[[str], None]
    students_spent: float = 0.0
    progress_s: float = 30.0  # how often a line says a request is still being answered

    def send(self, spec: ModelSpec, request: Request) -> Completion:
        def waiting(seconds: float) -> None:  # a local teacher may write for minutes: say that it is at work
            self.say(f"  still waiting for {spec.name}: {seconds:.0f} s (at most --timeout per attempt)")

        try:
            return self.run.runner.complete(spec, request, waiting=waiting, every=self.progress_s)
        except TrialError as exc:
            if exc.kind == "over_budget":
                raise GenerateError(f"stopped: {exc} (spent: {self.spent_text()})", 1) from None
            raise GenerateError(f"the teacher's request failed: {exc}") from None

    def teacher(self, spec: ModelSpec, settings: TeachOptions) -> Teacher:
        """``spec`` as a teacher (or adversary) whose requests go through this session."""
        return Teacher(spec, self.send, max_tokens=settings.teacher_max_tokens, repairs=settings.repairs, say=self.say)

    def cached(self, spec: ModelSpec, request: Request) -> bool:
        return self.run.is_cached(spec, request, 0)

    @property
    def teacher_spent(self) -> float:
        budget = self.run.runner.transport.budget
        return budget.settled if budget is not None else 0.0

    def remaining(self) -> float | None:
        if self.run.max_cost is None:
            return None
        return self.run.max_cost - self.teacher_spent - self.students_spent

    def spent_text(self) -> str:
        return f"teacher ${self.teacher_spent:.4f}, students ${self.students_spent:.4f}"

    # ------------------------------------------------------------------ the students, by the plugin itself

    def evaluate(
        self,
        meta: Path,
        students: list[ModelSpec],
        runs: int | None,
        label: str,
        fresh: bool = False,
        options: list[str] | None = None,
    ) -> Report:
        """``measure()`` ``meta`` on ``students``: the same ini, rootdir, aliases and cache as the
        user's own runs.
        ``fresh``: the cache off, so that answers a selection was made on are never replayed later."""
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise GenerateError(f"stopped before {label}: --max-cost reached ({self.spent_text()})", 1)
        config = self.config
        started = time.monotonic()
        try:
            report = measure(
                meta,
                [s.name for s in students],
                runs=runs,
                cache=CacheMode.OFF if fresh else None,
                max_cost=remaining,
                rootdir=config.rootpath,
                inifile=config.inipath,
                cwd=config.invocation_params.dir,
                report=meta.parent.parent / f"{label}.report.json",
                options=options or [],
            )
        except MeasureError as exc:
            raise GenerateError(
                f"the students' run ({label}) ended with exit status {exc.code} and no report:\n{exc.tail}"
            ) from None
        if report.budget is not None:
            self.students_spent += report.budget.spent
        self.say(f"  ran {report.trials} trial(s) in {time.monotonic() - started:.0f} s")
        return report


# --------------------------------------------------------------------------------- figures


def subset(report: Report, model: str, cases: set[str]) -> Result:
    """The plugin's aggregate of ``model``'s trials on ``cases`` only (for the split's figures)."""
    result = Result("", model)
    for found in report.results:
        if found.model != model:
            continue
        result.skill = found.skill
        for runs in found.cases:
            if runs.case in cases:
                for trial in runs.trials:
                    result.add(trial_outcome(found.skill, model, runs.case, trial))
    return result


def figures(result: Result) -> dict[str, Any]:
    ci = result.lift_ci
    return {
        "cases": result.pairing.paired.n,
        "baseline": result.pass_rate(Arm.BASELINE),
        "with_skill": result.pass_rate(Arm.WITH_SKILL),
        "lift": result.lift,
        "lift_ci": [round(ci[0], 4), round(ci[1], 4)] if ci else None,
    }


def figure_text(found: dict[str, Any]) -> str:
    if not found["cases"]:
        return "no case scored in both arms"
    ci = found["lift_ci"]
    interval = f" [95% CI {pct(ci[0], True)}, {pct(ci[1], True)}]" if ci else ""
    return (
        f"{pct(found['baseline'])} → {pct(found['with_skill'])} ({pct(found['lift'], True)}{interval}) "
        f"on {found['cases']} case(s)"
    )


@dataclass
class Attempt:
    number: int
    folder: Path
    instructions: str
    changes: str
    report: Report | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> split -> figures (+ verdict)

    def score(self) -> float:
        """The lowest lower bound of the training lift over the students (what the kept version maximises)."""
        bounds = [r["train"]["lift_ci"][0] if r["train"]["lift_ci"] else -2.0 for r in self.results.values()]
        return min(bounds) if bounds else -2.0

    def passes(self) -> bool:
        return bool(self.results) and all(r["train"]["verdict"] == PASS for r in self.results.values())

    def record(self) -> dict[str, Any]:
        return {"attempt": self.number, "changes": self.changes, "results": self.results}


def split(keys: list[str], held_out: int | None, seed: str) -> tuple[list[str], list[str]]:
    """(training, held-out) cases: a fixed pseudo-random third held out (at least 1 of 3 or more)."""
    count = held_out if held_out is not None else (len(keys) // 3 if len(keys) >= 3 else 0)
    count = max(0, min(count, len(keys) - 1))
    order = sorted(keys, key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest())
    held = set(order[:count])
    return [k for k in keys if k not in held], [k for k in keys if k in held]


# --------------------------------------------------------------------------------- files


def _free_folder(parent: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``... where a folder of that name exists: never into an existing one."""
    candidate, n = name, 1
    while (parent / candidate).exists():
        n += 1
        candidate = f"{name[: 64 - len(str(n)) - 1]}-{n}"
    return candidate


def _backup(path: Path) -> Path | None:
    if not path.exists():
        return None
    target, n = path.with_name(path.name + ".orig"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.orig{n}")
    shutil.copy2(path, target)
    return target


def _case_key(case: dict[str, Any], index: int) -> str:
    from pytest_upskill.skills.skill_md import _slug

    return _slug(str(case.get("id") or case.get("name") or f"case-{index + 1}"))


# --------------------------------------------------------------------------------- the loop


class Refiner:
    """One skill through the loop: its versions in a scratch folder beside the output (so the
    project's conftest.py files apply to the students' runs), removed at the end."""

    def __init__(self, session: TeachRun, settings: TeachOptions, teacher: Teacher, name: str, front: str, out: Path):
        self.session, self.settings, self.teacher = session, settings, teacher
        self.name, self.front = name, front
        out.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=".upskill-attempts-", dir=out))
        self.base: Path | None = None  # an existing skill's folder: its other files go with every version

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def version(self, number: int, instructions: str, meta: dict[str, Any], extra: dict[str, str]) -> Path:
        folder = self.work / f"attempt-{number}" / self.name
        if self.base is not None:
            shutil.copytree(
                self.base, folder, ignore=shutil.ignore_patterns(".*", "*.orig*", "*.proposed.*"), dirs_exist_ok=True
            )
        write_skill(folder, self.front, instructions, meta, extra)
        return folder

    def measure(self, attempt: Attempt, train: list[str], held: list[str]) -> None:
        s = self.settings
        label = f"attempt-{attempt.number}"
        self.session.say(
            f"attempt {attempt.number}: running {len(train) + len(held)} case(s) on "
            f"{', '.join(m.name for m in s.students)}, with and without the skill"
        )
        report = attempt.report = self.session.evaluate(attempt.folder / "skill_meta.json", s.students, s.runs, label)
        for student in s.students:
            per: dict[str, Any] = {}
            for part, keys in (("train", train), ("held_out", held)):
                if not keys:
                    continue
                result = subset(report, student.name, set(keys))
                per[part] = figures(result)
                per[part]["verdict"] = verdict_for(result, Thresholds(min_lift=s.min_lift), strict=True).verdict
            attempt.results[student.name] = per
            shown = f"attempt {attempt.number}  {student.name}: {figure_text(per['train'])} {per['train']['verdict']}"
            if "held_out" in per:
                shown += f"; held out: {figure_text(per['held_out'])}"
            self.session.say(shown)

    def failures(self, attempt: Attempt, inputs: dict[str, str]) -> str:
        """The training cases failed with the skill, as the teacher sees them (``inputs``: the
        training cases' requests; a held-out case is never among them)."""
        assert attempt.report is not None
        parts: list[str] = []
        used = 0
        for found in attempt.report.results:
            for runs in found.cases:
                if runs.case not in inputs:
                    continue
                for trial in runs.trials:
                    if trial.arm != Arm.WITH_SKILL or trial.passed is not False:
                        continue
                    text = (
                        f"### case {runs.case} ({found.model}, run {trial.run})\n"
                        f"request:\n{inputs[runs.case][:SHOWN_CHARS]}\n"
                        f"answer:\n{trial.answer[:SHOWN_CHARS]}\n"
                        f"failed: {trial.message[:SHOWN_CHARS]}\n"
                    )
                    if used + len(text) > FAILURE_CHARS:
                        parts.append("[... more failures left out ...]")
                        return "\n".join(parts)
                    parts.append(text)
                    used += len(text)
        return "\n".join(parts)

    def loop(
        self, first: str, meta: dict[str, Any], extra: dict[str, str], train: list[str], held: list[str]
    ) -> Attempt:
        s = self.settings
        self.train, self.held = train, held
        if held:
            runs = s.runs or 1
            smallest = stats.detectable(len(held), runs, s.min_lift)
            power = (
                f"{len(held)} held-out case(s) × {runs} run(s) give {stats.POWER:.0%} power to pass --min-lift "
                f"{s.min_lift:g} for a true lift of {smallest * 100:+.0f}% or more"
                if smallest is not None
                else f"{len(held)} held-out case(s) × {runs} run(s) have under {stats.POWER:.0%} power for any lift "
                "(--held-out: more resolve smaller lifts)"
            )
            self.session.say(
                f"cases: {len(train)} for training, {len(held)} held out ({', '.join(held)}): the teacher never sees "
                f"how a held-out case went; they decide the exit status. {power}"
            )
        else:
            self.session.say(
                f"cases: all {len(train)} for training; none held out: the exit status is decided on the training "
                "cases, which the loop fits (optimistic)"
            )
        inputs = {_case_key(c, i): str(c.get("input", "")) for i, c in enumerate(meta["tests"])}
        train_inputs = {k: v for k, v in inputs.items() if k in set(train)}
        attempts = [Attempt(1, self.version(1, first, meta, extra), first, "first version")]
        self.measure(attempts[0], train, held)
        while not attempts[-1].passes() and len(attempts) <= s.attempts:
            last = attempts[-1]
            if not any(r["train"]["cases"] for r in last.results.values()):
                self.session.say(
                    "no training case was scored in both arms (the errors or skipped trials above say why): not revised"
                )
                break
            failed = self.failures(last, train_inputs)
            if not failed:
                self.session.say("the students failed no training case with the skill: nothing to revise on")
                break
            figures_now = "; ".join(f"{m}: {figure_text(r['train'])}" for m, r in last.results.items())
            number = last.number + 1
            self.session.say(f"attempt {number}: the teacher revises the skill on the training failures")

            def usable(revision: Revision, number: int = number) -> str | None:
                folder = self.version(number, revision.instructions, meta, extra)
                return problems_of(folder)

            revision = self.teacher.ask(
                revise_prompt(self.front + "\n" + last.instructions, failed, f"Training cases: {figures_now}."),
                Revision,
                answer_tool(Revision, "revise_skill", "The revised instructions of the skill"),
                usable,
            )
            self.session.say(f"  changes: {' '.join(revision.changes.split())[:300]}")
            attempt = Attempt(
                number, self.work / f"attempt-{number}" / self.name, revision.instructions, revision.changes
            )
            self.measure(attempt, train, held)
            attempts.append(attempt)
        best = max(attempts, key=lambda a: (a.score(), -a.number))
        self.attempts = attempts
        return best


def _metadata(settings: TeachOptions, task: str, source: str | None, refiner: Refiner, best: Attempt) -> dict[str, Any]:
    found: dict[str, Any] = {
        "generated_by": f"pytest-upskill {__version__}",
        "teacher": settings.teacher.name,
        "source_task": task,
    }
    if source:
        found["source"] = source
    found.update(
        {
            "students": [s.name for s in settings.students],
            "min_lift": settings.min_lift,
            "splits": {"train": refiner.train, "held_out": refiner.held},
            "kept_attempt": best.number,
            "attempts": [a.record() for a in refiner.attempts],
        }
    )
    return found


def _report_end(session: TeachRun, settings: TeachOptions, refiner: Refiner, best: Attempt) -> int:
    say = session.say
    why = "the highest lowest lower bound of the training lift over the students"
    say(f"kept attempt {best.number} of {len(refiner.attempts)} ({why})")
    held = bool(refiner.held) and all("held_out" in per for per in best.results.values())
    for model, per in best.results.items():
        if held:
            say(
                f"  {model}: held-out cases, never shown to the teacher: {figure_text(per['held_out'])}: "
                f"{per['held_out']['verdict']} against --min-lift {settings.min_lift:g}"
            )
        say(
            f"  {model}: training cases (optimistic: the loop fitted them): {figure_text(per['train'])}: "
            f"{per['train']['verdict']}"
        )
    if session.run.max_cost is not None or any(
        s.input_price or s.output_price for s in [settings.teacher, *settings.students]
    ):
        say(f"spent: {session.spent_text()}")
    part, where = ("held_out", "held-out") if held else ("train", "training")
    if all(per[part]["verdict"] == PASS for per in best.results.values()) and best.results:
        say(
            f"exit 0: the kept skill's lift on the {where} cases is PASS against --min-lift {settings.min_lift:g} on "
            "every student" + ("" if held else " (training cases only: optimistic, nothing was held out)")
        )
        return 0
    say(
        f"exit 1: the skill was written, but its lift on the {where} cases is not PASS against --min-lift "
        f"{settings.min_lift:g} on every student (see above); more cases or runs narrow the interval"
    )
    return 1


def generate(
    session: TeachRun,
    settings: TeachOptions,
    task: str,
    examples: list[str],
    source: Path | None,
    out: Path,
    trace_chars: int,
) -> int:
    say = session.say
    teacher = session.teacher(settings.teacher, settings)
    improve = source is not None and source.is_dir()
    trace_text, source_note = None, None
    if source is not None and not improve:
        text, form = read_trace(source)
        trace_text, removed = cut(text, trace_chars)
        source_note = f"{source.name} ({form})"
        say(
            f"trace: {source} read as {form}, {len(text):,} characters"
            + (f"; cut to {trace_chars:,} (--trace-chars): {removed:,} from the middle" if removed else "")
        )
    if improve:
        assert source is not None
        return _improve(session, settings, teacher, task, source)
    say(f"teacher {settings.teacher.name} drafts the skill and {settings.cases} case(s)")
    draft = teacher.ask(
        draft_prompt(task, settings.cases, examples, trace_text),
        DraftSkill,
        answer_tool(DraftSkill, "write_skill", "The skill and its test cases", settings.cases),
        lambda d: check_draft(d, settings.cases),
    )
    name = _free_folder(out, draft.name)
    if name != draft.name:
        say(f"{out / draft.name} exists: the new skill is named {name} (nothing existing is changed)")
    count = held_out_count(settings)
    held: list[DraftCase] = []
    if count:
        say(
            f"teacher {settings.teacher.name} drafts {count} held-out case(s) from the task alone, in a request of "
            "their own: it never sees the skill with them, nor how they went"
        )
        try:
            held = _draft_held_out(teacher, task, examples, draft, count)
        except TeacherError as exc:  # the skill and its cases are kept: decided on them, saying so
            say(f"  no usable held-out cases ({exc}); going on without them")
    tests, extra = cases_meta([*draft.cases, *held])
    meta: dict[str, Any] = {"tests": tests}
    front = frontmatter(name, draft.description)
    refiner = Refiner(session, settings, teacher, name, front, out)
    try:
        best = refiner.loop(draft.instructions, meta, extra, [c.id for c in draft.cases], [c.id for c in held])
        meta["metadata"] = _metadata(settings, task, source_note, refiner, best)
        target = out / name
        write_skill(target, front, best.instructions, meta, extra)
        say(f"written: {target}/SKILL.md and skill_meta.json ({len(meta['tests'])} case(s))")
        return _report_end(session, settings, refiner, best)
    finally:
        refiner.close()


def held_out_count(settings: TeachOptions) -> int:
    return HELD_OUT if settings.held_out is None else settings.held_out


def _draft_held_out(teacher: Teacher, task: str, examples: list[str], draft: DraftSkill, count: int) -> list[DraftCase]:
    """Cases drafted from the task alone, checked to load beside the drafted skill (ids kept apart)."""
    scratch = Path(tempfile.mkdtemp(prefix="upskill-held-out-"))
    try:
        tests, extra = cases_meta(draft.cases)
        folder = scratch / draft.name
        write_skill(folder, frontmatter(draft.name, draft.description), draft.instructions, {"tests": tests}, extra)
        known = {c.id for c in draft.cases}
        found = teacher.ask(
            held_out_prompt(task, count, examples),
            DraftCases,
            answer_tool(DraftCases, "write_held_out_cases", "Test cases for the task", count),
            lambda d: check_cases(d.cases, count, folder, known),
        )
        return unique_ids(found.cases, known)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _existing_cases(folder: Path) -> tuple[dict[str, Any], bool]:
    """skill_meta.json as data ({"tests": [...]} and whatever else it holds), and whether it had cases."""
    path = folder / "skill_meta.json"
    if not path.is_file():
        return {"tests": []}, False
    problem = problems_of(folder)
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):
        data = {"tests": data}
    if "cases" in data and "tests" not in data:
        data["tests"] = data.pop("cases")
    if problem and data.get("tests"):
        raise GenerateError(f"{path}: the cases do not load ({problem}); fix them first", 2)
    return data, bool(data.get("tests"))


def _draft_more(
    teacher: Teacher,
    folder: Path,
    skill_text: str,
    count: int,
    known: set[str],
    adversary: bool,
) -> list[DraftCase]:
    found = teacher.ask(
        cases_prompt(skill_text, count, adversary, sorted(known)),
        DraftCases,
        answer_tool(DraftCases, "write_cases", "Test cases for the skill", count),
        lambda d: check_cases(d.cases, count, folder, known),
    )
    return unique_ids(found.cases, known)


def skill_folder(folder: Path, option: str = "") -> tuple[Path, Skill]:
    """The SKILL.md of ``folder`` and its skill, or GenerateError (exit 2) saying what is wrong;
    ``option`` names the argument that gave the folder (``--from ``)."""
    skill_md = skill_md_in(folder)
    if skill_md is None:
        raise GenerateError(f"{option}{folder}: no SKILL.md in this folder", 2)
    try:
        return skill_md, load_skill(skill_md)
    except SkillFileError as exc:
        raise GenerateError(f"{option}{folder}: {exc}" if option else str(exc), 2) from None


def _improve(session: TeachRun, settings: TeachOptions, teacher: Teacher, task: str, folder: Path) -> int:
    say = session.say
    skill_md, skill = skill_folder(folder, "--from ")
    meta, had_cases = _existing_cases(folder)
    extra: dict[str, str] = {}
    if not had_cases:
        say(f"{folder} has no test cases: the teacher {settings.teacher.name} drafts {settings.cases}")
        drafted = _draft_more(teacher, folder, skill_md.read_text(encoding="utf-8"), settings.cases, set(), False)
        tests, extra = cases_meta(drafted)
        meta["tests"] += tests
    keys = [_case_key(c, i) for i, c in enumerate(meta["tests"])]
    train, held = split(keys, settings.held_out, f"{skill.name}\0{task}")
    refiner = Refiner(session, settings, teacher, folder.name, front_of(skill_md), folder.parent)
    refiner.base = folder
    say(f"improving {folder} ({skill.name}): {task}")
    try:
        first = skill.body
        best = refiner.loop(first, dict(meta), extra, train, held)
        own: dict[str, Any] = meta["metadata"] if isinstance(meta.get("metadata"), dict) else {}
        meta["metadata"] = {**own, **_metadata(settings, task, None, refiner, best)}
        if best.number == 1 and had_cases:
            say("no revision did better than the skill as it is: SKILL.md is unchanged")
        _write_improved(say, folder, refiner.front, best.instructions, meta, extra, settings.force)
        return _report_end(session, settings, refiner, best)
    finally:
        refiner.close()


def _write_files(folder: Path, files: dict[str, str], force: bool) -> None:
    """A case's files (a python_tests file) into the skill's folder: beside one that differs, unless --force."""
    for name, text in files.items():
        path = folder / name
        if path.exists() and path.read_text(encoding="utf-8") != text and not force:
            path = path.with_name(path.stem + ".proposed" + path.suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)


def _write_improved(
    say: Callable[[str], None],
    folder: Path,
    front: str,
    instructions: str,
    meta: dict[str, Any],
    extra: dict[str, str],
    force: bool,
) -> None:
    from pytest_upskill.teach.teacher import skill_md as skill_text

    _write_files(folder, extra, force)
    meta_text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    if force:
        kept = [p for p in (_backup(folder / "SKILL.md"), _backup(folder / "skill_meta.json")) if p]
        write_atomic(folder / "SKILL.md", skill_text(front, instructions))
        write_atomic(folder / "skill_meta.json", meta_text)
        say(
            f"written: {folder}/SKILL.md and skill_meta.json (--force); the old files kept as "
            f"{', '.join(p.name for p in kept) or 'none'}"
        )
        return
    write_atomic(folder / "SKILL.proposed.md", skill_text(front, instructions))
    write_atomic(folder / "skill_meta.proposed.json", meta_text)
    say(
        f"written beside the old files: {folder}/SKILL.proposed.md and skill_meta.proposed.json; review them "
        f"(diff {folder}/SKILL.md {folder}/SKILL.proposed.md) and move them into place, or rerun with --force"
    )


# --------------------------------------------------------------------------------- cases


def measuring_nothing(report: Report, new: list[str]) -> dict[str, list[str]]:
    """The new cases that measure nothing on the students, with why: alike in both arms, never
    scored in both, or never run (every trial skipped) on every student; a case that discriminates
    on one student is not among them."""
    nothing: dict[str, list[str]] = {}  # case -> why it measures nothing, per student
    informative: set[str] = set()  # scored in both arms, and not alike in both, on at least one student
    for found in report.results:
        alike = {why.case for why in found.uninformative_cases}
        for why in found.uninformative_cases:
            nothing.setdefault(why.case, []).append(f"{found.model}: {why.why}")
        for c in found.cases:
            scored = any(v is not None for v in c.baseline) and any(v is not None for v in c.with_skill)
            if not scored:
                nothing.setdefault(c.case, []).append(f"{found.model}: never scored in both arms")
            elif c.case not in alike:
                informative.add(c.case)
    skipped = "; ".join(dict.fromkeys(reason for gone in report.skipped for reason in gone.reasons))
    for case in new:  # a case that never ran discriminates nothing
        if case not in informative and case not in nothing:
            nothing[case] = [f"it never ran{f' (skipped: {skipped})' if skipped else ''}"]
    return {case: why for case, why in nothing.items() if case in new and case not in informative}


def cases(session: TeachRun, settings: TeachOptions, folder: Path) -> int:
    """Draft cases for a skill (and counterexamples from an adversary), keep the adversary's only where
    a run shows they discriminate, and say which drafted cases measure nothing."""
    say = session.say
    skill_md, _ = skill_folder(folder)
    meta, had_cases = _existing_cases(folder)
    known = {_case_key(c, i) for i, c in enumerate(meta["tests"])}
    text = skill_md.read_text(encoding="utf-8")
    teacher = session.teacher(settings.teacher, settings)
    say(f"teacher {settings.teacher.name} drafts {settings.cases} case(s) for {folder}")
    drafted = _draft_more(teacher, folder, text, settings.cases, known, False) if settings.cases else []
    known |= {d.id for d in drafted}
    proposed: list[DraftCase] = []
    if settings.adversary is not None and settings.adversary_cases:
        adversary = session.teacher(settings.adversary, settings)
        say(f"adversary {settings.adversary.name} proposes {settings.adversary_cases} counterexample(s)")
        proposed = _draft_more(adversary, folder, text, settings.adversary_cases, known, True)
    new = [*drafted, *proposed]
    if not new:
        raise GenerateError("nothing to draft: --cases 0 and no --adversary", 2)
    work = Path(tempfile.mkdtemp(prefix=".upskill-cases-", dir=folder.parent))
    try:
        trial_dir = work / "proposed" / folder.name
        shutil.copytree(folder, trial_dir, ignore=shutil.ignore_patterns(".*", "skill_meta*.json", "*.orig*"))
        tests, extra = cases_meta(new)
        write_files(trial_dir, extra)  # SKILL.md stays exactly as it is
        (trial_dir / "skill_meta.json").write_text(json.dumps({"tests": tests}), encoding="utf-8")
        say(
            f"running the {len(new)} new case(s) on {', '.join(m.name for m in settings.students)}, "
            "with and without the skill"
        )
        # cases are kept on how they did here: those answers are never cached, so that the suite's next
        # run measures the kept cases afresh instead of replaying the run they were selected on
        report = session.evaluate(trial_dir / "skill_meta.json", settings.students, settings.runs, "proposed", True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    nothing = measuring_nothing(report, [case.id for case in new])
    measures_nothing = set(nothing)
    kept, dropped = [], []
    adversarial = {c.id for c in proposed}
    for case in new:
        data, files = case_files(case)
        if case.id in adversarial and case.id in measures_nothing:
            dropped.append(case.id)
            continue
        kept.append((data, files))
    for case in drafted:
        if case.id in measures_nothing:
            say(f"  drafted case {case.id} measures nothing: {'; '.join(nothing[case.id])}")
    for case_id in dropped:
        say(f"  counterexample {case_id} dropped: it does not discriminate ({'; '.join(nothing[case_id])})")
    for case in proposed:
        if case.id not in dropped:
            say(
                f"  counterexample {case.id} kept: its arms differed on at least one student (chosen on this run, "
                "which is not cached: the next run measures it afresh)"
            )
    meta["tests"] = [*meta["tests"], *(d for d, _ in kept)]
    files = {k: v for _, f in kept for k, v in f.items()}
    own: dict[str, Any] = meta["metadata"] if isinstance(meta.get("metadata"), dict) else {}
    meta["metadata"] = {
        **own,
        "cases_drafted_by": f"pytest-upskill {__version__} (teacher {settings.teacher.name}"
        + (f", adversary {settings.adversary.name})" if settings.adversary else ")"),
        "measures_nothing": sorted(c for c in measures_nothing if c not in dropped),
    }
    _write_files(folder, files, settings.force)
    meta_text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    if had_cases and not settings.force:
        write_atomic(folder / "skill_meta.proposed.json", meta_text)
        say(
            f"written beside the old file: {folder}/skill_meta.proposed.json ({len(meta['tests'])} case(s)); review "
            "it and move it into place, or rerun with --force"
        )
    else:
        old = _backup(folder / "skill_meta.json")
        write_atomic(folder / "skill_meta.json", meta_text)
        say(
            f"written: {folder}/skill_meta.json ({len(meta['tests'])} case(s))"
            + (f"; the old file kept as {old.name}" if old else "")
        )
    useful = [d["id"] for d, _ in kept if d["id"] not in measures_nothing]
    if not useful:
        say("exit 1: no new case discriminates on the students: every one passes or fails in both arms")
        return 1
    say(f"exit 0: {len(useful)} of {len(kept)} new case(s) discriminate on at least one student")
    return 0


# --------------------------------------------------------------------------------- plan


def plan_lines(
    session: TeachRun,
    settings: TeachOptions,
    task: str,
    examples: list[str],
    trace: str | None,
    evaluations: int,
    cases: int,
    held_out: int = 0,
) -> list[str]:
    """What the command would send at most, per model; nothing is sent. ``held_out``: the cases drafted
    in a request of their own (counted among ``cases`` for the students)."""
    teacher = session.teacher(settings.teacher, settings)
    first = teacher.request(
        draft_prompt(task, settings.cases, examples, trace),
        answer_tool(DraftSkill, "write_skill", "The skill and its test cases", settings.cases),
    )
    asks = 1 + settings.repairs
    first_tokens = (
        len(first.system) + len(first.user) + len(first.output.parameters_json if first.output else "")
    ) // 4
    cached = session.cached(settings.teacher, first)
    skill_tokens = settings.teacher_max_tokens
    revise_tokens = first_tokens + skill_tokens + FAILURE_CHARS // 4
    held = asks if held_out else 0  # the held-out cases' request, about as long as the first
    teacher_requests = (0 if cached else asks) + held + (evaluations - 1) * asks
    teacher_in = (0 if cached else asks * first_tokens) + held * first_tokens + (evaluations - 1) * asks * revise_tokens
    teacher_out = teacher_requests * settings.teacher_max_tokens
    rows = [(settings.teacher, "teacher", teacher_requests, teacher_in, teacher_out)]
    if settings.adversary is not None:
        rows.append((settings.adversary, "adversary", asks, asks * first_tokens, asks * settings.teacher_max_tokens))
    runs = settings.runs or 1
    for student in settings.students:
        trials = evaluations * cases * 2 * runs
        per_in = (len(DEFAULT_SCAFFOLD) // 4) + skill_tokens // 2 + 500
        rows.append((student, "student", trials, trials * per_in, trials * student.max_tokens))
    lines = [
        f"{'model':<34} {'role':<9} {'requests':>9} {'est. input tok':>15} {'max output tok':>15} {'est. cost':>10}"
    ]
    total = 0.0
    for spec, role, requests, tokens_in, tokens_out in rows:
        priced = spec.input_price is not None or spec.output_price is not None
        cost = price(spec, tokens_in, tokens_out) if priced else None
        total += cost or 0.0
        shown = f"${cost:.4f}" if cost is not None else "no price"
        lines.append(f"{spec.name:<34} {role:<9} {requests:>9} {tokens_in:>15,} {tokens_out:>15,} {shown:>10}")
    lines.append(
        (
            f"at most {evaluations} version(s) of the skill (--attempts {settings.attempts}), "
            if evaluations > 1 or settings.attempts
            else "one version of the skill, "
        )
        + "each answer of the teacher "
        f"sent back at most {settings.repairs} time(s) (--repairs); "
        + ("the first draft is in the cache; " if cached else "")
        + f"at most ${total:.4f} for the priced models; nothing was sent"
    )
    source = price_source([spec for spec, *_ in rows])
    return [*lines, source] if source else lines
