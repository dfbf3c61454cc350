"""``--upskill-changed-since REF``: which skill folders changed since a git ref (committed,
staged, unstaged or untracked)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .core import UpskillError


class GitError(UpskillError):
    pass


def _git(root: Path, *args: str) -> list[str]:
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        raise GitError(done.stderr.strip() or f"git {' '.join(args)} failed")
    return [line for line in done.stdout.splitlines() if line]


def changed_files(root: Path, ref: str) -> set[Path]:
    """Absolute paths of the files that differ from ``ref``, in the git work tree around ``root``."""
    top = Path(_git(root, "rev-parse", "--show-toplevel")[0])
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitError:
        raise GitError(
            f"unknown git ref {ref!r}; fetch it first (in CI: git fetch origin main, then use origin/main)"
        ) from None
    names = _git(root, "diff", "--name-only", ref, "--") + _git(root, "ls-files", "--others", "--exclude-standard")
    return {(top / name).resolve() for name in names}


def is_changed(skill_dir: Path, changed: set[Path]) -> bool:
    skill_dir = skill_dir.resolve()
    return any(skill_dir == path.parent or skill_dir in path.parents for path in changed)
