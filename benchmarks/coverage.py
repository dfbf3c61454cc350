"""Coverage study of the plugin's intervals: how often the nominal 95% interval holds the truth.

    .venv/bin/python benchmarks/coverage.py                 # every scenario, 4,000 replications (~4 min on 2 cores)
    .venv/bin/python benchmarks/coverage.py --reps 500      # a quick look
    .venv/bin/python benchmarks/coverage.py --json out.json
    .venv/bin/python benchmarks/coverage.py --cases 10 --runs 1 --reps 40000   # one column, more precisely

Each replication draws ``n`` cases from a scenario (every case has a true pass rate per arm),
runs each case ``runs`` times per arm (independent Bernoulli trials given the case's rates),
and computes the intervals with the plugin's own code (``pytest_upskill.results.stats.Paired``). The
truth is the scenario's population value (mean over cases of skill rate - baseline rate, and the
mean with-skill rate), so the interval is judged on what a lift means: over tasks, not over
these particular cases. Coverage below 95% by more than about 2 Monte Carlo standard errors
would be a failure of the method; the table flags it. The column ``cases only`` is the interval this
plugin used until issue 30 (method 10 on the fractional table, every arm's width over the cases,
whatever the runs) on the same data: the lift interval now takes each arm's width over its Kish
effective number of units, and the table shows how much narrower that is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_upskill.results import stats  # noqa: E402


def _no_effect_beta(rng, n):
    theta = rng.beta(0.5, 0.5, n)
    return theta, theta


def _effects_pm(rng, n):
    base = rng.uniform(0.3, 0.7, n)
    return base + rng.choice([-0.3, 0.3], n), base


def _decides_every_case(rng, n):
    base = rng.choice([0.25, 0.75], n)
    return rng.choice([0.0, 1.0], n), base


def _decides_every_case_correlated(rng, n):
    skill = rng.choice([0.0, 1.0], n)
    return skill, np.where(skill == 1.0, 0.75, 0.25)


def _decides_some_cases(rng, n):
    base = rng.choice([0.25, 0.75], n)
    decided = rng.random(n) < 0.4
    return np.where(decided, 1.0, base), base


def _all_half(rng, n):
    half = np.full(n, 0.5)
    return half, half


def _lift_03(rng, n):
    base = 0.7 * rng.beta(2, 2, n)
    return base + 0.3, base


# name -> (draw per-case (skill, baseline) rates, true lift, true with-skill pass rate)
SCENARIOS = {
    "no effect, cases ~ Beta(0.5, 0.5)": (_no_effect_beta, 0.0, 0.5),
    "per-case effects of +-0.3 (mean 0), baseline ~ U(0.3, 0.7)": (_effects_pm, 0.0, 0.5),
    "skill decides every case (0 or 1), baseline 0.25 / 0.75 at random": (_decides_every_case, 0.0, 0.5),
    "skill decides every case (0 or 1), baseline 0.75 where it passes, 0.25 where not": (
        _decides_every_case_correlated,
        0.0,
        0.5,
    ),
    "skill decides 40% of cases (passes), others as baseline 0.25 / 0.75": (_decides_some_cases, 0.2, 0.7),
    "all cases at 0.5 in both arms": (_all_half, 0.0, 0.5),
    "true lift 0.3, baseline ~ 0.7 x Beta(2, 2)": (_lift_03, 0.3, 0.65),
}
CASES = (7, 10, 20, 50)
RUNS = (1, 3, 5, 20)


def cell(args: tuple[str, int, int, int, int]) -> dict:
    """One scenario x cases x runs: coverage and mean width of each interval."""
    name, n, runs, reps, seed = args
    draw, true_lift, true_rate = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    hits = {"lift": 0, "cases only": 0, "pass_rate": 0}
    widths = {"lift": 0.0, "cases only": 0.0, "pass_rate": 0.0}
    for _ in range(reps):
        skill_theta, base_theta = draw(rng, n)
        skill = rng.binomial(runs, np.clip(skill_theta, 0, 1))
        base = rng.binomial(runs, np.clip(base_theta, 0, 1))
        paired = stats.Paired(
            tuple(Fraction(int(k), runs) for k in skill),
            tuple(Fraction(int(k), runs) for k in base),
            n * runs,
            n * runs,
        )
        for key, (lo, hi), truth in (
            ("lift", paired.lift_ci(), true_lift),
            ("cases only", stats.newcombe10(*paired.table()), true_lift),
            ("pass_rate", paired.pass_rate_ci(), true_rate),
        ):
            hits[key] += lo - 1e-12 <= truth <= hi + 1e-12
            widths[key] += hi - lo
    return {
        "scenario": name,
        "cases": n,
        "runs": runs,
        "reps": reps,
        **{f"coverage_{k}": hits[k] / reps for k in hits},
        **{f"width_{k}": widths[k] / reps for k in widths},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=4000, help="replications per cell (default 4000)")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--cases", default=",".join(map(str, CASES)), help="case counts, comma-separated (default 7,10,20,50)"
    )
    parser.add_argument(
        "--runs", default=",".join(map(str, RUNS)), help="runs per case, comma-separated (default 1,3,5,20)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    case_counts, run_counts = [int(v) for v in args.cases.split(",")], [int(v) for v in args.runs.split(",")]
    cells = [
        (name, n, runs, args.reps, args.seed + i)
        for i, (name, n, runs) in enumerate(
            (name, n, runs) for name in SCENARIOS for n in case_counts for runs in run_counts
        )
    ]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(cell, cells))
    se = math.sqrt(0.95 * 0.05 / args.reps)
    floor = 0.95 - 2 * se
    print(
        f"Coverage of the nominal 95% intervals, {args.reps} replications per cell "
        f"(Monte Carlo SE {se:.4f} at 0.95; below {floor:.3f} is flagged with !), seed {args.seed}.\n"
    )
    print(
        "| scenario | cases | runs | lift: coverage | lift: mean width | cases only: coverage | cases only: mean width "
        "| pass rate: coverage | pass rate: mean width |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:

        def mark(c: float) -> str:
            return f"{c:.3f}" + (" !" if c < floor else "")

        print(
            f"| {r['scenario']} | {r['cases']} | {r['runs']} | {mark(r['coverage_lift'])} | {r['width_lift']:.3f} | "
            f"{mark(r['coverage_cases only'])} | {r['width_cases only']:.3f} | {mark(r['coverage_pass_rate'])} | "
            f"{r['width_pass_rate']:.3f} |"
        )
    low = [r for r in rows if min(r["coverage_lift"], r["coverage_pass_rate"]) < floor]
    for runs in run_counts:
        cells = [r for r in rows if r["runs"] == runs]
        ratio = sum(r["width_lift"] / r["width_cases only"] for r in cells) / len(cells)
        print(
            f"\n{runs} run(s): lowest lift coverage {min(r['coverage_lift'] for r in cells):.3f}; mean width "
            f"{(1 - ratio) * 100:.0f}% narrower than counting cases only",
            end="",
        )
    print()
    worst_lift = min(rows, key=lambda r: r["coverage_lift"])
    worst_rate = min(rows, key=lambda r: r["coverage_pass_rate"])
    print(
        f"\nLowest lift coverage {worst_lift['coverage_lift']:.3f} ({worst_lift['scenario']}, {worst_lift['cases']} "
        "cases x "
        f"{worst_lift['runs']} runs); lowest pass-rate coverage {worst_rate['coverage_pass_rate']:.3f} "
        f"({worst_rate['scenario']}, {worst_rate['cases']} x {worst_rate['runs']}). "
        f"{len(low)} cell(s) flagged. {time.perf_counter() - started:.0f} s."
    )
    if args.json:
        args.json.write_text(
            json.dumps({"reps": args.reps, "seed": args.seed, "mc_se": se, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
