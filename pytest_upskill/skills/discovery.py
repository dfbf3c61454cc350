"""Where skills live besides ordinary folders, and the SKILL.md files a run did not collect.

Agents keep skills in hidden folders (``.claude/skills``, ``.agents/skills``, openai's
``skills/.curated``), which pytest does not enter (``norecursedirs`` has ``.*``). The plugin enters
the folders named by the ini option ``upskill_skill_folders`` and reports the SKILL.md files it
saw but did not collect: a skill with no ``skill_meta.json`` beside it, or one in another hidden
folder, so that a run which finds nothing says why.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from pathlib import Path

AGENT_FOLDERS = (
    ".claude/skills",
    ".agents/skills",
    ".github/skills",
    "skills/.curated",
    "skills/.system",
    "skills/.experimental",
)
# hidden folders that never hold a project's skills, and can be large: not searched for SKILL.md
_NOT_SEARCHED = {
    ".git",
    ".hg",
    ".svn",
    ".venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".upskill-cache",
    ".cache",
    ".idea",
    ".vscode",
    ".eggs",
    ".npm",
    ".yarn",
}
_SEARCH_DEPTH = 3  # .cursor/skills/NAME/SKILL.md is three levels below .cursor
SHOWN_UNSEEN = 50  # SKILL.md files named in the "not collected" line at most


def is_agent_folder(folder: Path, patterns: Sequence[str]) -> bool:
    """Whether the hidden ``folder`` is (or leads to) one of the ``patterns`` (``.claude/skills``):
    its last parts equal the first parts of a pattern, ending at a hidden part of it."""
    if not folder.name.startswith("."):
        return False
    parts = folder.parts
    for pattern in patterns:
        wanted = Path(pattern).parts
        for n in range(1, len(wanted) + 1):
            if (
                wanted[n - 1].startswith(".")
                and len(parts) >= n
                and all(fnmatch.fnmatchcase(part, want) for part, want in zip(parts[-n:], wanted[:n], strict=False))
            ):
                return True
    return False


def skill_mds_below(folder: Path) -> list[Path]:
    """SKILL.md files up to three levels below a hidden folder that the run does not enter (one
    walk, pruned at that depth; at most about a hundred)."""
    if folder.name in _NOT_SEARCHED:
        return []
    found: list[Path] = []
    for top, dirs, files in os.walk(folder):
        depth = len(Path(top).relative_to(folder).parts)
        if "SKILL.md" in files:
            found.append(Path(top, "SKILL.md"))
        if depth + 1 >= _SEARCH_DEPTH or len(found) > 100:
            dirs.clear()
    return sorted(found)


class Unseen:
    """SKILL.md files seen during collection that no item came from, with why."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # path (as shown) -> why

    def add(self, path: Path, why: str, base: Path) -> None:
        try:
            shown = str(path.relative_to(base))
        except ValueError:
            shown = str(path)
        self.files.setdefault(shown, why)

    def add_hidden(self, folder: Path, base: Path) -> None:
        """The SKILL.md files below a hidden ``folder`` the run does not enter, with the entry of
        upskill_skill_folders that would collect each."""
        for skill_md in skill_mds_below(folder):
            entry = skill_md.parent.parent.relative_to(folder.parent).as_posix()
            self.add(skill_md, f"in a hidden folder: add {entry!r} to the ini option upskill_skill_folders", base)

    def merge(self, files: dict[str, str]) -> None:
        for path, why in files.items():
            self.files.setdefault(path, why)

    def line(self) -> str | None:
        """One line: every file not collected (up to ``SHOWN_UNSEEN``), grouped by why."""
        if not self.files:
            return None
        listed = sorted(self.files.items())[:SHOWN_UNSEEN]
        groups: dict[str, list[str]] = {}  # why -> paths: each reason said once, every path named
        for path, why in listed:
            groups.setdefault(why, []).append(path)
        shown = [f"{', '.join(paths)} ({why})" for why, paths in groups.items()]
        more = f" and {len(self.files) - len(listed)} more" if len(self.files) > len(listed) else ""
        return f"upskill: {len(self.files)} SKILL.md file(s) found but not collected: " + "; ".join(shown) + more
