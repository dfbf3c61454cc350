"""The benchmark harness must not rot: its quick mode runs every workload but the local model
end to end (the one-slot server too) and prints its table. No timing is asserted here (figures
come from benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark harness and the statistics studies

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "harness.py"


def test_the_harness_runs_its_workloads_and_prints_the_table(tmp_path):
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--only", "concurrency,replay,collect,server", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| workload | tool | wall s | ideal s | ratio | target | met | req/s | peak RSS MiB | note |" in done.stdout
    figures = json.loads(out.read_text())
    tools = [(r["workload"], r["tool"]) for r in figures["rows"]]
    assert ("concurrency", "plugin") in tools and ("concurrency", "plugin -n 4") in tools
    assert ("replay", "bare pytest, 200 trivial tests") in tools
    assert [t for w, t in tools if w == "collect"] == ["400 items (10 skills)", "800 items (20 skills)"]
    throttled = next(r for r in figures["rows"] if r["tool"].startswith("plugin, server admits 8"))
    assert "x 429; in flight went down to" in throttled["note"]
    one_slot = [r for r in figures["rows"] if r["workload"].startswith("one-slot server")]
    assert [r["tool"] for r in one_slot] == ["plugin, defaults (concurrency 8)", "plugin, --upskill-concurrency 1"] * 2
    assert all("trials lost " in r["note"] for r in one_slot)
    measured = [r for r in figures["rows"] if not r["note"].startswith(("not installed", "not run here"))]
    assert len(measured) >= 8 and all(r["wall_s"] > 0 for r in measured)


def test_the_harness_rejects_an_unknown_workload():
    done = subprocess.run(
        [sys.executable, str(HARNESS), "--only", "warp-speed"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "unknown workload(s): warp-speed" in done.stderr


def test_the_statistics_studies_run_and_print_their_tables(tmp_path):
    """benchmarks/verdicts.py and benchmarks/coverage.py at a few replications: they cannot rot
    (their figures come from full runs, quoted in benchmarks/README.md)."""
    root = HARNESS.parent
    verdicts = subprocess.run(
        [sys.executable, str(root / "verdicts.py"), "--reps", "20", "--json", str(tmp_path / "v.json")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert verdicts.returncode == 0, verdicts.stderr[-3000:]
    assert (
        "| scenario | cases × runs | lift 0 | at the threshold | threshold + 0.2 | threshold + 0.3 |" in verdicts.stdout
    )
    assert "| scenario | cases × runs | unchanged skill (false alarm) | every case -0.2 (power) |" in verdicts.stdout
    rows = json.loads((tmp_path / "v.json").read_text())["rows"]
    assert len(rows) == 2 * 9 * 4 + 2 * 3 * 2 * 4 + 2 * 9 * 2 + 3 * 3 + 3 * 2 * 4  # gates, rates, pr, family, tokens
    coverage = subprocess.run(
        [sys.executable, str(root / "coverage.py"), "--reps", "20", "--cases", "7", "--runs", "1,3"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert coverage.returncode == 0, coverage.stderr[-3000:]
    assert "3 run(s): lowest lift coverage" in coverage.stdout
