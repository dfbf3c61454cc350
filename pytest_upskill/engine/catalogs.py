"""The catalogs a run's trigger cases are offered: the skills now, and (``--upskill-against REF``)
the same skills with their names and descriptions as they were at REF, each read once per run and
served by ``read_skill`` as it serves a skill under progressive disclosure.

A description is what decides whether a skill is loaded, so a pull request that changes one can
stop another skill from triggering (its blast radius): where a description of the catalog changed
since REF, the trigger cases of every skill run (--upskill-changed-since collects them), and under
--upskill-against each runs in both catalogs, paired (the previous_trigger arm).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from pytest_upskill.engine.agent import SkillFiles
from pytest_upskill.skills.catalog import Catalog
from pytest_upskill.skills.previous import Previous, Status
from pytest_upskill.skills.skill_md import Skill


@dataclass(frozen=True)
class Offering:
    """One catalog as a trigger trial gets it: the skills listed, and what read_skill serves."""

    skills: tuple[Skill, ...]
    files: tuple[SkillFiles, ...]


class Catalogs:
    """The run's catalog (found lazily, on the first trigger case), now and at REF."""

    def __init__(self, find: Callable[[], Catalog], at_ref: Callable[[Skill], Previous] | None = None):
        self._find = find
        self._at_ref = at_ref
        self._files: dict[tuple[str, str, str, str], SkillFiles] = {}

    @functools.cached_property
    def catalog(self) -> Catalog:
        return self._find()

    def _offering(self, skills: tuple[Skill, ...]) -> Offering:
        files = []
        for s in skills:
            key = (str(s.path), s.name, s.description, s.body)
            if key not in self._files:
                self._files[key] = SkillFiles.load(s)
            files.append(self._files[key])
        return Offering(skills, tuple(files))

    def now(self, skill: Skill) -> Offering:
        """The catalog a trigger case of ``skill`` runs among, the skill as it is now."""
        return self._offering(self.catalog.around(skill))

    def _then(self, skill: Skill) -> Skill | None:
        """``skill`` as it was at REF (None: not there, or unreadable there)."""
        assert self._at_ref is not None
        previous = self._at_ref(skill)
        if previous.status == Status.SAME:
            return skill
        return previous.skill if previous.status == Status.CHANGED else None

    @functools.cached_property
    def changed(self) -> tuple[str, ...]:
        """The catalog's skills whose name and description differ at REF (or that are new since)."""
        if self._at_ref is None:
            return ()
        found = []
        for s in self.catalog.skills:
            then = self._then(s)
            if then is None or (then.name, then.description) != (s.name, s.description):
                found.append(s.name)
        return tuple(found)

    def then(self, skill: Skill) -> Offering | None:
        """The catalog at REF for a trigger case of ``skill``: None where its listing is the same as
        now (nothing to compare) or ``skill`` was not there."""
        if self._at_ref is None:
            return None
        own = self._then(skill)
        if own is None:
            return None
        listed = [t for s in self.catalog.skills if s.name != skill.name and (t := self._then(s)) is not None]
        skills = tuple(sorted([*listed, own], key=lambda s: s.name))
        if _listing(skills) == _listing(self.catalog.around(skill)):
            return None
        return self._offering(skills)


def _listing(skills: tuple[Skill, ...]) -> list[tuple[str, str]]:
    return [(s.name, s.description) for s in skills]
