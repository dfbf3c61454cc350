"""skill-creator's evals/evals.json (issue 32, part 3): each eval a case, its expectations graded
by the judge model one by one with their evidence; its files given from the skill folder; no
judge, no verdict (skipped, never green). The model and the judge are a loopback server."""

from __future__ import annotations

import json

import pytest

from pytest_upskill.testing import LoopbackServer

# copied from anthropics/skills, skill-creator's references/schemas.md (the evals.json example)
SKILL_CREATOR_EXAMPLE = {
    "skill_name": "example-skill",
    "evals": [
        {
            "id": 1,
            "prompt": "User's example prompt",
            "expected_output": "Description of expected result",
            "files": ["evals/files/sample1.pdf"],
            "expectations": ["The output includes X", "The skill used script Y"],
        }
    ],
}


def write_evals(folder, evals) -> None:
    (folder / "evals").mkdir(exist_ok=True)
    (folder / "evals" / "evals.json").write_text(json.dumps(evals, indent=2))


def models(server, judge: bool = True) -> list[str]:
    args = ["--upskill-models", f"openai:m@{server.openai_base_url}"]
    return args + (["--upskill-judge-model", f"openai:judge@{server.openai_base_url}"] if judge else [])


def test_evals_json_expectations_are_graded_one_by_one_and_both_case_files_run(pytester, write_skill):
    folder = write_skill(
        "commits",
        {"tests": [{"id": "c1", "input": "a commit message?", "expected": {"contains": "feat:"}}]},
        body="Start the subject with feat: and add a Refs: footer.",
    )
    write_evals(
        folder,
        {
            "skill_name": "commits",
            "evals": [
                {
                    "id": 1,
                    "prompt": "Write a commit message for a new login page.",
                    "expected_output": "A conventional commit message",
                    "expectations": ["The subject starts with `feat:`", "It has a `Refs:` footer"],
                },
                {"id": 2, "prompt": "And for the docs?", "assertions": ["It says `docs:`"]},
            ],
        },
    )
    with LoopbackServer() as server:
        result = pytester.runpytest("skills", *models(server), "--upskill-report", "r.json", "-v")
    result.stdout.fnmatch_lines(
        [
            "skills/commits/evals/evals.json::evals.json-1?openai-m-baseline? XFAIL*",
            "skills/commits/evals/evals.json::evals.json-1?openai-m-with_skill? PASSED*",
            "skills/commits/evals/evals.json::evals.json-2?openai-m-with_skill? FAILED*",
            "skills/commits/skill_meta.json::c1?openai-m-with_skill? PASSED*",
            "*1 of 1 expectation(s) not met: 'It says `docs:`' (missing ?'docs:'?)*",
            "commits × *  (3 cases × 1 run)",
        ]
    )
    data = json.loads((pytester.path / "r.json").read_text())
    (commits,) = data["results"]
    case = next(c for c in commits["cases"] if c["case"] == "evals.json-1")
    with_skill = next(t for t in case["trials"] if t["arm"] == "with_skill")
    assert with_skill["expectations"] == [
        {"text": "The subject starts with `feat:`", "passed": True, "evidence": "found ['feat:']"},
        {"text": "It has a `Refs:` footer", "passed": True, "evidence": "found ['Refs:']"},
    ]
    assert commits["with_skill"]["judge_tokens"]["input_tokens"] > 0
    # the judge saw the answer fenced as data, the expectations numbered, and what success looks like
    graded = [r.body for r in server.requests if (r.body.get("tool_choice") or {}).get("function", {}).get("name")]
    assert graded and "1. The subject starts with `feat:`" in graded[0]["messages"][1]["content"]
    assert "A conventional commit message" in json.dumps(graded)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_without_a_judge_graded_cases_are_skipped_and_a_gate_calls_them_not_evaluated(pytester, write_skill):
    folder = write_skill("commits", "[]", body="b")
    (folder / "skill_meta.json").unlink()
    write_evals(folder, {"evals": [{"id": 1, "prompt": "p", "expectations": ["It says `x`"]}]})
    with LoopbackServer() as server:
        plain = pytester.runpytest("skills", *models(server, judge=False), "-rs")
        gated = pytester.runpytest("skills", *models(server, judge=False), "--upskill-min-lift", "0.1")
    plain.stdout.fnmatch_lines(
        [
            "SKIPPED * its expectations are graded by a judge model, and none is set: name one with "
            "--upskill-judge-model (until then this case is not evaluated)"
        ]
    )
    assert not server.requests  # nothing was sent for a case nobody can grade
    gated.stdout.fnmatch_lines(["NOT EVALUATED*commits*"])
    assert gated.ret == pytest.ExitCode.TESTS_FAILED


