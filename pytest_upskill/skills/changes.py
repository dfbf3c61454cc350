"""``--upskill-changed-since REF``: which skill folders changed since a git ref (committed,
staged, unstaged or untracked)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from pytest_upskill.errors import GitError


def git_bytes(root: Path, *args: str, timeout: float = 60) -> bytes:
    """What ``git ARGS`` prints in ``root``; :class:`GitError` with git's message where it fails."""
    try:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        raise GitError(done.stderr.decode(errors="replace").strip() or f"git {' '.join(args)} failed")
    return done.stdout


def git_lines(root: Path, *args: str, timeout: float = 60) -> list[str]:
    """The non-empty lines ``git ARGS`` prints in ``root``."""
    return [line for line in git_bytes(root, *args, timeout=timeout).decode().splitlines() if line]


def work_tree(root: Path, ref: str, unknown: str = "unknown git ref {ref!r}") -> Path:
    """The top of the git work tree around ``root``, once ``ref`` is known to name a commit there;
    else :class:`GitError` with ``unknown`` and what to do."""
    top = Path(git_lines(root, "rev-parse", "--show-toplevel")[0])
    try:
        git_lines(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except GitError:
        raise GitError(
            unknown.format(ref=ref) + "; fetch it first (in CI: git fetch origin main, then use origin/main)"
        ) from None
    return top


def changed_files(root: Path, ref: str) -> set[Path]:
    """Absolute paths of the files that differ from ``ref``, in the git work tree around ``root``."""
    top = work_tree(root, ref)
    names = git_lines(root, "diff", "--name-only", ref, "--") + git_lines(
        root, "ls-files", "--others", "--exclude-standard"
    )
    return {(top / name).resolve() for name in names}


def is_changed(skill_dir: Path, changed: set[Path]) -> bool:
    skill_dir = skill_dir.resolve()
    return any(skill_dir == path.parent or skill_dir in path.parents for path in changed)


def git_head(root: Path) -> tuple[str | None, str | None]:
    """The commit checked out around ``root`` and its branch, or None for what is not known (no
    git, not a repository, a detached head). In CI, whose checkout is often detached, the branch
    comes from the CI's own variables (GitHub Actions, GitLab CI)."""
    try:
        commit: str | None = git_lines(root, "rev-parse", "HEAD")[0]
    except (GitError, IndexError):
        commit = None
    try:
        branch: str | None = git_lines(root, "rev-parse", "--abbrev-ref", "HEAD")[0] if commit else None
    except (GitError, IndexError):
        branch = None
    if branch in (None, "HEAD"):
        branch = next(
            (os.environ[v] for v in ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME") if os.environ.get(v)),
            None,
        )
    return commit or os.environ.get("GITHUB_SHA") or os.environ.get("CI_COMMIT_SHA") or None, branch
