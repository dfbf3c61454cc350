"""Error rates of every exit rule: how often the exit status is right, by simulation.

    .venv/bin/python benchmarks/verdicts.py                  # the README's tables, 2,000 replications per cell
    .venv/bin/python benchmarks/verdicts.py --reps 300       # a quick look
    .venv/bin/python benchmarks/verdicts.py --json out.json

Each replication draws ``n`` cases from a scenario, runs each case ``runs`` times per arm (Bernoulli
trials at the case's true rate) and applies the plugin's own rules to what it sees
(``pytest_upskill.results.stats`` for the intervals, ``pytest_upskill.results.gates`` for the comparison):

* **the lift gate** (``--upskill-min-lift``, threshold 0.1): P(the run passes) when the true lift is
  0, at the threshold, and at the threshold + 0.2 / + 0.3, under the default rule (PASS only when
  the 95% interval clears the threshold), ``--upskill-lenient`` (an INCONCLUSIVE verdict decided on
  the point estimate: the old default) and the default rule on the interval that counts cases only
  (before the runs-aware interval);
* **the pull request's check** (``--upskill-compare``, the skill's with-skill arm re-run, the
  baseline replayed): P(the check fails) on an *unchanged* skill and on one whose every case lost
  0.2, under the paired rule (``--upskill-max-regression 0``), the old flip rule (any case whose
  with-skill majority went from pass to fail) and the old lift check (MOVER on the two lifts).

Scenarios: "stochastic", every case has its own rate in each arm, spread over (0, 1) (baseline
U(0.05, 0.95 - lift), skill = baseline + lift); "temp 0", each case always passes or always fails in
an arm (baseline passes with probability 0.4, the skill's arm with 0.4 + lift, independently). The
true lift is the population's: the mean over cases of skill rate - baseline rate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_upskill.results import gates as gate
from pytest_upskill.results import stats  # noqa: E402

THRESHOLD = 0.1
CASES = (10, 20, 50)
RUNS = (1, 3, 5)
SCENARIOS = ("stochastic", "temp 0")
LIFTS = (("lift 0", 0.0), ("at the threshold", THRESHOLD), ("threshold + 0.2", THRESHOLD + 0.2))
LIFTS += (("threshold + 0.3", THRESHOLD + 0.3),)
DROP = 0.2  # the pull request's real regression: every case's with-skill rate falls by this


def rates(rng: np.random.Generator, scenario: str, n: int, lift: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-case true rates (skill, baseline) with a population lift of ``lift``."""
    if scenario == "stochastic":
        base = rng.uniform(0.05, 0.95 - lift, n)
        return base + lift, base
    return (rng.random(n) < 0.4 + lift).astype(float), (rng.random(n) < 0.4).astype(float)


def observe(rng: np.random.Generator, truth: np.ndarray, runs: int) -> tuple[Fraction, ...]:
    return tuple(Fraction(int(k), runs) for k in rng.binomial(runs, np.clip(truth, 0, 1)))


def gate_cell(args: tuple[str, int, int, str, float, int, int]) -> dict:
    """P(pass) of the lift gate under each rule."""
    scenario, n, runs, label, lift, reps, seed = args
    rng = np.random.default_rng(seed)
    passed = {"default": 0, "lenient": 0, "cases only": 0}
    for _ in range(reps):
        skill_truth, base_truth = rates(rng, scenario, n, lift)
        paired = stats.Paired(observe(rng, skill_truth, runs), observe(rng, base_truth, runs), n * runs, n * runs)
        value = float(paired.lift)  # type: ignore[arg-type]
        where = stats.side(paired.lift_ci(), THRESHOLD)  # type: ignore[arg-type]
        passed["default"] += where == 1
        passed["lenient"] += where == 1 or (where == 0 and value >= THRESHOLD - stats.TOLERANCE)
        passed["cases only"] += stats.side(stats.newcombe10(*paired.table()), THRESHOLD) == 1
    return {"kind": "gate", "scenario": scenario, "cases": n, "runs": runs, "truth": label, "reps": reps} | {
        f"pass_{k}": v / reps for k, v in passed.items()
    }


