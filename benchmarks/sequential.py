"""The pull request's check as one experiment: error rates of the non-inferiority check against the
previous arm, and what sampling until decided (``--upskill-runs auto``) costs and saves.

    .venv/bin/python benchmarks/sequential.py                # the README's table, 1,000 replications per cell
    .venv/bin/python benchmarks/sequential.py --reps 200     # a quick look
    .venv/bin/python benchmarks/sequential.py --json out.json

Each replication draws ``n`` cases with true per-case pass rates in two arms, samples Bernoulli
trials at those rates, and applies the plugin's own code to what it sees: the verdicts of
``pytest_upskill.results.gates`` on a ``pytest_upskill.results.aggregate.Result``, and for ``auto``
the looks of ``pytest_upskill.results.sequential`` (stop when decided, else run every case again), look
k of 4 read at the level that spends its share of the one-sided 2.5% (99.92%, 99.45%, 98.52%, 97.11%),
the verdict at the level of the look it stopped at. ``auto, disagreeing cases only`` is the variant
the plugin does not use: only the cases whose outcomes disagree run again.

Two questions:

* **the change against the previous arm** (``--upskill-against``, margin δ = 0.1): P(NO WORSE) when
  the true change is -δ (a false pass: must stay at most 2.5%, one-sided) and when it is 0 (power);
  P(REGRESSION) when the change is 0 (a false fail).
* **the lift gate** (``--upskill-min-lift 0.1``): P(PASS) when the true lift is at the threshold (a
  false pass) and at +0.35 (power).

Designs: ``fixed 1`` (one run, 95%), ``fixed 4`` (four runs of every case, 95%), ``auto`` (at most four
runs, as above). Scenarios: "most agree": 60% of the cases are settled (both arms pass, or both fail,
98% of the time) and the difference between the arms lies in the other 40%, whose rates are spread;
"all vary": every case has its own rate in each arm, spread over (0, 1). The requests column is the
mean number of trials sent per replication.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_upskill.results import gates, stats  # noqa: E402
from pytest_upskill.results.aggregate import Result  # noqa: E402
from pytest_upskill.results.sequential import Rules, open_questions, runs_used  # noqa: E402
from pytest_upskill.types import Arm  # noqa: E402

MARGIN = 0.1
THRESHOLD = 0.1
LOOKS = 4
CASES = (20, 50)
SCENARIOS = ("most agree", "all vary")
DESIGNS = ("fixed 1", "fixed 4", "auto", "auto, disagreeing cases only")
QUESTIONS = (
    ("change", "true change -δ (false pass)", -MARGIN),
    ("change", "true change 0 (power)", 0.0),
    ("lift", "true lift at the threshold (false pass)", THRESHOLD),
    ("lift", "true lift +0.35 (power)", 0.35),
)


def truths(rng: np.random.Generator, scenario: str, n: int, diff: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-case true rates (new arm, old arm) whose mean difference is ``diff``."""
    if scenario == "most agree":
        settled = np.arange(n) < round(0.6 * n)
        shared = np.where(rng.random(n) < 0.5, 0.98, 0.02)
        step = diff / (1 - settled.mean())  # the difference lies in the cases that vary
        low, high = max(0.02, 0.02 - step), min(0.98, 0.98 - step)
        old = rng.uniform(low, high, n)
        new = np.clip(old + step, 0.0, 1.0)
        return np.where(settled, shared, new), np.where(settled, shared, old)
    low, high = max(0.05, 0.05 - diff), min(0.95, 0.95 - diff)
    old = rng.uniform(low, high, n)
    return old + diff, old


def arms_of(question: str) -> tuple[Arm, Arm]:
    return (Arm.WITH_SKILL, Arm.PREVIOUS) if question == "change" else (Arm.WITH_SKILL, Arm.BASELINE)


