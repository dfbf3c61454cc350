"""--upskill-against reads the skills as they were at a git ref: a file there is written out of git
into a temporary folder, and nothing in it may leave that folder or crash the run."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from pytest_upskill.testing import LoopbackServer


def git(path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True)


def test_a_link_out_of_the_skill_folder_at_the_ref_is_refused_not_followed(pytester, write_skill):
    folder = write_skill("alpha", [{"id": "c0", "input": "q", "expected": {"contains": "PASS"}}], body="Say PASS.")
    os.symlink("/etc/passwd", folder / "reference.md")  # committed as a link pointing out of the repository
    git(pytester.path, "init", "-q", "-b", "main")
    git(pytester.path, "-c", "user.email=t@e", "-c", "user.name=t", "add", "-A")
    git(pytester.path, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "-m", "main")
    (folder / "reference.md").unlink()
    (folder / "SKILL.md").write_text("---\nname: alpha\ndescription: Test skill alpha.\n---\n\nSay no.\n")
    with LoopbackServer() as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-against",
            "main",
            "--upskill-injection",
            "progressive",
        )
        sent = json.dumps([r.body for r in server.requests])
    result.stdout.fnmatch_lines(
        [
            "NOT COMPARED alpha × *: it cannot be read at main (its SKILL.md does not parse, or a file leaves its "
            "folder)*"
        ]
    )
    assert "root:" not in sent  # /etc/passwd was never read into a request
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # not compared and no gate: never green