def pr_cell(args: tuple[str, int, int, str, float, int, int]) -> dict:
    """P(the pull request's check fails) under each rule, the skill's true lift 0.3 before the change."""
    scenario, n, runs, label, drop, reps, seed = args
    rng = np.random.default_rng(seed)
    failed = {"paired": 0, "flips": 0, "lift MOVER": 0}
    for _ in range(reps):
        skill_truth, base_truth = rates(rng, scenario, n, 0.3)
        new_truth = np.clip(skill_truth - drop, 0, 1)
        base = observe(rng, base_truth, runs)  # replayed from the cache: the same in both runs
        old, new = observe(rng, skill_truth, runs), observe(rng, new_truth, runs)
        change = stats.Paired(new, old, n * runs, n * runs)  # as gate.paired_change builds it
        failed["paired"] += change.lift_ci()[1] < -stats.TOLERANCE  # type: ignore[index]
        failed["flips"] += any(
            gate._majority_passed([True] * round(o * runs) + [False] * (runs - round(o * runs)))
            and gate._majority_passed([True] * round(w * runs) + [False] * (runs - round(w * runs))) is False
            for o, w in zip(old, new, strict=True)
        )
        before, after = stats.Paired(old, base, n * runs, n * runs), stats.Paired(new, base, n * runs, n * runs)
        lo, hi = gate.lift_difference_ci(
            float(after.lift),  # type: ignore[arg-type]
            after.lift_ci(),  # type: ignore[arg-type]
            float(before.lift),  # type: ignore[arg-type]
            before.lift_ci(),  # type: ignore[arg-type]
        )
        failed["lift MOVER"] += hi < 0
    return {"kind": "pr", "scenario": scenario, "cases": n, "runs": runs, "truth": label, "reps": reps} | {
        f"fail_{k}": v / reps for k, v in failed.items()
    }


RATE_THRESHOLD = 0.6  # the pass-rate gate's threshold in the study
RATE_TRUTHS = (("rate 0.4", 0.4), ("at the threshold", 0.6), ("threshold + 0.2", 0.8), ("threshold + 0.3", 0.9))


def rate_cell(args: tuple[str, int, int, str, float, int, int]) -> dict:
    """P(pass) of the pass-rate gate (``--upskill-min-pass-rate``) under the default rule and lenient."""
    scenario, n, runs, label, truth, reps, seed = args
    rng = np.random.default_rng(seed)
    passed = {"default": 0, "lenient": 0}
    for _ in range(reps):
        if scenario == "stochastic":  # the with-skill rates spread evenly around the truth
            theta = truth + rng.uniform(-1, 1, n) * min(truth, 1 - truth)
        else:
            theta = (rng.random(n) < truth).astype(float)
        skill = observe(rng, theta, runs)
        paired = stats.Paired(skill, skill, n * runs, n * runs)
        where = stats.side(paired.pass_rate_ci(), RATE_THRESHOLD)  # type: ignore[arg-type]
        passed["default"] += where == 1
        passed["lenient"] += where == 1 or (where == 0 and float(paired.p_skill) >= RATE_THRESHOLD)  # type: ignore[arg-type]
    return {"kind": "rate", "scenario": scenario, "cases": n, "runs": runs, "truth": label, "reps": reps} | {
        f"pass_{k}": v / reps for k, v in passed.items()
    }


def rate_table(rows: list[dict]) -> list[str]:
    out = [
        f"P(the run passes) with `--upskill-min-pass-rate {RATE_THRESHOLD}`: default rule / `--upskill-lenient`.",
        "",
        "| scenario | cases × runs | " + " | ".join(f"true rate {t:g}" for _, t in RATE_TRUTHS) + " |",
        "|---|---|" + "---|" * len(RATE_TRUTHS),
    ]
    for scenario in SCENARIOS:
        for n in CASES:
            for runs in (1, 5):
                cells = {r["truth"]: r for r in rows if (r["scenario"], r["cases"], r["runs"]) == (scenario, n, runs)}
                shown = [
                    f"{_pct(cells[label]['pass_default'])} / {_pct(cells[label]['pass_lenient'])}"
                    for label, _ in RATE_TRUTHS
                ]
                out.append(f"| {scenario} | {n} × {runs} | " + " | ".join(shown) + " |")
    return out


TOKEN_LIMIT = 0.5  # the token gate's limit in the study: +50% tokens per trial with the skill
TOKEN_TRUTHS = (("limit - 0.2", 0.3), ("limit - 0.1", 0.4), ("at the limit", 0.5), ("limit + 0.1", 0.6))


def token_cell(args: tuple[str, int, int, str, float, int, int]) -> dict:
    """P(pass) of the token gate (a point estimate against its limit). Assumed: 400 input tokens per
    trial without the skill (fixed), the skill's own tokens added to it with the skill, and output
    tokens drawn per trial from a lognormal with a coefficient of variation of 0.5 (mean 200 without
    the skill, 300 with it); the skill's length sets the true increase."""
    scenario, n, runs, label, truth, reps, seed = args
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(np.log(1 + 0.5**2))
    base_mean = 400 + 200
    skill_input = base_mean * (1 + truth) - 300 - 400  # the skill's tokens that make the true increase
    passed = 0
    for _ in range(reps):
        base_out = rng.lognormal(np.log(200) - sigma**2 / 2, sigma, n * runs)
        skill_out = rng.lognormal(np.log(300) - sigma**2 / 2, sigma, n * runs)
        before = (400 + base_out).mean()
        after = (400 + skill_input + skill_out).mean()
        passed += (after - before) / before <= TOKEN_LIMIT
    return {"kind": "tokens", "scenario": scenario, "cases": n, "runs": runs, "truth": label, "reps": reps} | {
        "pass_default": passed / reps
    }


