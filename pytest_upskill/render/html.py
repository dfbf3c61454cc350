"""``--upskill-html PATH``: the report as one self-contained HTML file, readable from a CI artifact.

Nothing is fetched: the CSS, the SVG figures and a little JavaScript (the filters) are inline, and
the page's Content-Security-Policy allows only them (by their hashes), no network and no other
script. Model answers are hostile text: every value is escaped, so an answer that holds markup
shows as text and never runs.

The page is drawn from the typed report (results.report.Report), the same one the JSON file holds;
each figure also carries its exact value in ``data-value``, so a test can compare the rendered
page with the JSON report.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
from collections.abc import Callable
from html import escape

from pytest_upskill.engine.arms import COMPARED
from pytest_upskill.render.text import pct, reliability_lines
from pytest_upskill.render.views import mark
from pytest_upskill.results import stats
from pytest_upskill.results.gates import regression_label
from pytest_upskill.results.history import Run, series
from pytest_upskill.results.report import ArmReport, CaseRuns, Report, ResultReport, TrialReport, VerdictReport
from pytest_upskill.types import Arm

OUTCOMES = {
    "fixed": "fixed by the skill",
    "broken": "broken by the skill",
    "pass": "passes in both arms",
    "fail": "fails in both arms",
    "same": "the same rate in both arms",
    "error": "not scored in both arms",
}

STYLE = """
:root { --base: #8a8f98; --skill: #2f6fdf; --good: #1a7f37; --bad: #cf222e; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
  padding: 16px 24px 48px; color: #1f2328; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid
  var(--line); padding-bottom: 4px; }
.run { color: var(--muted); margin: 0 0 8px; }
nav { position: sticky; top: 0; background: #f6f8fa; border: 1px solid var(--line); border-radius: 6px;
  padding: 8px 12px; display: flex; gap: 16px; align-items: center; flex-wrap: wrap; z-index: 1; }
nav label { color: var(--muted); } select { font: inherit; margin-left: 4px; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 6px 8px;
  border-bottom: 1px solid var(--line); vertical-align: middle; }
