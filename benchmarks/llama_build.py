"""The README's main command on two builds of llama-cpp-python, side by side, in turns.

A llama.cpp built native (the default, ``GGML_NATIVE=ON``) uses every instruction the build
machine advertises, AMX included, and dies with SIGILL on a VM that advertises AMX but does not
allow it. ``GGML_NATIVE=OFF`` alone turns every SIMD extension off and is several times slower.
The portable choice the README gives keeps AVX2, FMA and F16C on:

    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \\
        pip install --no-cache-dir llama-cpp-python

Give the Python of each environment (each with pytest-upskill[local] installed); the runs alternate
(A, B, A, B, ...) so that a noisy machine weighs on both alike:

    python benchmarks/llama_build.py --build native=.venv/bin/python --build portable=/tmp/vp/bin/python --turns 2

Each run is ``pytest example_skills --upskill-cache off`` (every trial computed), timed as a whole
command; the answers of the builds are compared through their JSON reports.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(python: str, report: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        [python, "-m", "pytest", "example_skills", "--upskill-cache", "off", "--upskill-report", str(report), "-q"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - start


def answers(report: Path) -> list[str]:
    data = json.loads(report.read_text())
    return [t["answer"] for r in data["results"] for c in r["cases"] for t in c["trials"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="append", required=True, help="NAME=PYTHON (repeat)")
    parser.add_argument("--turns", type=int, default=2)
    args = parser.parse_args()
    builds = dict(b.split("=", 1) for b in args.build)
    times: dict[str, list[float]] = {name: [] for name in builds}
    folder = Path(tempfile.mkdtemp(prefix="llama-build-"))
    for turn in range(args.turns):
        for name, python in builds.items():
            times[name].append(run(python, folder / f"{name}-{turn}.json"))
    first = next(iter(builds))
    print("| build | runs (s) | median s | answers as the first build's |")
    print("|---|---|---|---|")
    for name in builds:
        same = sum(
            a == b
            for a, b in zip(answers(folder / f"{first}-0.json"), answers(folder / f"{name}-0.json"), strict=False)
        )
        total = len(answers(folder / f"{first}-0.json"))
        print(
            f"| {name} | {', '.join(f'{t:.1f}' for t in times[name])} | {statistics.median(times[name]):.1f} "
            f"| {same}/{total} |"
        )


if __name__ == "__main__":
    main()
