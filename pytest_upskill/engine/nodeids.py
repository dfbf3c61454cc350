"""Trial node ids, built and parsed here only: ``FILE::CASE[LABEL-ARM]``, or ``FILE::CASE[LABEL-ARM-runN]``
when a run has several runs. The trials name their items with :func:`item_name`; the scheduler, the
shards, the ledger and the progress lines read them back with :func:`parse_nodeid`."""

from __future__ import annotations

import re
from typing import NamedTuple

from pytest_upskill.skills.skill_md import EVALS_FILE
from pytest_upskill.types import Arm

CASE_FILES = ("skill_meta.json", "tests.json")  # upskill's case files beside a SKILL.md, the first found is used
# a trial's node id: FILE::CASE[LABEL-ARM], or FILE::CASE[LABEL-ARM-runN] when a run has several runs
_NODE_ID = re.compile(
    r"^(?P<file>[^:]*)::(?P<case>.*)\[(?P<label>.*)-(?P<arm>"
    + "|".join(sorted((re.escape(str(arm)) for arm in Arm), key=len, reverse=True))
    + r")(?:-run(?P<run>\d+))?\]$"
)


class TrialId(NamedTuple):
    """What a trial's node id says: its case file, case, model label, arm and run (None: one run)."""

    file: str
    case: str
    label: str
    arm: str
    run: int | None


def item_name(case: str, label: str, arm: str, run: int | None = None) -> str:
    """A trial item's name: ``CASE[LABEL-ARM]`` or ``CASE[LABEL-ARM-runN]``."""
    return f"{case}[{label}-{arm}" + (f"-run{run}" if run is not None else "") + "]"


def in_case_file(nodeid: str) -> bool:
    """Whether a node id is an item of a case file (a trial, or a case that stands skipped for its
    trials): skill_meta.json, tests.json, or skill-creator's evals/evals.json."""
    if "::" not in nodeid:
        return False
    file = nodeid.split("::", 1)[0]
    return file.rsplit("/", 1)[-1] in CASE_FILES or file == EVALS_FILE or file.endswith("/" + EVALS_FILE)


def group_of(nodeid: str) -> tuple[str, str]:
    """The skill × model of a trial's node id (its case file and its model's label); another
    test's file, with no model (what the scheduler and the shards keep together)."""
    found = parse_nodeid(nodeid)
    return (found.file, found.label) if found is not None else (nodeid.split("::", 1)[0], "")


def parse_nodeid(nodeid: str) -> TrialId | None:
    """The parts of a trial's node id; None for any other node."""
    match = _NODE_ID.match(nodeid)
    if match is None or not in_case_file(nodeid):
        return None
    return TrialId(
        match["file"], match["case"], match["label"], match["arm"], int(match["run"]) if match["run"] else None
    )