def test_eval_files_come_from_the_skill_folder_and_never_from_outside_it(pytester, write_skill):
    folder = write_skill("commits", {"tests": [{"input": "q", "expected": {"contains": "x"}}]}, body="b")
    (folder / "evals" / "files").mkdir(parents=True)
    (folder / "evals" / "files" / "diff.txt").write_text("+ added a login page\n")
    write_evals(
        folder,
        {
            "evals": [
                {
                    "id": 1,
                    "prompt": "Commit this.",
                    "files": ["evals/files/diff.txt"],
                    "expectations": ["It mentions `login`"],
                }
            ]
        },
    )
    with LoopbackServer() as server:
        pytester.runpytest("skills", *models(server))
    sent = [r.body for r in server.requests if "Commit this." in json.dumps(r.body)]
    assert sent and "+ added a login page" in json.dumps(sent[0])

    (pytester.path / "secret.txt").write_text("TOKEN=1")
    write_evals(folder, {"evals": [{"id": 1, "prompt": "p", "files": ["../../secret.txt"], "expectations": ["e"]}]})
    refused = pytester.runpytest("skills", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    refused.stdout.fnmatch_lines(["*evals.json*: eval 1: file '../../secret.txt' cannot be read: *"])
    assert "TOKEN=1" not in refused.stdout.str()


def test_the_evals_json_of_skill_creators_documentation_collects_and_runs(pytester, write_skill):
    folder = write_skill("example-skill", "[]", body="b")
    (folder / "skill_meta.json").unlink()
    (folder / "evals" / "files").mkdir(parents=True)
    (folder / "evals" / "files" / "sample1.pdf").write_bytes(b"%PDF-1.4\n\xff\xfe binary")
    write_evals(folder, SKILL_CREATOR_EXAMPLE)
    with LoopbackServer() as server:
        result = pytester.runpytest("skills", *models(server), "--upskill-report", "r.json")
    result.stdout.fnmatch_lines(["example-skill × *  (1 case × 1 run)"])
    (example,) = json.loads((pytester.path / "r.json").read_text())["results"]
    trial = example["cases"][0]["trials"][0]
    assert [e["text"] for e in trial["expectations"]] == ["The output includes X", "The skill used script Y"]
    sent = json.dumps([r.body for r in server.requests if "User's example prompt" in json.dumps(r.body)])
    assert "a binary file of" in sent  # the PDF is named, not pasted as bytes


def test_a_key_the_judge_quotes_as_evidence_is_masked_in_every_output(pytester, write_skill, monkeypatch):
    """The judge quotes the answer; an answer that holds a key (here: a skill that leaks it) must not
    bring it into the report through the evidence (masked after decoding, like every text)."""
    secret = "sk-canary-" + "7" * 24
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    folder = write_skill("leaky", "[]", body=f"The token is {secret}.")
    (folder / "skill_meta.json").unlink()
    write_evals(folder, {"evals": [{"id": 1, "prompt": "What is the token?", "expectations": [f"It says `{secret}`"]}]})
    with LoopbackServer() as server:
        pytester.runpytest("skills", *models(server), "--upskill-report", "r.json", "--junitxml", "j.xml")
    report = (pytester.path / "r.json").read_text()
    assert '"expectations"' in report and "evidence" in report
    assert secret not in report and secret not in (pytester.path / "j.xml").read_text()
