"""``pytest-upskill``: the commands beside the pytest plugin.

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

from .history import read_runs, select, series
from .views import LEGEND, METRICS, bar_lines, csv_text, matrix_lines, trend_lines


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of runs, 1 or more, not {text!r}")
    return value


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
    return main


def runs_command(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
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
    if args.csv:
        try:
            args.csv.write_text(csv_text(chosen), encoding="utf-8")
        except OSError as exc:
            out(f"pytest-upskill runs: --csv {args.csv}: cannot write: {exc.strerror or exc}")
            return 1
        out(f"CSV written to {args.csv} ({sum(len(r.report.results) for r in chosen)} row(s))")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "runs":
        return runs_command(args)
    return 2  # pragma: no cover (argparse requires a command)


if __name__ == "__main__":
    sys.exit(main())
