"""pytest_upskill.testing is public: a user's own tests run their skills, checks and CI set-up
offline against its server, through the fixture it registers (issue 15, part 5)."""

from __future__ import annotations

import textwrap

from pytest_upskill import testing
from pytest_upskill.engine import prompt
from pytest_upskill.scoring import validators


def test_a_users_suite_tests_its_skills_and_custom_check_offline(pytester, write_skill):
    write_skill(
        "shout",
        {"tests": [{"id": "loud", "input": "Say hello.", "expected": {"contains": "HELLO", "shouts": True}}]},
        body="Answer in capitals: HELLO THERE.",
    )
    pytester.makeconftest(
        textwrap.dedent("""
        pytest_plugins = ["pytest_upskill.testing"]

        def pytest_upskill_checks():
            return {"shouts": lambda output, wanted: (output.split(":")[-1].strip().isupper()) == wanted}
    """)
    )
    pytester.makepyfile(
        test_ci=textwrap.dedent("""
        import subprocess
        import sys

        def test_the_skills_pass_offline(upskill_model_server):
            model = f"openai:m@{upskill_model_server.openai_base_url}"
            command = [sys.executable, "-m", "pytest", "skills", "-p", "no:cacheprovider", "--upskill-models", model,
                       "--upskill-cache", "off", "--upskill-min-lift", "0.5", "--upskill-lenient"]
            done = subprocess.run(command, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout  # one case shows nothing at 95%: decided on the estimate
            assert "upskill: exit status 0: every gate passed, some only on the point estimate" in done.stdout
            assert len(upskill_model_server.requests) == 2  # one per arm, and nothing reached the network
    """)
    )
    result = pytester.runpytest("test_ci.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_server_reads_the_plugins_own_formats():
    """The loopback server's patterns are the prompt's and the judge's, not copies."""
    assert testing.SKILL_BLOCK is prompt.SKILL_BLOCK_PATTERN and testing.LISTED_SKILLS is prompt.LISTED_SKILLS_PATTERN
    assert testing.FILE_BLOCK is prompt.FILE_BLOCK_PATTERN
    assert testing.RUBRIC is validators.RUBRIC_PATTERN and testing.SUBMISSION is validators.SUBMISSION_PATTERN
    skill = prompt.Skill(
        name="s", description="d", body="Use `x`.\n\n```a.txt\nhi\n```", path="SKILL.md", frontmatter={}
    )
    assert testing.SKILL_BLOCK.search(prompt.skill_block(skill)).group(1) == skill.body
    assert testing.LISTED_SKILLS.findall(prompt.skill_block(skill, "progressive")) == ["s"]
    assert testing.LISTED_SKILLS.findall(prompt.skill_block(skill)) == []  # injected, not listed
    assert testing.FILE_BLOCK.findall(skill.body) == [("a.txt", "hi")]
