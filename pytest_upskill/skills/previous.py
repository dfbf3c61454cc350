"""``--upskill-against REF``: the skills as they were at a git ref, or in a folder, so that the skill
at REF runs as the ``previous`` arm beside the working tree's (engine/arms.py).

A skill's status against REF: ``changed`` (its SKILL.md or one of its files differs: it gets a
previous arm), ``same`` (no separate previous arm: its with-skill trials are the previous arm),
``new`` (not at REF: no previous arm), or ``unreadable`` (its SKILL.md at REF does not parse, or
its files there cannot be written out safely: a link out of the folder is refused). A
skill at REF with no SKILL.md in the working tree is deleted, and named.

Only the skill's own files count (its SKILL.md and what ``read_skill`` serves): a pull request that
adds cases leaves the skill the same, and the new cases run in every arm.
"""

from __future__ import annotations

import enum
import io
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pytest_upskill.errors import GitError, SkillFileError
from pytest_upskill.skills.changes import git_bytes, git_lines, work_tree
from pytest_upskill.skills.skill_md import NOT_SERVED, Skill, files_inside, load_skill, skill_md_in

MAX_FILE = 4 * 1024 * 1024  # a skill file's bytes compared at most


class Status(enum.StrEnum):
    CHANGED = "changed"
    SAME = "same"
    NEW = "new"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Previous:
    status: Status
    skill: Skill | None = None  # the skill at REF, where it changed


def fingerprint(folder: Path) -> tuple[object, ...]:
    """What makes a skill the same skill: its SKILL.md and the files read_skill serves."""
    md = skill_md_in(folder)
    body = md.read_bytes() if md is not None else b""
    return body, tuple(files_inside(folder, ".", MAX_FILE, count=500, leave_out=NOT_SERVED))


class Against:
    """The skills at ``ref``: a folder (laid out as the rootdir, or holding the skill folders by
    name), else a git ref of the repository around ``root``, whose skill folders are written into a
    temporary folder as they are asked for (removed by :meth:`close`)."""

    def __init__(self, root: Path, ref: str, where: Path, spec: str = "error"):
        self.root = root.resolve()
        self.ref = ref
        self.spec = spec
        given = Path(where, ref)
        self.folder: Path | None = given.resolve() if given.is_dir() else None
        self.top: Path | None = None
        self._tmp: Path | None = None
        if self.folder is None:
            self.top = work_tree(self.root, ref, "{ref!r} is neither a folder nor a git ref").resolve()
        self._seen: dict[Path, Previous] = {}

    def _at_ref(self, skill_dir: Path) -> Path | None:
        """The skill's folder as it was, or None where there was none."""
        if self.folder is not None:
            relative = skill_dir.relative_to(self.root) if skill_dir.is_relative_to(self.root) else None
            for candidate in ([self.folder / relative] if relative else []) + [self.folder / skill_dir.name]:
                if skill_md_in(candidate) is not None:
                    return candidate
            return None
        assert self.top is not None
        if not skill_dir.is_relative_to(self.top):
            return None
        inside = skill_dir.relative_to(self.top).as_posix()
        if not git_lines(self.top, "ls-tree", "--name-only", self.ref, "--", f"{inside}/"):
            return None
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="upskill-against-"))
        archive = git_bytes(self.top, "archive", "--format=tar", self.ref, "--", inside, timeout=120)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(self._tmp, filter="data")  # no link or path out of the folder
        found = self._tmp / inside
        return found if skill_md_in(found) is not None else None

    def previous(self, skill_dir: Path) -> Previous:
        """The skill in ``skill_dir`` (the working tree's) at REF, and whether it changed."""
        skill_dir = skill_dir.resolve()
        if skill_dir not in self._seen:
            try:
                then = self._at_ref(skill_dir)
            except (tarfile.TarError, OSError, GitError):  # a link out of the folder, a broken archive
                self._seen[skill_dir] = Previous(Status.UNREADABLE)
                return self._seen[skill_dir]
            if then is None:
                found = Previous(Status.NEW)
            elif fingerprint(then) == fingerprint(skill_dir):
                found = Previous(Status.SAME)
            else:
                md = skill_md_in(then)
                assert md is not None
                try:
                    found = Previous(Status.CHANGED, load_skill(md, self.spec))
                except SkillFileError:
                    found = Previous(Status.UNREADABLE)
            self._seen[skill_dir] = found
        return self._seen[skill_dir]

    def of(self, skill: Skill) -> Previous:
        """:meth:`previous` of a loaded skill (its folder)."""
        return self.previous(skill.path.parent)

    def deleted(self, present: set[Path]) -> list[str]:
        """The skill folders at REF (relative to the rootdir) with no SKILL.md in the working tree,
        among those under the folders in ``present`` (where this run looked for skills)."""
        if self.folder is not None:
            then = {p.parent.relative_to(self.folder) for p in self.folder.rglob("SKILL.md")}
            names = {p.name for p in present}
            return sorted(r.as_posix() for r in then if skill_md_in(self.root / r) is None and r.name not in names)
        assert self.top is not None
        listed = git_lines(self.top, "ls-tree", "-r", "--name-only", self.ref)
        gone = []
        for name in listed:
            path = Path(name)
            if path.name not in ("SKILL.md", "skill.md"):
                continue
            folder = (self.top / path).parent
            if not folder.is_relative_to(self.root) or skill_md_in(folder) is not None:
                continue
            if any(folder == p or p in folder.parents for p in present):
                gone.append(folder.relative_to(self.root).as_posix())
        return sorted(set(gone))

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