th { font-weight: 600; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
td:nth-child(2) code { overflow-wrap: break-word; } td:nth-child(2) { max-width: 200px; }
.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.verdict { font-weight: 700; } .PASS { color: var(--good); } .FAIL { color: var(--bad); }
.INCONCLUSIVE { color: #9a6700; }
.legend span { margin-right: 12px; } .sw { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
.sw.base { background: var(--base); } .sw.skill { background: var(--skill); }
details.case { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0; }
details.case > summary { cursor: pointer; padding: 6px 10px; list-style-position: inside; }
details.case[open] > summary { border-bottom: 1px solid var(--line); background: #f6f8fa; }
.tag { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 12px; margin-left: 6px;
  border: 1px solid var(--line); }
.tag.fixed { background: #dafbe1; } .tag.broken { background: #ffebe9; } .tag.error { background: #fff8c5; }
.arms { display: grid; grid-template-columns: 1fr 1fr; gap: 0; }
.arm { padding: 8px 10px; min-width: 0; } .arm + .arm { border-left: 1px solid var(--line); }
.arm h4 { margin: 4px 0; font-size: 13px; } .passed { color: var(--good); } .failed { color: var(--bad); }
.unscored { color: #9a6700; }
.msg { color: var(--bad); margin: 4px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
pre.answer { background: #f6f8fa; border: 1px solid var(--line); border-radius: 4px; padding: 6px 8px;
  white-space: pre-wrap; overflow-wrap: anywhere; max-height: 360px; overflow: auto; margin: 4px 0; font-size: 12px; }
del { background: #ffebe9; text-decoration: line-through; } ins { background: #dafbe1; text-decoration: none; }
ol.calls { margin: 4px 0; padding-left: 22px; font-family: ui-monospace, monospace; font-size: 12px; }
.muted { color: var(--muted); } ul.audit li { margin: 2px 0; }
svg text { font: 10px system-ui, sans-serif; fill: var(--muted); }
"""

SCRIPT = """
(function () {
  var names = ["skill", "model", "outcome"];
  var select = {};
  names.forEach(function (n) { select[n] = document.getElementById("f-" + n); });
  function fromHash() {
    var params = new URLSearchParams(location.hash.slice(1));
    names.forEach(function (n) {
      var v = params.get(n);
      if (v !== null && Array.prototype.some.call(select[n].options, function (o) { return o.value === v; })) {
        select[n].value = v;
      }
    });
  }
  function apply() {
    var shown = 0, cases = 0;
    document.querySelectorAll("[data-skill]").forEach(function (el) {
      var ok = names.every(function (n) {
        var want = select[n].value, have = el.getAttribute("data-" + n);
        return !want || have === null || have === want;
      });
      el.hidden = !ok;
      if (el.classList.contains("case")) { cases += 1; shown += ok ? 1 : 0; }
    });
    document.getElementById("shown").textContent = shown + " of " + cases + " case(s) shown";
    var params = new URLSearchParams();
    var opened = new URLSearchParams(location.hash.slice(1)).get("case");
    if (opened !== null) { params.set("case", opened); }
    names.forEach(function (n) { if (select[n].value) { params.set(n, select[n].value); } });
    history.replaceState(null, "", params.toString() ? "#" + params.toString() : location.pathname);
  }
  names.forEach(function (n) { select[n].addEventListener("change", apply); });
  fromHash();
  var opened = new URLSearchParams(location.hash.slice(1)).get("case");
  document.querySelectorAll("details.case").forEach(function (el) {
    if (opened !== null && el.getAttribute("data-case") === opened) { el.open = true; }
  });
  apply();
  document.body.setAttribute("data-ready", "yes");
})();
"""


def _digest(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


CSP = (  # written as is into a double-quoted attribute: it holds no " < or &
    f"default-src 'none'; style-src '{_digest(STYLE)}'; script-src '{_digest(SCRIPT)}'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _fig(key: str, value: float | int | None, text: str) -> str:
    """A figure as shown, with its exact value for a reader (or a test) in ``data-value``."""
    exact = "" if value is None else repr(float(value))
    return f'<span class="num fig" data-key="{_e(key)}" data-value="{_e(exact)}">{_e(text)}</span>'


# ------------------------------------------------------------------------------------ figures


def _x(v: float, width: float, lo: float, hi: float, pad: float = 6) -> float:
    return pad + (min(max(v, lo), hi) - lo) / (hi - lo) * (width - 2 * pad)


def rates_svg(result: ResultReport) -> str:
    """Both arms' pass rates as bars on a 0–100% axis, their intervals in the tooltip only: the two
    arms' intervals overlap even where the paired lift is clear, so the lift is the figure drawn
    with its interval (and the one a gate judges)."""
    w, rows = 240, []
    for i, (arm, css) in enumerate(((result.baseline, "base"), (result.with_skill, "skill"))):
        y = 4 + i * 16
        rate = arm.pass_rate
        fill = "#8a8f98" if css == "base" else "#2f6fdf"
        if rate is not None:
            rows.append(f'<rect x="6" y="{y}" width="{_x(rate, w, 0, 1) - 6:.1f}" height="11" fill="{fill}" rx="1"/>')
    axis = "".join(
        f'<line x1="{_x(t, w, 0, 1):.1f}" y1="2" x2="{_x(t, w, 0, 1):.1f}" y2="36" stroke="#d0d7de"/>'
        for t in (0, 0.5, 1)
    )
    title = (
        f"baseline {pct(result.baseline.pass_rate)} {_interval(result.baseline.pass_rate_ci)}; "
        f"with skill {pct(result.with_skill.pass_rate)} {_interval(result.with_skill.pass_rate_ci)}"
    )
    return (
        f'<svg class="rates" width="{w}" height="38" viewBox="0 0 {w} 38" role="img" aria-label="{_e(title)}">'
        f"<title>{_e(title)}</title>{axis}{''.join(rows)}</svg>"
    )


def lift_svg(result: ResultReport) -> str:
    """The lift as a bar from 0, its 95% interval as a whisker, on a −100%…+100% axis."""
    w = 160
    zero = _x(0, w, -1, 1)
    parts = [f'<line x1="{zero:.1f}" y1="1" x2="{zero:.1f}" y2="21" stroke="#8a8f98"/>']
    if result.lift is not None:
        end = _x(result.lift, w, -1, 1)
        color = "#1a7f37" if result.lift > 0 else "#cf222e" if result.lift < 0 else "#8a8f98"
        parts.append(
            f'<rect x="{min(zero, end):.1f}" y="6" width="{abs(end - zero):.1f}" height="10" fill="{color}" '
            'opacity=".75"/>'
        )
    if result.lift_ci:
        lo, hi = (_x(v, w, -1, 1) for v in result.lift_ci)
        parts.append(
            f'<path d="M{lo:.1f} 11H{hi:.1f}M{lo:.1f} 5V17M{hi:.1f} 5V17" stroke="#1f2328" stroke-width="1.2" '
            'fill="none"/>'
        )
    title = f"lift {pct(result.lift, True)} {_interval(result.lift_ci, True)}"
    return (
        f'<svg class="lift" width="{w}" height="22" viewBox="0 0 {w} 22" role="img" aria-label="{_e(title)}">'
        f"<title>{_e(title)}</title>{''.join(parts)}</svg>"
    )


def trend_svg(points: list[tuple[Run, ResultReport]]) -> str:
    """Both arms' pass rates over the history's runs, oldest first (the last point is this run)."""
    w, h = 150, 34
    n = len(points)

    def line(values: list[float | None], color: str) -> str:
        coords = [
            f"{6 + (i * (w - 12) / max(n - 1, 1)):.1f},{h - 4 - v * (h - 8):.1f}"
            for i, v in enumerate(values)
            if v is not None
        ]
        if not coords:
            return ""
        dots = "".join(f'<circle cx="{c.split(",")[0]}" cy="{c.split(",")[1]}" r="2" fill="{color}"/>' for c in coords)
        return f'<polyline points="{" ".join(coords)}" fill="none" stroke="{color}" stroke-width="1.5"/>{dots}'

    base = [r.baseline.pass_rate for _, r in points]
    skill = [r.with_skill.pass_rate for _, r in points]
    title = "pass rate over the last {} run(s): baseline {}; with skill {}".format(
        n, " ".join(pct(v) for v in base), " ".join(pct(v) for v in skill)
    )
    return (
        f'<svg class="trend" data-runs="{n}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{_e(title)}"><title>{_e(title)}</title>'
        f'<rect x="0.5" y="0.5" width="{w - 1}" height="{h - 1}" fill="none" stroke="#d0d7de"/>'
        f"{line(base, '#8a8f98')}{line(skill, '#2f6fdf')}</svg>"
    )


def _interval(ci: tuple[float, float] | None, signed: bool = False) -> str:
    return f"[{pct(ci[0], signed)}, {pct(ci[1], signed)}]" if ci else ""


# ------------------------------------------------------------------------------------- tables


def _cost(arm: ArmReport) -> str:
    return "–" if arm.cost is None else f"${arm.cost:.4f}"


def _other_arms(result: ResultReport, key: str) -> str:
    """The previous arm and the controls, each beside the with-skill arm on the cases both scored."""
    found = []
    for d in COMPARED:
        name = d.compared
        c = getattr(result, name) if name else None
        if c is None:
            continue
        found.append(
            f"<br>{_e(d.label)} {_fig(f'{key}|{name}.other', c.other, pct(c.other))} · {_e(d.difference)} "
            f"{_fig(f'{key}|{name}.difference', c.difference, pct(c.difference, True))} "
            f"[{stats.level(d.confidence).label} CI {pct(c.ci[0], True)}, {pct(c.ci[1], True)}] "
            f'<span class="muted">({c.cases} case(s))</span>'
        )
    if result.against:
        found.append(f'<br><span class="muted">against: {_e(result.against)}</span>')
    t = result.triggering
    if t is not None:
        recall = f"recall {pct(t.recall)} on {t.should_trigger}" if t.should_trigger else ""
        false = f"false triggers {pct(t.false_trigger)} on {t.should_not_trigger}" if t.should_not_trigger else ""
        found.append(f"<br>trigger: {_e(' · '.join(x for x in (recall, false) if x))}")
    named = result.positive_control
    if named is not None and named.total:
        found.append(f"<br>named: loaded {named.passed}/{named.passed + named.failed} (positive control)")
    return "".join(found)


def result_row(
    result: ResultReport, verdict: VerdictReport | None, trend: list[tuple[Run, ResultReport]] | None
) -> str:
    key = f"{result.skill}|{result.model}"
    b, s = result.baseline, result.with_skill
    delta = result.token_delta
    cost = (
        _fig(f"{key}|cost_delta", s.cost - b.cost, f"{_cost(b)} → {_cost(s)}")
        if b.cost is not None and s.cost is not None
        else '<span class="muted">no prices</span>'
    )
    activation = (
        _fig(f"{key}|activation_rate", result.activation_rate, pct(result.activation_rate))
        if result.activation_rate is not None
        else '<span class="muted">–</span>'
    )
    ci = result.lift_ci
    lift_text = _fig(f"{key}|lift", result.lift, pct(result.lift, True)) + (
        " ["
        + _fig(f"{key}|lift_ci_low", ci[0], pct(ci[0], True))
        + ", "
        + _fig(f"{key}|lift_ci_high", ci[1], pct(ci[1], True))
        + "]"
        if ci
        else ""
    )
    verdict_html = (
        f'<span class="verdict {_e(verdict.verdict)}" data-key="{_e(key)}|verdict">'
        f"{_e(mark(verdict))} {_e(verdict.verdict)}{' (fails the run)' if verdict.fails else ''}</span>"
        if verdict
        else '<span class="muted">no gate</span>'
    )
    return (
        f'<tr class="result" data-skill="{_e(result.skill)}" data-model="{_e(result.model)}">'
        f"<td>{_e(result.skill)}</td><td><code>{_e(result.model)}</code></td>"
        f"<td>{lift_svg(result)}<br>{lift_text}</td>"
        f"<td>{rates_svg(result)}<br>"
        f"{_fig(f'{key}|baseline.pass_rate', b.pass_rate, pct(b.pass_rate))} → "
        f"{_fig(f'{key}|with_skill.pass_rate', s.pass_rate, pct(s.pass_rate))} "
        f'<span class="muted">({result.paired_cases} paired case(s); {b.passed}/{b.total} → '
        f"{s.passed}/{s.total} trials passed)</span>{_other_arms(result, key)}</td>"
        f"<td>{verdict_html}</td>"
        f"<td>{_fig(f'{key}|input_tokens_delta', delta.input_tokens, f'{delta.input_tokens:+,}')} in / "
        f"{_fig(f'{key}|output_tokens_delta', delta.output_tokens, f'{delta.output_tokens:+,}')} out</td>"
        f"<td>{cost}</td><td>{activation}</td>"
        + (f"<td>{trend_svg(trend)}</td>" if trend is not None else "")
        + "</tr>"
    )


# -------------------------------------------------------------------------------------- cases

_TOKEN = re.compile(r"\w+\s*|[^\w\s]\s*|\s+")  # a word or a sign with the spaces after it


DIFF_WORK = 100_000  # most token pairs a word diff may compare (its cost grows with their product, or worse)


def marked_pair(before: str, after: str) -> tuple[str, str]:
    """Both answers escaped, the words only one of them has marked (<del> in the first, <ins> in
    the second). Answers too long to compare at a bounded cost (see DIFF_WORK: a hostile pair
    at the answer cap would take minutes) are shown whole, unmarked."""
    a, b = _TOKEN.findall(before), _TOKEN.findall(after)
    head = 0  # what both begin and end with is equal: only the middle is compared
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    middle_a, middle_b = a[head : len(a) - tail], b[head : len(b) - tail]
    if not a or not b or len(middle_a) * len(middle_b) > DIFF_WORK:
        return _e(before), _e(after)
    left, right = [_e("".join(a[:head]))], [_e("".join(b[:head]))]
    matcher = difflib.SequenceMatcher(None, middle_a, middle_b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        old, new = _e("".join(middle_a[i1:i2])), _e("".join(middle_b[j1:j2]))
        if op == "equal":
            left.append(old)
            right.append(new)
        else:
            left.append(f"<del>{old}</del>" if old else "")
            right.append(f"<ins>{new}</ins>" if new else "")
    end_a, end_b = a[len(a) - tail :], b[len(b) - tail :]
    return "".join(left) + _e("".join(end_a)), "".join(right) + _e("".join(end_b))


def case_outcome(case: CaseRuns) -> str:
    base = [v for v in case.baseline if v is not None]
    skill = [v for v in case.with_skill if v is not None]
    if not base or not skill:
        return "error"
    b, s = sum(base) / len(base), sum(skill) / len(skill)
    if s > b:
        return "fixed"
    if s < b:
        return "broken"
    return "pass" if b == 1 else "fail" if b == 0 else "same"


def _state(trial: TrialReport) -> tuple[str, str]:
    if trial.passed is None:
        return "unscored", f"not scored ({trial.error_kind or 'error'})"
    return ("passed", "passed") if trial.passed else ("failed", "failed")


def _arm_html(trial: TrialReport | None, answer_html: str, label: str) -> str:
    if trial is None:
        return f'<div class="arm"><h4>{_e(label)}</h4><p class="muted">not run</p></div>'
    css, state = _state(trial)
    parts = [f'<div class="arm {_e(trial.arm)}"><h4>{_e(label)} · run {trial.run} · <span class="{css}">{state}</span>']
    extra = []
    if trial.hit_max_tokens:
        extra.append("stopped at max_tokens")
    if trial.turns is not None:
        extra.append(f"{trial.turns} turn(s)")
    extra.append(f"{trial.input_tokens:,} in / {trial.output_tokens:,} out tokens")
    parts.append(f' <span class="muted">({_e(", ".join(extra))})</span></h4>')
    if trial.message and (trial.passed is not True or trial.should_trigger is not None):
        parts.append(f'<p class="msg">{_e(trial.message)}</p>')
    if trial.note:
        parts.append(f'<p class="muted">{_e(trial.note)}</p>')
    shown = (
        "" if trial.answer_chars <= len(trial.answer) else f" (first {len(trial.answer):,} of {trial.answer_chars:,})"
    )
    parts.append(f'<div class="muted">answer{shown}</div><pre class="answer">{answer_html}</pre>')
    if trial.calls is not None:
        calls = "".join(f"<li>{_e(c)}</li>" for c in trial.calls) or "<li class='muted'>none</li>"
        parts.append(f'<div class="muted">tool calls, in order</div><ol class="calls">{calls}</ol>')
    if trial.written:
        parts.append(f'<div class="muted">files written: {_e(", ".join(trial.written))}</div>')
    if trial.skill_loaded is not None:
        parts.append(f'<div class="muted">skill loaded: {"yes" if trial.skill_loaded else "no"}</div>')
    if trial.expectations:
        graded = "".join(
            f'<li class="{"passed" if e.passed else "failed"}">{"✓" if e.passed else "✗"} {_e(e.text)} '
            f'<span class="muted">{_e(e.evidence)}</span></li>'
            for e in trial.expectations
        )
        parts.append(f'<div class="muted">expectations, graded by the judge</div><ul class="calls">{graded}</ul>')
    parts.append("</div>")
    return "".join(parts)


def case_html(result: ResultReport, case: CaseRuns) -> str:
    outcome = case_outcome(case)
    by_key = {(t.arm, t.run): t for t in case.trials}
    runs = sorted({t.run for t in case.trials}) or [0]

    def marks(values: list[bool | None]) -> str:
        return " ".join("✓" if v else "–" if v is None else "✗" for v in values) or "not run"

    if case.should_trigger is not None:
        return _trigger_case_html(result, case, by_key, runs, marks)
    body = []
    for run in runs:
        base, skill = by_key.get((Arm.BASELINE, run)), by_key.get((Arm.WITH_SKILL, run))
        left, right = marked_pair(base.answer if base else "", skill.answer if skill else "")
        previous = by_key.get((Arm.PREVIOUS, run))
        third = _arm_html(previous, _e(previous.answer), "previous") if previous else ""
        body.append(
            '<div class="arms">'
            + _arm_html(base, left, "baseline")
            + third
            + _arm_html(skill, right, "with skill")
            + "</div>"
        )
    moved = f" · previous {marks(case.previous)}" if case.previous is not None else ""
    return (
        f'<details class="case" data-case="{_e(case.case)}" data-skill="{_e(result.skill)}" '
        f'data-model="{_e(result.model)}" '
        f'data-outcome="{outcome}"><summary><b>{_e(case.case)}</b> · {_e(result.skill)} × <code>'
        f"{_e(result.model)}</code> · baseline {marks(case.baseline)}{moved} → with skill {marks(case.with_skill)}"
        f'<span class="tag {outcome}">{_e(OUTCOMES[outcome])}</span></summary>{"".join(body)}</details>'
    )


def _trigger_case_html(
    result: ResultReport,
    case: CaseRuns,
    by_key: dict[tuple[str, int], TrialReport],
    runs: list[int],
    marks: Callable[[list[bool | None]], str],
) -> str:
    """A trigger case: each run's decision among the catalog (and at REF, under --upskill-against)."""
    should = "should load the skill" if case.should_trigger else "should not load it (a near miss)"
    body = []
    for run in runs:
        now, then = by_key.get((Arm.TRIGGER, run)), by_key.get((Arm.PREVIOUS_TRIGGER, run))
        body.append(
            '<div class="arms">'
            + (_arm_html(then, _e(then.answer), "catalog at REF") if then else "")
            + _arm_html(now, _e(now.answer) if now else "", "trigger")
            + "</div>"
        )
    outcome = "pass" if all(case.trigger or [False]) else "fail"
    return (
        f'<details class="case" data-case="{_e(case.case)}" data-skill="{_e(result.skill)}" '
        f'data-model="{_e(result.model)}" data-outcome="{outcome}"><summary><b>{_e(case.case)}</b> · '
        f"{_e(result.skill)} × <code>{_e(result.model)}</code> · trigger case, {_e(should)}: "
        f"{marks(case.trigger or [])}</summary>{''.join(body)}</details>"
    )


# --------------------------------------------------------------------------------------- page


def _options(values: list[str], every: str) -> str:
    return f'<option value="">{_e(every)}</option>' + "".join(
        f'<option value="{_e(v)}">{_e(v)}</option>' for v in values
    )


def _audit(report: Report) -> list[str]:
    lines = []
    for r in report.results:
        for why in r.uninformative_cases:
            lines.append(f"{r.skill} × {r.model}: {why.case} {why.why}, measuring nothing")
        for why in r.unpaired_cases:
            lines.append(f"{r.skill} × {r.model}: {why.case} left out of the rates and the lift ({why.why})")
    max_errors = str((report.run.settings if report.run else {}).get("max_errors", ""))
    lines += reliability_lines(report, max_errors)
    lines += [f"cache warning: {p} (ignored and fetched again)" for p in report.cache_problems]
    return lines


def render_html(report: Report, history: list[Run] | None = None) -> str:
    """The whole page. ``history``: the runs of --upskill-history (this one included) for the trends."""
    verdicts = {(v.skill, v.model): v for v in report.verdicts}
    trends = series(history) if history else None
    skills = sorted({r.skill for r in report.results})
    models = list(dict.fromkeys(r.model for r in report.results))
    info = report.run
    head = []
    if info:
        head.append(f"ran {info.time}")
        if info.commit:
            head.append(f"commit {info.commit[:12]}" + (f" on {info.branch}" if info.branch else ""))
        head.append(f"pytest-upskill {info.plugin_version}")
    head.append(f"{report.trials} trial(s), {report.cached} from the cache, {report.errors} not scored")
    rows = "".join(
        result_row(
            r,
            verdicts.get((r.skill, r.model)),
            (trends or {}).get((r.skill, r.model)) if trends is not None else None,
        )
        for r in report.results
    )
    trend_head = "<th>trend (pass rate)</th>" if trends is not None else ""
    cases = "".join(case_html(r, c) for r in report.results for c in r.cases)
    regressions = "".join(
        f'<li data-skill="{_e(g.skill)}" data-model="{_e(g.model)}"><b>{_e(g.skill)} × <code>{_e(g.model)}</code></b> '
        f"({_e(regression_label(g.kind, g.fails))}{', case ' + _e(g.case) if g.case else ''}"
        f"{', fails the run' if g.fails else ''}): "
        f"{_e(g.message)}</li>"
        for g in report.regressions
    )
    failing = "".join(
        f"<li>{_e(v.skill)} × <code>{_e(v.model)}</code>: {_e(f.figure)} {_e(f.verdict)} "
        f"(value {pct(f.value, True)}, threshold {pct(f.threshold, True)}, decided on {_e(f.decided_on)})</li>"
        for v in report.verdicts
        for f in v.findings
        if f.fails
    )
    audit = "".join(f"<li>{_e(line)}</li>" for line in _audit(report))
    not_measured = "".join(
        f'<li data-skill="{_e(g.skill)}" data-model="{_e(g.model)}"><b>{_e(g.skill)} × <code>{_e(g.model)}</code></b>: '
        f"all {g.trials} trial(s) skipped: {_e('; '.join(g.reasons))}"
        + (f" <b>{_e(v.verdict)}</b> (fails the run)" if (v := verdicts.get((g.skill, g.model))) else "")
        + "</li>"
        for g in report.skipped
    )
    statistics = report.statistics
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="pytest-upskill">
<title>pytest-upskill report</title>
<style>{STYLE}</style></head>
<body data-schema-version="{report.schema_version}">
<h1>pytest-upskill</h1>
<p class="run">{_e(" · ".join(head))}</p>
<p class="run">models: {_e(", ".join(models) or "none")}</p>
<nav><label>skill<select id="f-skill">{_options(skills, "all skills")}</select></label>
<label>model<select id="f-model">{_options(models, "all models")}</select></label>
<label>outcome<select id="f-outcome"><option value="">all cases</option>{
        "".join(f'<option value="{k}">{_e(v)}</option>' for k, v in OUTCOMES.items())
    }</select></label><span id="shown" class="muted"></span></nav>
<h2>Per skill × model</h2>
<p class="legend"><span><i class="sw base"></i>baseline (without the skill)</span><span><i class="sw skill"></i>with
the skill</span><span>whisker: the paired lift's 95% interval</span></p>
<table id="results"><thead><tr><th>skill</th><th>model</th><th>lift, paired [95% CI]</th><th>pass rate</th>
<th>verdict</th><th>tokens Δ</th><th>cost</th><th>skill loaded</th>{trend_head}</tr></thead>
<tbody>{rows}</tbody></table>
<p class="muted">{_e(statistics.get("unit", ""))}. Lift: {_e(statistics.get("lift_interval", ""))}. Pass rate:
{_e(statistics.get("pass_rate_interval", ""))}.</p>
{f'<h2>Not measured: every trial skipped</h2><ul id="skipped">{not_measured}</ul>' if not_measured else ""}
{f'<h2>Failing gates</h2><ul id="failing">{failing}</ul>' if failing else ""}
{f'<h2>Against the base report</h2><ul id="regressions">{regressions}</ul>' if regressions else ""}
<h2>Cases</h2>
<div id="cases">{cases or '<p class="muted">no case ran</p>'}</div>
<h2>Audit</h2>
<ul class="audit" id="audit">{
        audit or '<li class="muted">nothing to report: every trial scored, every case paired</li>'
    }</ul>
<script>{SCRIPT}</script>
</body></html>
"""
