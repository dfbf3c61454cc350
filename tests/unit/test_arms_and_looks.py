"""Pure logic of issue 31: the arms' table, the placebo, the control sample, the looks' levels and
the scheduler's whole shares."""

from __future__ import annotations

from pathlib import Path
from statistics import NormalDist

import pytest

from pytest_upskill.engine.arms import ARMS, control_sample, placebo
from pytest_upskill.engine.nodeids import item_name, parse_nodeid
from pytest_upskill.plugin.scheduler import shares
from pytest_upskill.results import stats
from pytest_upskill.skills.skill_md import Skill
from pytest_upskill.types import Arm


@pytest.mark.parametrize("arm", list(Arm))
def test_every_arm_is_described_once_and_its_node_id_reads_back(arm):
    assert ARMS[arm].arm == arm
    nodeid = "skills/a/skill_meta.json::" + item_name("c1", "haiku-local", arm, 3)
    assert parse_nodeid(nodeid) == ("skills/a/skill_meta.json", "c1", "haiku-local", arm, 3)


def test_the_placebo_keeps_the_length_name_and_description_and_says_nothing_of_the_skill():
    skill = Skill(
        name="commits",
        description="Write commit messages.",
        body="Use feat: and fix:. " * 40,
        path=Path("x/SKILL.md"),
        frontmatter={},
    )
    fake = placebo(skill)
    assert len(fake.body) == len(skill.body)
    assert (fake.name, fake.description) == (skill.name, skill.description)
    assert "feat" not in fake.body and "commit" not in fake.body


def test_the_control_sample_is_the_same_whatever_the_order_and_at_most_twenty():
    keys = [f"case-{i}" for i in range(30)]
    first = control_sample(keys)
    assert len(first) == 20 and control_sample(list(reversed(keys))) == first
    assert control_sample(keys[:4]) == set(keys[:4])


@pytest.mark.parametrize("looks", [2, 3, 4, 6])
def test_the_looks_spend_exactly_the_one_sided_error(looks):
    spent = [1 - NormalDist().cdf(stats.sequential_level(k, looks).z) for k in range(1, looks + 1)]
    assert sum(spent) == pytest.approx(0.025)
    assert spent == sorted(spent)  # little early, most at the last look
    assert stats.sequential_level(1, 1) == stats.LEVEL95


def test_whole_shares_never_split_a_skill_and_model():
    collection = [f"s{g}/skill_meta.json::c{i}[m-baseline-run{r}]" for g in range(5) for i in range(3) for r in (1, 2)]
    cut = shares(collection, range(len(collection)), 2, whole=True)
    groups = [{collection[i].split("/")[0] for i in share} for share in cut]
    assert not groups[0] & groups[1] and all(cut)
    assert sorted(i for share in cut for i in share) == list(range(len(collection)))