def disagreeing_cases(result: Result, arms: tuple[Arm, Arm]) -> set[str]:
    """The rejected variant's choice: the cases whose scored outcomes in ``arms`` are not all the
    same (or not scored in one of them yet)."""
    found = set()
    for case, by_arm in result.cases.items():
        present = [a for a in arms if a in by_arm]
        scored = [v for a in present for v in by_arm[a].values() if v is not None]
        unscored = any(all(v is None for v in by_arm[a].values()) for a in present)
        if unscored or len(set(scored)) > 1:
            found.add(case)
    return found


def rules(question: str, looks: int) -> Rules:
    thresholds = gates.Thresholds(min_lift=THRESHOLD) if question == "lift" else gates.Thresholds()
    return Rules(thresholds, True, 0.2, gates.CompareRule(MARGIN), question == "change", looks)


def outcome(result: Result, rules_: Rules, question: str, level: stats.Level) -> str:
    """What the plugin decides: pass, fail, or inconclusive (which fails under the default rule)."""
    if question == "lift":
        verdict = gates.verdict_for(result, rules_.thresholds, True, 0.2, level)
        return {"PASS": "pass", "FAIL": "fail"}.get(verdict.findings[0].verdict, "inconclusive")
    change = result.comparison(Arm.PREVIOUS)
    assert change is not None
    found = gates.judge_change("s", "m", change, rules_.rule, "", True, True, level)[0]
    return {"no_worse": "pass", "change": "fail"}.get(found.kind, "inconclusive")


def replicate(
    rng: np.random.Generator, scenario: str, n: int, question: str, diff: float, design: str
) -> tuple[str, int]:
    new, old = truths(rng, scenario, n, diff)
    arms = arms_of(question)
    result = Result("s", "m")
    sent = 0

    def run(cases: list[int], k: int) -> None:
        nonlocal sent
        for i in cases:
            for arm, rate in zip(arms, (new[i], old[i]), strict=True):
                result.record(f"c{i:03d}", arm, k, bool(rng.random() < rate))
                sent += 1

    everyone = list(range(n))
    if design.startswith("fixed"):
        for k in range(1, int(design.split()[1]) + 1):
            run(everyone, k)
        return outcome(result, rules(question, 1), question, stats.LEVEL95), sent
    judged = rules(question, LOOKS)
    run(everyone, 1)
    for k in range(2, LOOKS + 1):
        if not open_questions(result, judged):
            break
        if design == "auto":
            again = everyone
        else:  # the rejected variant: only the cases whose outcomes disagree run again
            again = sorted(int(c[1:]) for c in disagreeing_cases(result, arms))
        if not again:
            break
        run(again, k)
    return outcome(result, judged, question, judged.level(runs_used(result))), sent


def cell(args: tuple[str, int, str, str, float, str, int, int]) -> dict[str, object]:
    scenario, n, question, label, diff, design, reps, seed = args
    rng = np.random.default_rng(seed)
    counts = {"pass": 0, "fail": 0, "inconclusive": 0}
    sent = 0
    for _ in range(reps):
        said, used = replicate(rng, scenario, n, question, diff, design)
        counts[said] += 1
        sent += used
    return {
        "scenario": scenario,
        "cases": n,
        "question": label,
        "design": design,
        "pass": counts["pass"] / reps,
        "fail": counts["fail"] / reps,
        "requests": sent / reps,
        "reps": reps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    jobs = []
    seed = args.seed
    for scenario in SCENARIOS:
        for n in CASES:
            for question, label, diff in QUESTIONS:
                for design in DESIGNS:
                    seed += 1
                    jobs.append((scenario, n, question, label, diff, design, args.reps, seed))
    started = time.monotonic()
    with ProcessPoolExecutor() as pool:
        rows = list(pool.map(cell, jobs))
    print(f"{args.reps} replications per cell, seed {args.seed}, {time.monotonic() - started:.0f} s")
    print()
    print("| scenario | cases | truth | design | P(pass) | P(fail) | requests |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['scenario']} | {row['cases']} | {row['question']} | {row['design']} | "
            f"{row['pass'] * 100:.1f}% | {row['fail'] * 100:.1f}% | {row['requests']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
