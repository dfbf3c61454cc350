"""Text views of reports, for the terminal summary and ``pytest-upskill runs``: upskill-style bars
per skill × model, the skill × model matrix (``40% → 85% +45%``, verdicts marked) and each
figure's trend over runs. Everything reads the typed report (results/report.py)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass

from pytest_upskill.render.text import bar, pct
from pytest_upskill.results.gates import paired_change
from pytest_upskill.results.history import Drift, Run
from pytest_upskill.results.report import ArmReport, ResultReport, VerdictReport

METRICS = ("success", "tokens", "cost")
MARKS = {"PASS": "✓", "FAIL": "✗", "INCONCLUSIVE": "?"}
LEGEND = "verdicts: ✓ PASS, ✗ FAIL, ?✓ / ?✗ INCONCLUSIVE that passes / fails the run (docs/ci.md: Gates)"
SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class Figure:
    """One figure of a result: its value per arm and the change the skill makes."""

    name: str  # "pass rate", "tokens per trial", "cost"
    baseline: float | None
    with_skill: float | None
    fmt: Callable[[float | None], str]
    change_fmt: Callable[[float | None], str]

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.with_skill is None:
            return None
        return self.with_skill - self.baseline


def _tokens(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


def _signed_tokens(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+,.0f}"


def _usd(v: float | None) -> str:
    return "n/a" if v is None else f"${v:.4f}"


def _signed_usd(v: float | None) -> str:
    return "n/a" if v is None else f"{'+' if v >= 0 else '-'}${abs(v):.4f}"


def _per_trial(arm: ArmReport) -> float | None:
    return arm.tokens_per_trial()


def figure(result: ResultReport, metric: str) -> Figure:
    b, s = result.baseline, result.with_skill
    if metric == "tokens":
        return Figure("tokens per trial", _per_trial(b), _per_trial(s), _tokens, _signed_tokens)
    if metric == "cost":
        return Figure("cost (USD)", b.cost, s.cost, _usd, _signed_usd)
    return Figure("pass rate", b.pass_rate, s.pass_rate, pct, lambda v: pct(v, True))


def cell(result: ResultReport, metric: str, verdict: VerdictReport | None = None) -> str:
    """``40% → 85% +45%``, with the verdict's mark where a gate decided one."""
    f = figure(result, metric)
    text = f"{f.fmt(f.baseline)} → {f.fmt(f.with_skill)} {f.change_fmt(f.change)}"
    return text + (f" {mark(verdict)}" if verdict else "")


def mark(verdict: VerdictReport) -> str:
    """✓ PASS, ✗ FAIL; an INCONCLUSIVE verdict also says what it did to the run (?✓, ?✗)."""
    if verdict.verdict == "INCONCLUSIVE":
        return "?" + ("✗" if verdict.fails else "✓")
    return MARKS.get(verdict.verdict, verdict.verdict)


def bar_lines(result: ResultReport, metric: str, label: str) -> list[str]:
    """upskill's bars: each arm's figure, and the change the skill makes."""
    f = figure(result, metric)
    if metric == "success":
        scale = 1.0
    else:
        scale = max(f.baseline or 0.0, f.with_skill or 0.0) or 1.0
    return [
        label,
        f"  baseline   {bar((f.baseline or 0.0) / scale)}  {f.fmt(f.baseline):>8}",
        f"  with skill {bar((f.with_skill or 0.0) / scale)}  {f.fmt(f.with_skill):>8}  ({f.change_fmt(f.change)})",
    ]


