"""Error rates of the validity controls (``--upskill-controls``): how often a sound harness is called
INVALID, and how often a broken one is caught.

    .venv/bin/python benchmarks/controls.py                # 2,000 replications per cell
    .venv/bin/python benchmarks/controls.py --reps 300

Each replication samples Bernoulli trials and applies the plugin's own verdict code
(``pytest_upskill.results.gates.experiment`` on a ``pytest_upskill.results.aggregate.Result``):

* **A/A**: the with-skill arm and the A/A arm on the control sample (10 cases), 1 or 3 runs. Sound:
  both arms at the same per-case rate (spread over (0, 1), or 0/1 at temperature 0). Broken: the
  A/A arm's rate moved down by 0.3 or 0.6 on every case (what a wrongly keyed cache or asymmetric
  arms do), clipped at 0.
* **positive control**: 10 trials that name the skill. Sound: the model loads it 97% of the time;
  broken: 50% (the listing or read_skill is broken).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pytest_upskill.results import gates  # noqa: E402
from pytest_upskill.results.aggregate import Result  # noqa: E402
from pytest_upskill.types import Arm, Outcome  # noqa: E402

CASES = 20


def aa_invalid(rng: np.random.Generator, runs: int, shift: float, temp0: bool) -> bool:
    rates = (rng.random(CASES) < 0.5).astype(float) if temp0 else rng.uniform(0.05, 0.95, CASES)
    other = np.clip(rates - shift, 0, 1)
    result = Result("s", "m")
    for i in range(CASES):
        for run in range(1, runs + 1):
            for arm, rate in ((Arm.WITH_SKILL, rates[i]), (Arm.AA_CONTROL, other[i])):
                result.record(f"c{i}", arm, run, bool(rng.random() < rate))
    found = gates.experiment([result], gates.CompareRule(), None, [])
    return any(g.kind == "aa" and g.fails for g in found)


def positive_invalid(rng: np.random.Generator, activation: float) -> bool:
    result = Result("s", "m")
    for i in range(CASES):
        loaded = bool(rng.random() < activation)
        result.add(Outcome("s", f"c{i}", "m", Arm.POSITIVE_CONTROL, 1, passed=loaded, skill_loaded=loaded))
    found = gates.experiment([result], gates.CompareRule(), None, [])
    return any(g.kind == "positive" and g.fails for g in found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261206)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    rows = []
    for temp0 in (False, True):
        for runs in (1, 3):
            if temp0 and runs > 1:
                continue
            label = "temp 0" if temp0 else "stochastic"
            sound = sum(aa_invalid(rng, runs, 0.0, temp0) for _ in range(args.reps)) / args.reps
            caught = [sum(aa_invalid(rng, runs, d, temp0) for _ in range(args.reps)) / args.reps for d in (0.3, 0.6)]
            rows.append(
                f"| A/A, {label}, {CASES} cases × {runs} run(s) | {sound * 100:.1f}% | "
                + " / ".join(f"{c * 100:.1f}%" for c in caught)
                + " |"
            )
    sound = sum(positive_invalid(rng, 0.97) for _ in range(args.reps)) / args.reps
    broken = sum(positive_invalid(rng, 0.5) for _ in range(args.reps)) / args.reps
    rows.append(
        f"| positive control, {CASES} trials (loaded 97% / broken: 50%) | {sound * 100:.1f}% | {broken * 100:.1f}% |"
    )
    print(f"{args.reps} replications per cell, seed {args.seed}, {time.monotonic() - started:.0f} s")
    print()
    print("| control | sound harness called INVALID | broken harness caught (A/A: arms 0.3 / 0.6 apart) |")
    print("|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
