"""The Markdown summary for a pull request (``--upskill-markdown``, ``GITHUB_STEP_SUMMARY``)."""

from __future__ import annotations

import re

from pytest_upskill.engine.arms import COMPARED, ArmDef
from pytest_upskill.models import Prices
from pytest_upskill.render.text import INTERVALS, _fmt, audit_lines, pct, rate_ci
from pytest_upskill.results import stats
from pytest_upskill.results.aggregate import NO_PRICES, Result, cost, counts
from pytest_upskill.results.gates import regression_label
from pytest_upskill.results.report import RegressionReport, VerdictReport
from pytest_upskill.types import Arm

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>@~:&])")


def md(text: object) -> str:
    """Text from a skill file, a model or another job's report, as Markdown shows it literally: one
    line, every character Markdown or GitHub reads (a table's ``|``, links and images, HTML, an
    ``@mention``, a heading, emphasis) escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def other_cells(r: Result, d: ArmDef) -> str:
    """Two cells: another arm's passed/scored beside the with-skill arm, and with skill minus it."""
    paired = r.comparison(d.arm)
    if paired is None or not paired.n:
        return "– | –"
    passed, scored = r.pair(Arm.WITH_SKILL, d.arm).counts[d.arm]
    ci = paired.lift_ci(stats.level(d.confidence).z)
    shown = pct(float(paired.lift), True) + (f" [{pct(ci[0], True)}, {pct(ci[1], True)}]" if ci else "")  # type: ignore[arg-type]
    return f"{passed}/{scored} | {shown}"


def markdown(
    results: list[Result],
    verdicts: list[VerdictReport],
    regressions: list[RegressionReport],
    prices: dict[str, Prices],
    cached: int,
    trials: int,
) -> str:
    """A compact summary for a pull-request comment."""
    by_key = {(v.skill, v.model): v for v in verdicts}
    activation = any(r.with_skill.offered for r in results)
    others = [d for d in COMPARED if any(d.arm in r.arms for r in results)]
    head = (
        "| skill | model | baseline | with skill | lift [95% CI] |"
        + "".join(f" {d.label} | {d.difference} |" for d in others)
        + (" skill loaded |" if activation else "")
        + " tokens in/out (Δ) | cost | verdict |"
    )
    columns = 8 + 2 * len(others) + activation
    out = ["## pytest-upskill", "", head, "|" + "---|" * columns]
    total_cost = 0.0
    for r in results:
        if r.should and not (r.baseline.total or r.with_skill.total):
            continue  # trigger cases only: in their own table below
        s = r.with_skill
        ci = r.lift_ci
        lift = pct(r.lift, True) + (f" [{pct(ci[0], True)}, {pct(ci[1], True)}]" if ci else "")
        delta = r.token_delta()
        spent = cost(r, prices.get(r.model, NO_PRICES))
        total_cost += spent or 0
        verdict = by_key.get((r.skill, r.model))
        errors = sum(t.errors for t in r.tallies())
        out.append(
            f"| {md(r.skill)} | {md(r.model)} | {counts(r, 'baseline')} | "
            f"{counts(r, 'with_skill')}{f' ({errors} errors)' if errors else ''} | {lift} "
            + "".join(f"| {other_cells(r, d)} " for d in others)
            + (f"| {s.loaded}/{s.offered} " if activation else "")
            + f"| {delta.input_tokens:+,} / {delta.output_tokens:+,} | "
            f"{f'${spent:.4f}' if spent is not None else '–'} "
            f"| {('**' + verdict.verdict + '**') if verdict else '–'} |"
        )
    triggering = [(r, t) for r in results if (t := r.triggering()) is not None]
    if triggering:
        out += [
            "",
            "### Trigger cases: loaded from the catalog when it should be?",
            "",
            "| skill | model | recall [95% CI] | false triggers [95% CI] | routed elsewhere |",
            "|---|---|---|---|---|",
        ]
        for r, t in triggering:
            recall = rate_ci(t.recall, t.recall_ci, "") + f" on {t.should_trigger}" if t.should_trigger else "–"
            false = (
                rate_ci(t.false_trigger, t.false_trigger_ci, "") + f" on {t.should_not_trigger}"
                if t.should_not_trigger
                else "–"
            )
            out.append(f"| {md(r.skill)} | {md(r.model)} | {recall} | {false} | {t.routed_elsewhere} |")
    failing = [v for v in verdicts if v.fails]
    if failing:
        out += ["", "### Failing gates", ""]
        for v in failing:
            if v.why is not None:  # NOT EVALUATED: every trial skipped
                out.append(f"- **{md(v.skill)} × {md(v.model)}**: {md(v.verdict)} ({md(v.why)})")
            for f in v.findings:
                if f.fails:
                    out.append(
                        f"- **{md(v.skill)} × {md(v.model)}**: {f.figure} {f.verdict} (value {_fmt(f.value)}, "
                        f"threshold {_fmt(f.threshold)})"
                    )
    if regressions:
        out += ["", "### The change, the cases that moved, the controls (failing the run: **fails**)", ""]
        out += [
            f"- **{md(g.skill)} × {md(g.model)}** ({md(regression_label(g.kind, g.fails))}"
            f"{', **fails**' if g.fails else ''}): {md(g.message)}"
            for g in regressions
        ]
    unpaired = [
        f"{md(r.skill)} × {md(r.model)}: {md(case)} ({md(why)})" for r in results for case, why in r.pairing.left_out
    ]
    if unpaired:
        out += [
            "",
            "<details><summary>Cases left out of the rates and the lift (not scored in both arms)</summary>",
            "",
        ]
        out += [f"- {line}" for line in unpaired] + ["", "</details>"]
    audit = audit_lines(results)
    if audit:
        out += (
            ["", "<details><summary>Cases that measure nothing</summary>", ""]
            + [f"- {md(line)}" for line in audit]
            + ["", "</details>"]
        )
    out += [
        "",
        f"{trials} trials, {cached} from the cache"
        + (f", cost ${total_cost:.4f}" if total_cost else "")
        + ". "
        + INTERVALS[0].upper()
        + INTERVALS[1:]
        + ".",
    ]
    return "\n".join(out) + "\n"