def matrix_lines(
    results: list[ResultReport], verdicts: list[VerdictReport] | None = None, metric: str = "success"
) -> list[str]:
    """A skill × model table; models in the order first seen, skills sorted."""
    marks = {(v.skill, v.model): v for v in verdicts or []}
    models = list(dict.fromkeys(r.model for r in results))
    skills = sorted({r.skill for r in results})
    found = {(r.skill, r.model): r for r in results}
    rows = [["skill", *models]]
    for skill in skills:
        row = [skill]
        for model in models:
            r = found.get((skill, model))
            row.append(cell(r, metric, marks.get((skill, model))) if r else "–")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def sparkline(values: list[float | None], low: float | None = None, high: float | None = None) -> str:
    """One character per value (a space where none); the scale is ``low``..``high`` when given,
    else the values' own range."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    lo = min(known) if low is None else low
    hi = max(known) if high is None else high
    span = hi - lo
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        else:
            level = 0 if span <= 0 else round((v - lo) / span * (len(SPARKS) - 1))
            out.append(SPARKS[max(0, min(len(SPARKS) - 1, level))])
    return "".join(out)


def trend_lines(series: dict[tuple[str, str], list[tuple[Run, ResultReport]]], metric: str) -> list[str]:
    """Each figure of each skill × model over its runs: a sparkline, then first → last."""
    lines = []
    for (skill, model), points in series.items():
        figures = [figure(result, metric) for _, result in points]
        first, last = points[0][0].label, points[-1][0].label
        lines.append(f"{skill} × {model}  ({len(points)} run{'s' if len(points) != 1 else ''}: {first} … {last})")
        rows: list[tuple[str, list[float | None], Callable[[float | None], str], float | None, float | None]]
        fmt, change_fmt = figures[0].fmt, figures[0].change_fmt
        if metric == "success":
            rows = [
                ("baseline", [f.baseline for f in figures], fmt, 0.0, 1.0),
                ("with skill", [f.with_skill for f in figures], fmt, 0.0, 1.0),
                ("lift", [f.change for f in figures], change_fmt, -1.0, 1.0),
            ]
        else:
            rows = [
                ("baseline", [f.baseline for f in figures], fmt, None, None),
                ("with skill", [f.with_skill for f in figures], fmt, None, None),
                ("change", [f.change for f in figures], change_fmt, None, None),
            ]
        for name, values, show, low, high in rows:
            known = [v for v in values if v is not None]
            ends = f"{show(known[0])} → {show(known[-1])}" if known else "n/a"
            lines.append(f"  {name:<10} {sparkline(values, low, high)}  {ends}")
        if metric == "success" and len(points) > 1:
            lines.append(f"  noise      {noise_band(points[0][1], points[-1][1])}")
        lines += [f"  note       {change}" for change in setting_changes([run for run, _ in points])]
    return lines


def noise_band(first: ResultReport, last: ResultReport) -> str:
    """Whether the with-skill pass rate moved beyond the noise from the first run to the last: the
    paired change on the cases both scored, with its 95% interval (the pull request's check)."""
    change = paired_change(first, last)
    if not change.n:
        return "no case scored in both the first and the last run: no noise band"
    d, (lo, hi) = float(change.lift), change.lift_ci()  # type: ignore[arg-type, misc]
    where = "beyond the noise" if lo > 0 or hi < 0 else "within the noise"
    return (
        f"with skill first → last {d * 100:+.0f}% [95% CI {lo * 100:+.0f}%, {hi * 100:+.0f}%] on {change.n} shared "
        f"case(s): {where}"
    )


def setting_changes(runs: list[Run]) -> list[str]:
    """Where the settings that make runs comparable changed from one run to the next."""
    found = []
    for before, after in zip(runs, runs[1:], strict=False):
        old, new = before.info.settings, after.info.settings
        changed = [
            f"{key} {old.get(key, '–')} → {new.get(key, '–')}"
            for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)
        ]
        if changed:
            found.append(f"settings changed at {after.label}: {', '.join(changed)} (the figures may not compare)")
    return found


CSV_COLUMNS = (
    "time",
    "commit",
    "branch",
    "skill",
    "model",
    "paired_cases",
    "baseline_pass_rate",
    "with_skill_pass_rate",
    "lift",
    "lift_ci_low",
    "lift_ci_high",
    "baseline_tokens_per_trial",
    "with_skill_tokens_per_trial",
    "baseline_cost_usd",
    "with_skill_cost_usd",
    "verdict",
    "file",
)


def spreadsheet_text(text: str) -> str:
    """Text for a spreadsheet cell that reads as text: one that starts with ``=``, ``+``, ``-``,
    ``@``, a tab or a carriage return (a formula, to Excel, LibreOffice and Sheets) gets a leading
    apostrophe (OWASP's advice against CSV injection)."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(runs: list[Run]) -> str:
    """One row per run × skill × model, oldest first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for run in runs:
        verdicts = {(v.skill, v.model): v.verdict for v in run.report.verdicts}
        for r in run.report.results:
            ci = r.lift_ci or (None, None)
            writer.writerow(
                [
                    spreadsheet_text(run.info.time),
                    spreadsheet_text(run.info.commit or ""),
                    spreadsheet_text(run.info.branch or ""),
                    spreadsheet_text(r.skill),
                    spreadsheet_text(r.model),
                    r.paired_cases,
                    *("" if v is None else f"{v:.6g}" for v in (r.baseline.pass_rate, r.with_skill.pass_rate)),
                    *("" if v is None else f"{v:.6g}" for v in (r.lift, *ci)),
                    *(
                        "" if v is None else f"{v:.6g}"
                        for v in (
                            r.baseline.tokens_per_trial(),
                            r.with_skill.tokens_per_trial(),
                            r.baseline.cost,
                            r.with_skill.cost,
                        )
                    ),
                    verdicts.get((r.skill, r.model), ""),
                    run.path.name,
                ]
            )
    return out.getvalue()


DRIFT_WORDS = {
    "redundant": "REDUNDANT now: the new model does as well without the skill (the lift's interval holds 0 where it "
    "cleared it); consider retiring or rewriting the skill for it",
    "harmful": "HARMFUL now: the lift's interval lies wholly below 0; the skill makes the new model worse",
    "holds": "holds: the skill's effect is not shown to have changed direction",
}


def drift_lines(drifts: list[Drift]) -> list[str]:
    """``pytest-upskill runs``: each model version change, and what it did to the skill's lift."""
    lines = []
    for d in drifts:
        old, new = d.old, d.new
        assert old.lift is not None and new.lift is not None and old.lift_ci and new.lift_ci
        lines.append(
            f"  {d.skill} × {d.model}: {d.before} → {d.after}: lift {old.lift * 100:+.0f}% "
            f"[{old.lift_ci[0] * 100:+.0f}%, {old.lift_ci[1] * 100:+.0f}%] → {new.lift * 100:+.0f}% "
            f"[{new.lift_ci[0] * 100:+.0f}%, {new.lift_ci[1] * 100:+.0f}%]: {DRIFT_WORDS[d.kind]}"
        )
    return lines
