"""Error rates of the trigger gates and of the blast radius check, by simulation.

    .venv/bin/python benchmarks/triggers.py               # 2,000 replications per cell
    .venv/bin/python benchmarks/triggers.py --reps 300    # a quick look

Each replication draws trigger cases, runs each ``runs`` times (Bernoulli trials: does the model load
the skill?) and applies the plugin's own pairing (``Result.pair`` on the trigger arm, by case) and
intervals (``stats.Paired.pass_rate_ci``, ``lift_ci``), decided as ``gates`` decides them (a PASS only
where the 95% interval clears the threshold; the first replications of every cell are checked
against ``gates.verdict_for`` and ``gates.experiment`` themselves).

* **recall gate** (``--upskill-min-trigger-recall 0.8``): P(PASS) when the true recall is 0.8 (a
  false pass: at most 2.5% is the claim) and when it is 0.95 or 1.0 (power), over 10, 20, 40 and 80
  should-trigger cases × 1 or 3 runs.
* **false-trigger gate** (``--upskill-max-false-trigger 0.2``): P(PASS) when the true false-trigger
  rate is 0.2 (a false pass) and when it is 0.05 or 0 (power), over as many near misses.
* **blast radius** (``--upskill-against``, the catalog at REF against now, δ = 0.1): P(the check
  fails: a drop of more than δ shown) for a neighbour whose recall did not move (a false alarm) and
  for one whose recall fell by 0.3 (power).

Scenarios: "temp 0", each case always loads or never does (a case loads with probability = the
truth); "stochastic", each case has its own load rate, Beta-distributed around the truth (a + b = 4).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_upskill.results import gates, stats  # noqa: E402
from pytest_upskill.results.aggregate import Result  # noqa: E402
from pytest_upskill.types import Arm  # noqa: E402

RECALL, FALSE = 0.8, 0.2
CASES = (10, 20, 40, 80)
RUNS = (1, 3)
SCENARIOS = ("temp 0", "stochastic")
CHECKED = 40  # replications per cell decided by the gates' own code too, to show the two agree


def case_rates(rng: np.random.Generator, scenario: str, n: int, truth: float) -> np.ndarray:
    if scenario == "temp 0" or truth in (0.0, 1.0):
        return (rng.random(n) < truth).astype(float)
    return rng.beta(4 * truth, 4 * (1 - truth), n)


def record(result: Result, arm: str, rates: np.ndarray, runs: int, should: bool, rng: np.random.Generator) -> None:
    """``result``'s trigger trials: a trial passes when the decision is right (loaded iff it should)."""
    for i, rate in enumerate(rates):
        result.should[f"c{i}"] = should
        for run in range(1, runs + 1):
            loaded = bool(rng.random() < rate)
            result.record(f"c{i}", arm, run, loaded == should)


def gate_passes(
    rng: np.random.Generator, scenario: str, n: int, runs: int, truth: float, recall: bool, check: bool
) -> bool:
    """One run: does the recall (or false-trigger) gate PASS?"""
    result = Result("s", "m")
    record(result, Arm.TRIGGER, case_rates(rng, scenario, n, truth), runs, recall, rng)
    paired = result.pair(Arm.TRIGGER, Arm.TRIGGER, recall).paired
    lo, _ = paired.pass_rate_ci()  # type: ignore[misc]
    threshold = RECALL if recall else 1 - FALSE  # false triggers at most 0.2: right decisions at least 0.8
    passed = lo >= threshold - stats.TOLERANCE
    if check:
        key = "min_trigger_recall" if recall else "max_false_trigger"
        verdict = gates.verdict_for(result, gates.Thresholds(**{key: RECALL if recall else FALSE}))
        assert (verdict.verdict == gates.PASS) == passed, (verdict.findings, passed)
    return passed


def blast_fails(rng: np.random.Generator, scenario: str, n: int, runs: int, drop: float, check: bool) -> bool:
    """One pull request: does a neighbour's recall fail the check against the catalog at REF (a
    drop of more than δ shown)?"""
    result = Result("s", "m")
    then = case_rates(rng, scenario, n, 0.9)
    now = np.clip(then - drop, 0, 1) if scenario == "stochastic" else then * (rng.random(n) >= drop / 0.9)
    record(result, Arm.PREVIOUS_TRIGGER, then, runs, True, rng)
    record(result, Arm.TRIGGER, now, runs, True, rng)
    change = result.trigger_change(True)
    assert change is not None
    _, hi = change.lift_ci()  # type: ignore[misc]
    fails = hi < -gates.NONINFERIORITY_MARGIN - stats.TOLERANCE
    if check:
        found = gates.experiment([result], gates.CompareRule(gates.NONINFERIORITY_MARGIN), "main", [])
        assert any(g.fails for g in found) == fails, (found, fails)
    return fails


def rate(reps: int, trial: Callable[..., bool], *args: object) -> float:
    """How often ``trial(*args, check)`` is true over ``reps`` replications (the first CHECKED checked)."""
    return sum(trial(*args, i < CHECKED) for i in range(reps)) / reps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    print(f"{args.reps:,} replications per cell, seed {args.seed}\n")
    print("| gate | scenario | cases × runs | false pass (truth at the threshold) | power | power |")
    print("|---|---|---|---|---|---|")
    for recall, (at, good, best) in ((True, (RECALL, 0.95, 1.0)), (False, (FALSE, 0.05, 0.0))):
        name = "recall ≥ 0.8" if recall else "false triggers ≤ 0.2"
        for scenario in SCENARIOS:
            for n in CASES:
                for runs in RUNS:
                    if scenario == "temp 0" and runs > 1:
                        continue
                    cells = [
                        f"{rate(args.reps, gate_passes, rng, scenario, n, runs, t, recall) * 100:.1f}%"
                        for t in (at, good, best)
                    ]
                    labels = (f"(at {good:g})", f"(at {best:g})")
                    print(
                        f"| {name} | {scenario} | {n} × {runs} | {cells[0]} | {cells[1]} {labels[0]} | "
                        f"{cells[2]} {labels[1]} |"
                    )
    print(
        "\n| blast radius (recall, δ = 0.1) | scenario | cases × runs | fails: untouched neighbour | fails: fell 0.3 |"
    )
    print("|---|---|---|---|---|")
    for scenario in SCENARIOS:
        for n in (20, 50, 100):
            for runs in RUNS:
                if scenario == "temp 0" and runs > 1:
                    continue
                same = rate(args.reps, blast_fails, rng, scenario, n, runs, 0.0)
                fell = rate(args.reps, blast_fails, rng, scenario, n, runs, 0.3)
                print(f"| neighbour's recall | {scenario} | {n} × {runs} | {same * 100:.1f}% | {fell * 100:.1f}% |")
    print(f"\n{time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