def token_table(rows: list[dict]) -> list[str]:
    out = [
        f"P(the run passes) with `--upskill-max-token-increase {TOKEN_LIMIT}` (a point estimate; output tokens "
        "lognormal, CV 0.5: see token_cell).",
        "",
        "| cases × runs | " + " | ".join(f"true increase {t:+.0%} ({label})" for label, t in TOKEN_TRUTHS) + " |",
        "|---|" + "---|" * len(TOKEN_TRUTHS),
    ]
    for n in CASES:
        for runs in (1, 5):
            cells = {r["truth"]: r for r in rows if (r["cases"], r["runs"]) == (n, runs)}
            out.append(
                f"| {n} × {runs} | "
                + " | ".join(_pct(cells[label]["pass_default"]) for label, _ in TOKEN_TRUTHS)
                + " |"
            )
    return out


GATES = 6  # the family: one run with this many skill × model lift gates


def family_cell(args: tuple[str, int, int, str, tuple[float, ...], int, int]) -> dict:
    """P(the run passes) and P(a useless skill's own verdict is PASS) with ``GATES`` lift gates, with no
    adjustment (the default) and under Holm."""
    scenario, n, runs, label, lifts, reps, seed = args
    rng = np.random.default_rng(seed)
    runs_pass = {"none": 0, "holm": 0}
    useless_pass = {"none": 0, "holm": 0}
    for _ in range(reps):
        verdicts = []
        for lift in lifts:
            skill_truth, base_truth = rates(rng, scenario, n, lift)
            paired = stats.Paired(observe(rng, skill_truth, runs), observe(rng, base_truth, runs), n * runs, n * runs)
            shown = stats.side(paired.lift_ci(), THRESHOLD) == 1  # type: ignore[arg-type]
            p = stats.one_sided_p(lambda z, paired=paired: paired.lift_ci(z)[0], THRESHOLD)  # type: ignore[index]
            verdicts.append((shown, p))
        holm = stats.holm([p for _, p in verdicts], gate.ALPHA)
        passes = {"none": [s for s, _ in verdicts], "holm": [s and h for (s, _), h in zip(verdicts, holm, strict=True)]}
        for rule, each in passes.items():
            runs_pass[rule] += all(each)
            useless_pass[rule] += any(ok for ok, lift in zip(each, lifts, strict=True) if lift <= THRESHOLD)
    return {"kind": "family", "scenario": scenario, "cases": n, "runs": runs, "truth": label, "reps": reps} | {
        **{f"run_passes_{k}": v / reps for k, v in runs_pass.items()},
        **{f"useless_passes_{k}": v / reps for k, v in useless_pass.items()},
    }


FAMILIES = (
    ("6 gates, every true lift +0.3", (0.3,) * GATES),
    ("6 gates, one at the threshold, five +0.3", (THRESHOLD,) + (0.3,) * (GATES - 1)),
    ("6 gates, every one at the threshold", (THRESHOLD,) * GATES),
)


def family_table(rows: list[dict]) -> list[str]:
    out = [
        f"{GATES} lift gates in one run (`--upskill-min-lift {THRESHOLD}`, stochastic): P(the run passes) and P(a "
        "gate at the threshold is PASS on its own), no adjustment (the default) / `--upskill-family holm`.",
        "",
        "| family | cases × runs | P(run passes) | P(a useless gate's PASS) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        useless = (
            "—"
            if r["truth"] == FAMILIES[0][0]
            else f"{_pct(r['useless_passes_none'])} / {_pct(r['useless_passes_holm'])}"
        )
        out.append(
            f"| {r['truth']} | {r['cases']} × {r['runs']} | {_pct(r['run_passes_none'])} / "
            f"{_pct(r['run_passes_holm'])} | {useless} |"
        )
    return out


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def gate_table(rows: list[dict]) -> list[str]:
    out = [
        f"P(the run passes) with `--upskill-min-lift {THRESHOLD}`: default rule / `--upskill-lenient` / default rule "
        "on the cases-only interval.",
        "",
        "| scenario | cases × runs | " + " | ".join(label for label, _ in LIFTS) + " |",
        "|---|---|" + "---|" * len(LIFTS),
    ]
    for scenario in SCENARIOS:
        for n in CASES:
            for runs in RUNS:
                cells = {r["truth"]: r for r in rows if (r["scenario"], r["cases"], r["runs"]) == (scenario, n, runs)}
                shown = [
                    " / ".join(_pct(cells[label][f"pass_{k}"]) for k in ("default", "lenient", "cases only"))
                    for label, _ in LIFTS
                ]
                out.append(f"| {scenario} | {n} × {runs} | " + " | ".join(shown) + " |")
    return out


