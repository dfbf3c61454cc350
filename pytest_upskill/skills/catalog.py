"""The catalog a trigger case runs among: the skills an agent would have installed beside the one
under test, each offered by name and description (as agents list them), each loadable with
``read_skill``. By default every skill under the paths pytest collects (agent folders such as
``.claude/skills`` included, other hidden folders not); ``--upskill-catalog DIR`` names another
folder. The skill under test is always in it, as it is in the working tree.

A SKILL.md of the catalog that cannot be read is left out and said (it would not load in an agent
either); two skills of one name keep the first found, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_upskill.errors import SkillFileError
from pytest_upskill.skills.discovery import is_agent_folder
from pytest_upskill.skills.skill_md import Skill, load_skill, skill_md_in

_NEVER = {"node_modules", "__pycache__", "site-packages", "venv", "build", "dist"}
MAX_SKILLS = 500  # in one catalog: an agent's listing of more is not what a trigger case measures


@dataclass(frozen=True)
class Catalog:
    """The skills found, sorted by name, and what was left out (``path: why``)."""

    skills: tuple[Skill, ...] = ()
    problems: tuple[str, ...] = field(default=(), compare=False)

    def names(self) -> list[str]:
        return [s.name for s in self.skills]

    def around(self, skill: Skill) -> tuple[Skill, ...]:
        """The catalog a trigger case of ``skill`` runs among: ``skill`` as loaded now in its place
        (or added where the catalog lacks it), the others as found, sorted by name."""
        others = [s for s in self.skills if s.name != skill.name]
        return tuple(sorted([*others, skill], key=lambda s: s.name))


def find_catalog(roots: Iterable[Path], spec: str = "error", skill_folders: Sequence[str] = ()) -> Catalog:
    """Every skill beneath ``roots`` (folders; a file stands for the folder above its skill)."""
    found: dict[str, Skill] = {}
    problems: list[str] = []
    seen: set[Path] = set()
    for root in roots:
        for folder in _skill_folders(root, skill_folders):
            real = folder.resolve()
            if real in seen:
                continue
            seen.add(real)
            skill_md = skill_md_in(folder)
            if skill_md is None:
                continue
            try:
                skill = load_skill(skill_md, spec)
            except SkillFileError as exc:
                problems.append(f"{skill_md}: left out of the catalog: {exc.message}")
                continue
            if skill.name in found:
                problems.append(
                    f"{skill_md}: left out of the catalog: a skill named {skill.name!r} is already in it "
                    f"({found[skill.name].path})"
                )
                continue
            found[skill.name] = skill
            if len(found) >= MAX_SKILLS:
                problems.append(f"the catalog holds the first {MAX_SKILLS} skills found; the rest are left out")
                return Catalog(tuple(sorted(found.values(), key=lambda s: s.name)), tuple(problems))
    return Catalog(tuple(sorted(found.values(), key=lambda s: s.name)), tuple(problems))


def _skill_folders(root: Path, skill_folders: Sequence[str]) -> Iterable[Path]:
    if root.is_file():
        root = root.parent.parent if skill_md_in(root.parent) is not None else root.parent
    if not root.is_dir():
        return
    for here, dirs, _files in os.walk(root, followlinks=False):
        path = Path(here)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in _NEVER
            and not (path / d).is_symlink()
            and (not d.startswith(".") or is_agent_folder(path / d, skill_folders))
        )
        yield path
