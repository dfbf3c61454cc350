"""The pull request's check as one experiment (issue 31): the skill at a git ref as the ``previous``
arm beside no skill and the working tree's, on the same cases; validity controls; sampling until
decided. The model is a loopback server whose answer follows the skill text it is given, so a
skill's edit changes its pass rate, and a git repository is made in each test."""

from __future__ import annotations

import json
import subprocess

import pytest

from pytest_upskill.testing import LoopbackServer

GOOD = "Always answer with the word PASS."
WORSE = "Answer in as few words as you can."


def follows_the_skill(system: str, user: str) -> str:
    """PASS only where the system prompt holds the good skill's instruction."""
    return "PASS" if GOOD in system else "no"


def cases(n: int, tag: str = "") -> list[dict]:
    return [{"id": f"c{i}", "input": f"{tag}question {i}", "expected": {"contains": "PASS"}} for i in range(n)]


def git(path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True)
    return done.stdout


def commit_all(path, message: str = "main") -> None:
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", "main")
        git(path, "config", "user.email", "t@example.com")
        git(path, "config", "user.name", "t")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)


@pytest.fixture
def server():
    with LoopbackServer(reply=follows_the_skill) as s:
        yield s


def upskill(pytester, server, *args: str):
    return pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", *args)


def report(pytester, name: str = "r.json") -> dict:
    return json.loads((pytester.path / name).read_text())


def test_against_a_ref_the_skill_as_it_was_is_a_third_arm_and_a_worse_edit_is_a_regression(
    pytester, write_skill, server
):
    write_skill("alpha", cases(8), body=GOOD)
    write_skill("beta", cases(3, "b "), body=GOOD)
    write_skill("delta", cases(2, "d "), body=GOOD)
    commit_all(pytester.path)
    write_skill("alpha", cases(8), body=WORSE)  # the pull request makes alpha worse,
    write_skill("gamma", cases(2, "g "), body=GOOD)  # adds gamma,
    subprocess.run(["rm", "-r", str(pytester.path / "skills" / "delta")], check=True)  # and deletes delta
    (pytester.path / "skills" / "beta" / "skill_meta.json").write_text(json.dumps(cases(4, "b ")))  # a new case

    result = upskill(pytester, server, "--upskill-against", "main", "--upskill-report", "r.json")

    result.stdout.fnmatch_lines(
        [
            "alpha × *",
            "  baseline  * 0%",
            "  with skill * 0%  lift +0%*",
            "  previous  *   8/8  * 100%  change -100% ?95% CI *] on 8 case(s)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "REGRESSION   alpha × *: pass rate, previous (main) → with skill on the 8 shared case(s) 100% → 0% "
            "(change -100%, 95% CI *): a drop of more than 10% is shown",
            "MOVED        alpha × *: case c0: passed with the previous skill, fails now (shown for review; never fails "
            "the run)",
            "UNCHANGED    beta × *: the same at main: no separate previous arm (its with-skill trials are the previous "
            "arm), so there is no change to judge",
            "NOT COMPARED gamma × *: new since main: no previous arm to compare with; set a gate (--upskill-min-lift) "
            "to judge it",
            "DELETED      skills/delta × -: a skill at main, with no SKILL.md now: deleted",
            "upskill: exit status 1 because 1 regression(s) shown (REGRESSION and NOT SHOWN above); 1 skill × model(s) "
            "could not be compared and have no gate of their own (NOT COMPARED above)",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    data = report(pytester)
    by_skill = {r["skill"]: r for r in data["results"]}
    alpha, beta, gamma = by_skill["alpha"], by_skill["beta"], by_skill["gamma"]
    assert alpha["against"] == "changed" and alpha["previous"]["passed"] == 8
    assert alpha["change"]["difference"] == -1.0 and alpha["change"]["cases"] == 8
    assert alpha["cases"][0]["previous"] == [True]
    assert beta["against"] == "same" and "previous" not in beta and beta["paired_cases"] == 4  # the new case runs
    assert gamma["against"] == "new" and "previous" not in gamma
    assert data["against"] == {"ref": "main", "deleted": ["skills/delta"]}
    # every arm's system prompt is the scaffold plus at most one skill block: previous sent the old text
    previous = [r for r in server.requests if GOOD in json.dumps(r.body) and "question" in json.dumps(r.body)]
    assert any("alpha" in json.dumps(r.body) for r in previous)


def test_a_pull_request_that_edits_one_of_ten_skills_sends_only_that_skills_requests_with_mains_cache(
    pytester, write_skill, server
):
    for k in range(10):
        write_skill(f"skill-{k}", cases(3, f"s{k} "), body=GOOD)
    commit_all(pytester.path)
    main = upskill(pytester, server, "--upskill-report", "main.json")  # main's CI run fills the cache
    assert main.ret == pytest.ExitCode.OK
    sent_on_main = len(server.requests)
    assert sent_on_main == 10 * 3 * 2
    write_skill("skill-4", cases(3, "s4 "), body=GOOD + " Be brief.")  # the pull request edits one skill

    pr = upskill(pytester, server, "--upskill-against", "main", "--upskill-max-regression", "0.1")

    assert len(server.requests) - sent_on_main == 3  # only skill-4's with-skill trials: the rest replayed
    pr.stdout.fnmatch_lines(
        [
            "UNCHANGED    skill-0 × *",
            "INCONCLUSIVE skill-4 × *: pass rate, previous (main) → with skill on the 3 shared case(s) 100% → 100% "
            "(change +0%, 95% CI -56% to +56%): not shown to be no worse than -10%, nor worse: more cases or runs "
            "decide it (fails*",
            "UNCHANGED    skill-9 × *",
        ]
    )
    assert pr.ret == pytest.ExitCode.TESTS_FAILED  # three cases cannot show it: honest, and says what decides it


def test_against_a_folder_of_the_skills_as_they_were(pytester, write_skill, server):
    old = write_skill("alpha", cases(4), body=GOOD)
    saved = pytester.path / "main-skills"
    subprocess.run(["cp", "-r", str(old.parent), str(saved)], check=True)
    write_skill("alpha", cases(4), body=WORSE)

    result = upskill(pytester, server, "--upskill-against", "main-skills", "--upskill-report", "r.json")

    assert report(pytester)["results"][0]["previous"]["passed"] == 4
    result.stdout.fnmatch_lines(["REGRESSION   alpha × *: pass rate, previous (main-skills) → with skill *"])


def test_an_unknown_ref_is_a_usage_error_before_any_request(pytester, write_skill, server):
    write_skill("alpha", cases(2), body=GOOD)
    commit_all(pytester.path)
    result = upskill(pytester, server, "--upskill-against", "no-such-branch")
    result.stderr.fnmatch_lines(["*--upskill-against no-such-branch: 'no-such-branch' is neither a folder nor a git ref*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert server.requests == []