def pr_table(rows: list[dict]) -> list[str]:
    out = [
        "P(the pull request's check fails): the paired rule (default) / the old flip rule / the old lift check "
        "(MOVER).",
        "",
        "| scenario | cases × runs | unchanged skill (false alarm) | every case -0.2 (power) |",
        "|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        for n in CASES:
            for runs in RUNS:
                cells = {r["truth"]: r for r in rows if (r["scenario"], r["cases"], r["runs"]) == (scenario, n, runs)}
                shown = [
                    " / ".join(_pct(cells[label][f"fail_{k}"]) for k in ("paired", "flips", "lift MOVER"))
                    for label in ("unchanged", "drop 0.2")
                ]
                out.append(f"| {scenario} | {n} × {runs} | " + " | ".join(shown) + " |")
    return out


PARTS = ("gates", "rates", "pr", "family", "tokens")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=2000, help="replications per cell (default 2000)")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default=",".join(PARTS), help=f"the tables to make (default: {','.join(PARTS)})")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--only: unknown table(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    started = time.perf_counter()
    grid = [(s, n, r) for s in SCENARIOS for n in CASES for r in RUNS]
    cells = {
        "gates": (
            gate_cell,
            gate_table,
            [
                (s, n, r, label, lift, args.reps, args.seed + i)
                for i, (s, n, r, (label, lift)) in enumerate((s, n, r, t) for s, n, r in grid for t in LIFTS)
            ],
        ),
        "rates": (
            rate_cell,
            rate_table,
            [
                (s, n, r, label, truth, args.reps, args.seed + 30_000 + i)
                for i, (s, n, r, (label, truth)) in enumerate(
                    (s, n, r, t) for s in SCENARIOS for n in CASES for r in (1, 5) for t in RATE_TRUTHS
                )
            ],
        ),
        "pr": (
            pr_cell,
            pr_table,
            [
                (s, n, r, label, d, args.reps, args.seed + 10_000 + i)
                for i, (s, n, r, (label, d)) in enumerate(
                    (s, n, r, t) for s, n, r in grid for t in (("unchanged", 0.0), ("drop 0.2", DROP))
                )
            ],
        ),
        "family": (
            family_cell,
            family_table,
            [
                ("stochastic", n, r, label, lifts, args.reps, args.seed + 20_000 + i)
                for i, ((label, lifts), (n, r)) in enumerate(
                    (f, c) for f in FAMILIES for c in ((10, 1), (20, 1), (20, 5))
                )
            ],
        ),
        "tokens": (
            token_cell,
            token_table,
            [
                ("lognormal", n, r, label, truth, args.reps, args.seed + 40_000 + i)
                for i, (n, r, (label, truth)) in enumerate(
                    (n, r, t) for n in CASES for r in (1, 5) for t in TOKEN_TRUTHS
                )
            ],
        ),
    }
    rows: dict[str, list[dict]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for part in parts:
            rows[part] = list(pool.map(cells[part][0], cells[part][2]))
    print(
        f"Error rates of the exit rules, {args.reps} replications per cell (Monte Carlo SE at most "
        f"{50 / args.reps**0.5:.1f} points), seed {args.seed}.\n"
    )
    for part in parts:
        print("\n".join(cells[part][1](rows[part])))
        print()
    at = [r["pass_default"] for p in ("gates", "rates") for r in rows.get(p, []) if r["truth"] == "at the threshold"]
    alarm = [r["fail_paired"] for r in rows.get("pr", []) if r["truth"] == "unchanged"]
    if at:
        print(f"Default lift and pass-rate gates at the threshold: pass at most {_pct(max(at))} (target 5%).")
    if alarm:
        print(f"Paired PR check on an unchanged skill: fails at most {_pct(max(alarm))} (target 5%).")
    print(f"{time.perf_counter() - started:.0f} s.")
    if args.json:
        everything = [r for part in parts for r in rows[part]]
        args.json.write_text(json.dumps({"reps": args.reps, "seed": args.seed, "rows": everything}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
