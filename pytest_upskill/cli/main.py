"""``pytest-upskill``: the commands beside the pytest plugin.

``pytest-upskill generate TASK`` has a teacher model draft a skill and its cases, measures it on the
students with the plugin itself, and revises it on the failures (see teach/loop.py);
``pytest-upskill cases SKILL_DIR`` drafts cases for a skill, and counterexamples with an adversary.
Both read the project's pytest configuration (ini options, ``[tool.upskill.models]`` aliases, keys,
cache, retries, ``upskill_max_cost``) exactly as ``pytest`` does: they run inside ``pytest.main``
as a ``pytest_cmdline_main`` hook, the way pytest's own ``--fixtures`` does, so there is no second
configuration.

``pytest-upskill runs DIR`` reads the reports ``pytest --upskill-history DIR`` kept and prints, for
the latest run of each skill × model, upskill-style bars (or, with several skills and several
models, the skill × model matrix), then each figure's trend over the runs; ``--csv PATH`` writes
one row per run × skill × model.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_upskill.files import write_atomic
from pytest_upskill.render.views import LEGEND, METRICS, bar_lines, csv_text, drift_lines, matrix_lines, trend_lines
from pytest_upskill.results.history import model_drift, read_runs, select, series
from pytest_upskill.types import printable


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of runs, 1 or more, not {text!r}")
    return value


def _count(least: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number, {least} or more, not {text!r}")
        return value

    return parse


def _money(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be an amount in USD, 0 or more, not {text!r}")
    return value


TEACHER_HELP = (
    "the model that writes (an alias, [tool.upskill.models.NAME], or PROVIDER:MODEL[@BASE_URL]); default: the ini "
    "option upskill_teacher, else sonnet (needs ANTHROPIC_API_KEY)"
)
STUDENT_HELP = "a model the skill is for (repeat for more); default: the ini option upskill_models, else the teacher"


def _teaching_options(command: argparse.ArgumentParser, cases: int | None) -> None:
    command.add_argument("--teacher", metavar="MODEL", help=TEACHER_HELP)
    command.add_argument("--student", metavar="MODEL", action="append", default=[], help=STUDENT_HELP)
    if cases is not None:
        command.add_argument(
            "--cases", type=_count(0), default=cases, metavar="N", help=f"test cases to draft (default: {cases})"
        )
    command.add_argument("--runs", type=_count(1), metavar="N", help="trials per case and arm (default: upskill_runs)")
    command.add_argument(
        "--force", action="store_true", help="write over the skill's own files, keeping the old ones as *.orig"
    )
    command.add_argument(
        "--repairs",
        type=_count(0),
        default=2,
        metavar="N",
        help="times an unusable answer of the teacher is sent back with what is wrong (default: 2)",
    )
    command.add_argument(
        "--timeout",
        type=_money,
        metavar="S",
        help="seconds per request attempt, the teacher's included (default: upskill_timeout, 120); a local model "
        "writing a long answer on a CPU may need more",
    )
    command.add_argument(
        "--teacher-max-tokens",
        type=_count(256),
        default=8192,
        metavar="N",
        help="the longest answer of the teacher, in tokens (default: 8192)",
    )
    command.add_argument(
        "--max-cost",
        type=_money,
        metavar="USD",
        help="stop once the estimated spend of the teacher and the students passes this (default: upskill_max_cost)",
    )
    command.add_argument(
        "--plan", action="store_true", help="print the requests, tokens and cost at most, per model; send nothing"
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="pytest-upskill", description="Commands beside the pytest-upskill plugin.")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs = commands.add_parser(
        "runs",
        help="show the runs kept by pytest --upskill-history DIR: bars, matrix, trends, CSV",
        description="Show the runs that pytest --upskill-history DIR kept: the latest figures of each "
        "skill × model (bars, or a matrix with several skills and models) and each figure's trend.",
    )
    runs.add_argument("folder", metavar="DIR", type=Path, help="the folder given to --upskill-history")
    runs.add_argument("--skill", action="append", default=[], help="only this skill (repeat for more)")
    runs.add_argument(
        "--model", action="append", default=[], help="only this model, as the run named it (repeat for more)"
    )
    runs.add_argument("--metric", choices=METRICS, default="success", help="the figure to show (default: success)")
    runs.add_argument("--csv", type=Path, metavar="PATH", help="also write one row per run × skill × model here")
    runs.add_argument("--last", type=_positive, metavar="N", help="only the last N runs")

    merge = commands.add_parser(
        "merge",
        help="merge the --upskill-report files of a suite's shards (pytest --upskill-shard K/N) into one run's",
        description="Merge the JSON reports of a suite's shards (each job ran pytest --upskill-shard K/N "
        "--upskill-report shard-K.json): lifts, intervals, verdicts, gates and the exit status are computed "
        "from the shards' trials exactly as one run computes them. Other arguments go to pytest: the outputs "
        "(--upskill-report, --upskill-markdown, --upskill-html, --upskill-history) and the gates "
        "(--upskill-min-lift X, --upskill-strict, ...), with the project's ini options as in any run.",
    )
    merge.add_argument("reports", nargs="+", type=Path, metavar="REPORT", help="a shard's JSON report (all of them)")

    generate = commands.add_parser(
        "generate",
        help="a teacher model drafts a skill and its cases; it is measured on the students and revised on failures",
        description="A teacher model writes SKILL.md and test cases for TASK (or distils a trace, or improves a "
        "skill: --from). The plugin runs the skill on every student, with and without it, and while the lift on "
        "the training cases is not PASS against --min-lift, the teacher revises the skill on those failures, up to "
        "--attempts times. A third of the cases are held out: the teacher never sees them, and the lift on them is "
        "reported at the end. The version kept is the best by the interval's lower bound, not the last.",
    )
    generate.add_argument("task", metavar="TASK", help='what the skill is for, e.g. "write build.toml for kernels"')
    _teaching_options(generate, cases=6)
    generate.add_argument(
        "--example", action="append", default=[], metavar='"INPUT -> OUTPUT"', help="an example of the task (repeat)"
    )
    generate.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="PATH",
        help="a trace to distil (Claude Code JSONL, OpenAI messages JSON, upskill/fast-agent history, Markdown), or "
        "a skill folder to improve",
    )
    generate.add_argument(
        "--out", type=Path, default=Path("skills"), metavar="DIR", help="where a new skill's folder goes (skills)"
    )
    generate.add_argument("--attempts", type=_count(0), default=3, metavar="N", help="revisions at most (default: 3)")
    generate.add_argument(
        "--held-out",
        type=_count(0),
        metavar="N",
        help="cases drafted apart from the skill, never shown to the teacher, that decide the exit status "
        "(default: 6; 0: decide on the training cases, optimistic; with --from a skill folder: a third of its "
        "cases)",
    )
    generate.add_argument(
        "--min-lift",
        type=float,
        metavar="X",
        help="revise until the training lift passes this on its 95%% interval (default: upskill_min_lift, else 0)",
    )
    generate.add_argument(
        "--trace-chars",
        type=_count(1000),
        default=60_000,
        metavar="N",
        help="the most characters of a trace given to the teacher; the middle of a longer one is cut (60000)",
    )

    cases = commands.add_parser(
        "cases",
        help="draft test cases for a skill, and counterexamples with an adversary model",
        description="A teacher drafts test cases for the skill in SKILL_DIR; an adversary model may propose "
        "counterexamples, kept only where a run on the students shows they discriminate. Says which drafted cases "
        "measure nothing (pass or fail in both arms every time).",
    )
    cases.add_argument("folder", metavar="SKILL_DIR", type=Path, help="the skill's folder (with SKILL.md)")
    _teaching_options(cases, cases=4)
    cases.add_argument("--adversary", metavar="MODEL", help="a model that proposes counterexamples")
    cases.add_argument(
        "--adversary-cases", type=_count(1), default=4, metavar="N", help="counterexamples to propose (default: 4)"
    )

    describe = commands.add_parser(
        "describe",
        help="a teacher proposes descriptions from the trigger cases' failures; the best on held-out cases is kept",
        description="The skill's trigger cases ({query, should_trigger}) are split three ways: the students run the "
        "training cases among the catalog, and a teacher revises the description on their wrong decisions; every "
        "proposal is measured on the validation cases, and the best there is kept; the test cases, never seen and "
        "never chosen on, give the figure reported (the original's and the proposal's). The proposal is written to "
        "SKILL.proposed.md; SKILL.md is never written.",
    )
    describe.add_argument("folder", metavar="SKILL_DIR", type=Path, help="the skill's folder (with SKILL.md)")
    _teaching_options(describe, cases=None)
    describe.add_argument("--rounds", type=_count(1), default=3, metavar="N", help="descriptions to propose (3)")
    describe.add_argument(
        "--catalog",
        type=Path,
        metavar="DIR",
        help="the skills offered beside it (default: the folders beside SKILL_DIR)",
    )
    return main


def _say(text: str) -> None:
    print(printable(text), flush=True)  # model text: the teacher's words, answers, names from other jobs' files


def runs_command(args: argparse.Namespace, out: Callable[[str], None] = _say) -> int:
    try:
        found, problems = read_runs(args.folder)
    except FileNotFoundError:
        out(f"pytest-upskill runs: {args.folder}: no such folder; write runs there with pytest --upskill-history DIR")
        return 1
    for problem in problems:
        out(f"warning: {problem}")
    chosen = select(found, args.skill, args.model, args.last)
    if not chosen:
        what = "runs" if not (args.skill or args.model) else "runs of the chosen skill(s) and model(s)"
        out(
            f"pytest-upskill runs: no {what} in {args.folder} ({len(found)} report(s) read); "
            "pytest --upskill-history DIR adds one per run"
        )
        return 1
    latest = series(chosen)
    results = [points[-1][1] for points in latest.values()]
    verdicts = [  # each from the run its result is from
        v
        for (skill, model), points in latest.items()
        for v in points[-1][0].report.verdicts
        if (v.skill, v.model) == (skill, model)
    ]
    skills, models = {r.skill for r in results}, {r.model for r in results}
    out(f"{len(chosen)} run(s) in {args.folder}, {chosen[0].label} … {chosen[-1].label}; metric: {args.metric}")
    out("")
    if len(skills) > 1 and len(models) > 1:
        out("latest per skill × model (baseline → with skill, change)")
        for line in matrix_lines(results, verdicts, args.metric):
            out(line)
        out(LEGEND)
    else:
        for (skill, model), points in latest.items():
            run, result = points[-1]
            for line in bar_lines(result, args.metric, f"{skill} × {model}  (latest: {run.label})"):
                out(line)
    out("")
    out("trend, oldest → newest")
    for line in trend_lines(latest, args.metric):
        out(line)
    drifts = model_drift(latest)
    if drifts:
        out("")
        out("model drift: a model's version changed between runs on the same cases (the skill's lift before → after)")
        for line in drift_lines(drifts):
            out(line)
    if args.csv:
        try:
            write_atomic(args.csv, csv_text(chosen))
        except OSError as exc:
            out(f"pytest-upskill runs: --csv {args.csv}: cannot write: {exc.strerror or exc}")
            return 1
        out(f"CSV written to {args.csv} ({sum(len(r.report.results) for r in chosen)} row(s))")
    return 0


def teaching_command(args: argparse.Namespace, out: Callable[[str], None] = _say) -> int:
    """``generate`` or ``cases``, inside pytest's own configuration (see the module's docstring)."""
    pytest_args = ["-p", "no:cacheprovider"]
    if args.max_cost is not None:
        pytest_args += ["--upskill-max-cost", repr(args.max_cost)]
    if args.timeout is not None:
        pytest_args += ["--upskill-timeout", repr(args.timeout)]
    found: dict[str, int] = {}

    class Command:
        @pytest.hookimpl(tryfirst=True)
        def pytest_cmdline_main(self, config: pytest.Config) -> int:
            found["code"] = _in_config(args, config, out)
            return found["code"]

    code = int(pytest.main(pytest_args, plugins=[Command()]))
    return found.get("code", 2 if code == pytest.ExitCode.USAGE_ERROR else code)


def _in_config(args: argparse.Namespace, config: pytest.Config, out: Callable[[str], None]) -> int:
    from pytest_upskill.errors import GenerateError, TeacherError, TraceError
    from pytest_upskill.models import split_names
    from pytest_upskill.plugin.session import UpskillRun, resolve_models
    from pytest_upskill.settings import Settings
    from pytest_upskill.teach.describe import describe
    from pytest_upskill.teach.loop import TeachOptions, TeachRun, cases, generate

    name = f"pytest-upskill {args.command}"
    try:
        settings = Settings.from_config(config)
        teacher_name = args.teacher or settings.teacher or "sonnet"
        students_named = args.student or split_names(list(settings.models)) or [teacher_name]
        adversary_name = getattr(args, "adversary", None)
        check = not args.plan
        teacher = resolve_models(config, [teacher_name], check)[0]
        students = resolve_models(config, students_named, check)
        adversary = resolve_models(config, [adversary_name], check)[0] if adversary_name else None
        run = UpskillRun(config, settings, [teacher, *students, *([adversary] if adversary else [])])
        min_lift = getattr(args, "min_lift", None)
        if min_lift is None:
            min_lift = settings.min_lift or 0.0
    except pytest.UsageError as exc:
        out(f"{name}: error: {exc}")
        return 2
    options = TeachOptions(
        teacher=teacher,
        students=students,
        cases=getattr(args, "cases", 0),
        attempts=getattr(args, "attempts", 0),
        held_out=getattr(args, "held_out", None),
        min_lift=min_lift,
        runs=args.runs,
        force=args.force,
        repairs=args.repairs,
        teacher_max_tokens=args.teacher_max_tokens,
        adversary=adversary,
        adversary_cases=getattr(args, "adversary_cases", 0) if adversary else 0,
    )
    session = TeachRun(config, run, out, progress_s=settings.progress or 30.0)
    default = not args.teacher and not settings.teacher
    where = f"teacher {teacher.name}" + (
        " (the default: name one with --teacher or upskill_teacher)" if default else ""
    )
    roles = f"{where}; students {', '.join(s.name for s in students)}"
    out(f"{name}: {roles}" + (f"; adversary {adversary.name}" if adversary else ""))
    try:
        if args.plan:
            return _plan(args, session, options, out)
        if args.command == "generate":
            source: Path | None = args.source
            if source is not None and not source.exists():
                out(f"{name}: error: --from {source}: no such file or folder")
                return 2
            if args.cases < 1 and not (source is not None and source.is_dir()):
                out(f"{name}: error: --cases must be 1 or more for a new skill")
                return 2
            return generate(session, options, args.task, args.example, source, args.out, args.trace_chars)
        if args.command == "describe":
            return describe(session, options, args.folder, args.rounds, args.catalog)
        return cases(session, options, args.folder)
    except TraceError as exc:
        out(f"{name}: error: {exc}")
        return 2
    except (GenerateError, TeacherError) as exc:
        out(f"{name}: {exc}")
        return exc.code if isinstance(exc, GenerateError) else 3
    finally:
        run.runner.close()


def _plan(args: argparse.Namespace, session: Any, settings: Any, out: Callable[[str], None]) -> int:
    from pytest_upskill.teach.loop import held_out_count, plan_lines
    from pytest_upskill.teach.traces import cut, read_trace

    if args.command == "generate":
        trace = None
        if args.source is not None and args.source.is_file():
            trace = cut(read_trace(args.source)[0], args.trace_chars)[0]
        lines = plan_lines(
            session,
            settings,
            args.task,
            args.example,
            trace,
            settings.attempts + 1,
            settings.cases + held_out_count(settings),
            held_out_count(settings),
        )
    elif args.command == "describe":
        lines = plan_lines(session, settings, f"descriptions for {args.folder}", [], None, args.rounds, 0)
    else:
        count = settings.cases + settings.adversary_cases
        lines = plan_lines(session, settings, f"cases for {args.folder}", [], None, 1, count)
    for line in lines:
        out(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    commands = parser()
    args, rest = commands.parse_known_args(argv)
    if rest and args.command != "merge":
        commands.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "runs":
        return runs_command(args)
    if args.command == "merge":  # a pytest run that collects nothing and reads the shards' trials (results/shards.py)
        given = [arg for report in args.reports for arg in ("--upskill-merge", str(report))]
        return int(pytest.main([*given, *rest]))
    return teaching_command(args)


if __name__ == "__main__":
    sys.exit(main())
