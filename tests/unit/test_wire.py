"""One trial record end to end: the outcome a trial item puts on its report is the outcome the
controller reads back (under xdist too: plain values only), the JSON report's trial is that
outcome, and a shard's report gives it back; node ids are built and parsed in one place."""

from __future__ import annotations

import dataclasses
import json

from pytest_upskill.engine.nodeids import group_of, in_case_file, item_name, parse_nodeid
from pytest_upskill.plugin import wire
from pytest_upskill.results.aggregate import Aggregator, RunLedger, trial_outcome, trial_report
from pytest_upskill.results.report import ANSWER_CHARS
from pytest_upskill.types import Outcome

WORKSPACE = Outcome(
    "skill-a",
    "case-1",
    "m",
    "with_skill",
    2,
    passed=False,
    message="contains: missing ['x']",
    output="y" * (ANSWER_CHARS + 10),
    input_tokens=120,
    output_tokens=30,
    cache_read_tokens=100,
    error_kind=None,
    turns=3,
    tool_calls=2,
    calls=["write_file a.txt", "list_files"],
    written=["a.txt"],
    skill_loaded=True,
    hit_max_tokens=True,
    note="a note",
)


def _through_a_report(outcome: Outcome, thresholds=None) -> wire.Received:
    properties = json.loads(json.dumps(wire.properties(outcome, thresholds)))  # what xdist could send
    detail = json.loads(json.dumps(wire.detail(outcome)))
    received = wire.received([tuple(p) for p in properties], detail)
    assert received is not None
    return received


def test_an_outcome_reads_back_as_itself_with_its_answer_cut_and_its_length_kept():
    received = _through_a_report(WORKSPACE, {"min_lift": 0.2})
    expected = dataclasses.replace(WORKSPACE, output=WORKSPACE.output[:ANSWER_CHARS], output_chars=ANSWER_CHARS + 10)
    assert received.outcome == expected and received.thresholds == {"min_lift": 0.2}
    error = Outcome("s", "c", "m", "baseline", 1, passed=None, error_kind="timeout", message="120 s")
    assert _through_a_report(error).outcome == dataclasses.replace(error, output_chars=0)


def test_every_field_of_the_outcome_travels_without_an_edit_of_the_codec():
    names = {f.name for f in dataclasses.fields(Outcome)}
    assert set(wire.PROPERTIES) | set(wire.DETAIL) == names
    assert not set(wire.PROPERTIES) & set(wire.DETAIL)
    assert wire.received([("other.key", 1)]) is None  # a report that is not a trial's


def test_the_json_reports_trial_is_the_outcome_and_a_shard_gives_it_back():
    trial = trial_report(WORKSPACE)
    assert trial.answer == "y" * ANSWER_CHARS and trial.answer_chars == ANSWER_CHARS + 10
    assert (trial.turns, trial.calls, trial.skill_loaded, trial.note) == (3, WORKSPACE.calls, True, "a note")
    back = trial_outcome("skill-a", "m", "case-1", trial)
    assert back == dataclasses.replace(WORKSPACE, output=trial.answer, output_chars=trial.answer_chars, cached=False)
    aggregator = Aggregator()
    aggregator.add(back)
    report = aggregator.report()
    assert report.results[0].cases[0].trials[0] == trial


def test_node_ids_are_built_and_parsed_in_one_place():
    one = "skills/a/skill_meta.json::" + item_name("case-1", "m", "baseline")
    several = "skills/a/tests.json::" + item_name("c[x]", "openai-m", "with_skill", 3)
    assert one == "skills/a/skill_meta.json::case-1[m-baseline]"
    assert parse_nodeid(one) == ("skills/a/skill_meta.json", "case-1", "m", "baseline", None)
    assert parse_nodeid(several) == ("skills/a/tests.json", "c[x]", "openai-m", "with_skill", 3)
    assert group_of(several) == ("skills/a/tests.json", "openai-m")
    assert parse_nodeid("tests/test_x.py::test_y[a-baseline]") is None
    assert group_of("tests/test_x.py::test_y") == ("tests/test_x.py", "")
    assert in_case_file(several) and not in_case_file("tests/test_x.py::test_y")


def test_the_ledger_expects_the_trials_of_upskills_tests_json_too():
    # before: only skill_meta.json's items were expected, so a tests.json trial lost with a crashed
    # worker was never reported missing
    ledger = RunLedger()
    ledger.expect(["skills/a/tests.json::c[m-baseline]", "tests/test_x.py::test_y"])
    assert ledger.missing() == ["skills/a/tests.json::c[m-baseline]"]
