"""``measure()``: the plugin's own engine as a function, what the teaching commands sit on. It runs
the cases of some skills on some models, with and without the skill, and returns the typed report."""

from __future__ import annotations

import json

import pytest

from pytest_upskill import MeasureError, Report, measure
from pytest_upskill.testing import LoopbackServer


def _skill(root, name="colour-facts"):
    folder = root / "skills" / name
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: Test skill.\n---\n\nThe answer is ZETA.\n", encoding="utf-8"
    )
    cases = [{"id": f"c{i}", "input": f"q{i}", "expected": {"contains": "zeta"}} for i in range(3)]
    (folder / "skill_meta.json").write_text(json.dumps(cases), encoding="utf-8")
    return folder


def test_measure_runs_both_arms_and_returns_the_report(tmp_path):
    folder = _skill(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    with LoopbackServer() as server:  # answers from the skill block: the skill helps
        report = measure(folder, [f"openai:m@{server.openai_base_url}"], cwd=tmp_path, runs=2)
    assert isinstance(report, Report) and report.trials == 12
    (result,) = report.results
    assert (result.skill, result.baseline.passed, result.with_skill.passed) == ("colour-facts", 0, 6)
    assert result.lift == 1.0 and [c.case for c in result.cases] == ["c0", "c1", "c2"]
    assert not (tmp_path / ".upskill-history").exists()


def test_a_run_with_no_report_raises_saying_why(tmp_path):
    folder = _skill(tmp_path)
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    with pytest.raises(MeasureError) as caught:
        measure(folder, ["no-such-model"], cwd=tmp_path)
    assert caught.value.code == 4 and "unknown model 'no-such-model'" in caught.value.tail
