"""What the teacher's commands decide from a students' report, without a model."""

from __future__ import annotations

from pytest_upskill.results.report import CaseRuns, CaseWhy, Report, ResultReport, SkippedReport
from pytest_upskill.teach.loop import measuring_nothing


def test_cases_that_never_ran_discriminate_nothing():
    """Every trial of a drafted case skipped (issue 28: the command said '2 of 2 new case(s)
    discriminate' on nothing): it measures nothing, and the skip's reason is given."""
    report = Report(
        results=[],
        skipped=[SkippedReport(skill="wordy", model="s", trials=2, reasons=["cuda_runs needs a GPU"])],
    )
    assert measuring_nothing(report, ["judged"]) == {"judged": ["it never ran (skipped: cuda_runs needs a GPU)"]}


def test_a_case_that_discriminates_on_one_student_measures_something():
    both = CaseRuns(case="a", baseline=[False], with_skill=[True])
    alike = ResultReport(
        skill="w", model="s1", cases=[both], uninformative_cases=[CaseWhy(case="a", why="fails in both arms")]
    )
    differs = ResultReport(skill="w", model="s2", cases=[both])
    unscored = ResultReport(skill="w", model="s1", cases=[CaseRuns(case="b", baseline=[None], with_skill=[True])])
    report = Report(results=[alike, differs, unscored])
    assert measuring_nothing(report, ["a", "b"]) == {"b": ["s1: never scored in both arms"]}
