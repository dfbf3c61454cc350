"""The arms, each described once: what it offers the model in the skill's place, on which cases it
runs, and how it is read. A new arm is one :class:`Arm` member and one row of :data:`ARMS`; the
trials (trials.py), the aggregation (results/aggregate.py) and the text (render/) read the row.

    baseline          no skill                                           every case
    with_skill        the working tree's skill                           every case
    previous          the skill as it was at --upskill-against REF       every case, where it changed
    placebo           a neutral text of the skill's length, in its place every case  (--upskill-controls)
    aa_control        the working tree's skill again (A/A)               a sample    (--upskill-controls)
    positive_control  the skill, and a request that names it             a sample    (--upskill-controls,
                                                                                      progressive disclosure)
    trigger           the catalog: every skill by name and description   trigger cases only
    previous_trigger  the catalog with the descriptions as at REF        trigger cases, where a description
                                                                          changed (--upskill-against REF)

Every arm shares the baseline's byte-identical scaffolding; only what stands in the skill's place
differs (and the positive control's user message, which names the skill). A trigger case runs only
the trigger arms, and every other case only the others.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_upskill.skills.skill_md import Skill
from pytest_upskill.types import Arm


class Offers(enum.StrEnum):
    """What an arm puts where the skill goes."""

    NOTHING = "nothing"
    SKILL = "skill"  # the working tree's
    PREVIOUS = "previous"  # the skill at --upskill-against
    PLACEBO = "placebo"
    CATALOG = "catalog"  # every skill of the catalog by name and description, and read_skill (trigger cases)
    PREVIOUS_CATALOG = "previous_catalog"  # the same, each description as it was at --upskill-against


@dataclass(frozen=True)
class ArmDef:
    arm: Arm
    label: str  # in a sentence and a column: "with skill"
    offers: Offers
    control: bool = False  # a validity control: its failure says the harness is broken, not the skill
    sampled: bool = False  # runs on the control sample of cases only (control_sample)
    names_skill: bool = False  # the user message names the skill; the trial passes when the skill is loaded
    cache_salt: str | None = None  # its requests equal another arm's: a cache key of its own, or it would replay them
    tested: bool = False  # what the run tests: a failed trial fails the run (others are points of comparison)
    trigger: bool = False  # runs the trigger cases, and only them
    # read against the with-skill arm on the cases both scored: the report's field for that
    # comparison, what the text calls with skill minus this arm, and its interval's confidence
    compared: str | None = None
    difference: str = ""
    confidence: float = 0.95


ARMS: dict[Arm, ArmDef] = {
    d.arm: d
    for d in (
        ArmDef(Arm.BASELINE, "baseline", Offers.NOTHING),
        ArmDef(Arm.WITH_SKILL, "with skill", Offers.SKILL, tested=True),
        ArmDef(Arm.PREVIOUS, "previous", Offers.PREVIOUS, compared="change", difference="change"),
        ArmDef(
            Arm.PLACEBO, "placebo", Offers.PLACEBO, control=True, compared="over_placebo", difference="skill − placebo"
        ),
        ArmDef(  # 99%: a sound harness is called invalid about 1% of the time (benchmarks/controls.py)
            Arm.AA_CONTROL,
            "A/A",
            Offers.SKILL,
            control=True,
            sampled=True,
            cache_salt="aa_control",
            compared="aa_difference",
            difference="skill − A/A",
            confidence=0.99,
        ),
        ArmDef(Arm.POSITIVE_CONTROL, "named", Offers.SKILL, control=True, sampled=True, names_skill=True),
        ArmDef(Arm.TRIGGER, "trigger", Offers.CATALOG, tested=True, trigger=True),
        ArmDef(Arm.PREVIOUS_TRIGGER, "previous trigger", Offers.PREVIOUS_CATALOG, trigger=True),
    )
}
assert set(ARMS) == set(Arm), "every arm is described once"
COMPARED = tuple(d for d in ARMS.values() if d.compared)  # the arms read against the with-skill arm

CONTROL_CASES = 20  # the A/A and positive controls run on at most this many cases of a skill (benchmarks/controls.py)


def control_sample(case_keys: Sequence[str], size: int = CONTROL_CASES) -> set[str]:
    """The cases the sampled controls run on: all of them up to ``size``, else ``size`` chosen by
    a hash of their names (the same cases in every run and every process, whatever their order)."""
    if len(case_keys) <= size:
        return set(case_keys)
    return set(sorted(case_keys, key=lambda k: hashlib.sha256(k.encode()).hexdigest())[:size])


def names_skill(skill: Skill, text: str) -> str:
    """The positive control's user message: the case's, after a line that asks for the skill by name."""
    return f"Use the {skill.name} skill for this.\n\n{text}"


# A text that tells the model nothing about any task: general facts, repeated to the skill's length.
_NEUTRAL = (
    "Notes. Paper was first made in China about two thousand years ago from bark, hemp and rags. "
    "The oldest surviving maps were drawn on clay tablets. Lighthouses once burned wood, then oil, "
    "and later used electric lamps behind large glass lenses. A common garden snail moves about one "
    "metre an hour. Honey kept in a sealed jar stays edible for a very long time. The first public "
    "libraries lent scrolls rather than bound books. Rivers carry fine sand to the sea, where it "
    "settles in layers over many years. "
)


def placebo(skill: Skill) -> Skill:
    """The skill with its instructions replaced by a neutral text of the same length (in
    characters): the placebo arm measures what a longer prompt does, apart from what the skill says.
    Its name and description stay, so that progressive disclosure lists the same entry."""
    length = len(skill.body)
    text = (_NEUTRAL * (length // len(_NEUTRAL) + 1))[:length]
    return skill.model_copy(update={"body": text})
