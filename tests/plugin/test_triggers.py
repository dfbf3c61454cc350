"""Skills among skills (issue 32): trigger cases run among the catalog of every skill, offered by
name and description; recall, false triggers and routing, with gates; the blast radius of a
description changed in a pull request. The model is a loopback server with a scripted agent."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET

import pytest

from pytest_upskill.testing import LoopbackServer

TRIGGERS = [
    {"id": "t1", "query": "please make a commit message for my diff", "should_trigger": True},
    {"id": "t2", "query": "write the commit message for this change", "should_trigger": True},
    {"id": "t3", "query": "I need a commit message", "should_trigger": True},
    {"id": "n1", "query": "what is the capital of France?", "should_trigger": False},
    {"id": "n2", "query": "explain git rebase to me", "should_trigger": False},
]


def by_keyword(turn):
    """Loads the listed skill whose description shares a keyword with the request: 'commit' →
    the skill whose description mentions commit messages."""
    if turn.called("read_skill"):
        return "done", []
    for name in turn.listed:
        described = turn.system.split(f'<skill name="{name}">', 1)[1].split("</skill>", 1)[0].lower()
        if any(word in described for word in ("commit message",) if word in turn.user.lower()):
            return "", [("read_skill", {"name": name})]
    return "I can answer that directly.", []


def write_catalog(write_skill, commits_description="Writes conventional commit messages for a diff."):
    write_skill("commits", {"tests": TRIGGERS}, body="Use feat: and fix:.", description=commits_description)
    write_skill(
        "changelog",
        {"tests": [{"id": "c1", "query": "update the changelog", "should_trigger": True}]},
        body="Keep a changelog.",
        description="Updates CHANGELOG.md from merged pull requests.",
    )


def upskill(pytester, server, *args: str):
    return pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", *args)


def report(pytester, name: str = "r.json") -> dict:
    return json.loads((pytester.path / name).read_text())


def test_trigger_cases_run_among_the_catalog_and_report_recall_and_false_triggers(pytester, write_skill):
    write_catalog(write_skill)
    with LoopbackServer(agent=by_keyword) as server:
        outputs = ("--upskill-markdown", "m.md", "--junitxml", "j.xml", "--upskill-html", "h.html")
        result = upskill(pytester, server, "--upskill-report", "r.json", "-rA", *outputs)
    result.stdout.fnmatch_lines(
        [
            "commits × *  (5 trigger cases × 1 run)",
            "  trigger     recall 100% ?95% CI *? on 3 case(s) · false triggers 0% ?95% CI *? on 2 near miss(es) *",
        ]
    )
    # every trigger trial offers the whole catalog, by name and description, and only read_skill
    first = [r for r in server.requests if "please make a commit message" in json.dumps(r.body)][0].body
    system = first["messages"][0]["content"]
    assert '<skill name="changelog">Updates CHANGELOG.md' in system and '<skill name="commits">Writes' in system
    assert [t["function"]["name"] for t in first["tools"]] == ["read_skill"]
    data = report(pytester)
    commits = next(r for r in data["results"] if r["skill"] == "commits")
    assert commits["triggering"]["recall"] == 1.0 and commits["triggering"]["false_trigger"] == 0.0
    assert commits["baseline"]["total"] == 0 and commits["paired_cases"] == 0  # no task case, no lift
    trial = next(c for c in commits["cases"] if c["case"] == "t1")["trials"][0]
    assert trial["loaded"] == ["commits"] and trial["should_trigger"] is True
    changelog = next(r for r in data["results"] if r["skill"] == "changelog")
    assert changelog["triggering"]["recall"] == 0.0  # "update the changelog" names no commit message
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # a should-trigger case that does not load fails
    markdown = (pytester.path / "m.md").read_text()
    assert "### Trigger cases: loaded from the catalog when it should be?" in markdown
    assert "| commits | openai\\:m\\@" in markdown and "| 100% [31%, 100%] on 3 | 0% [0%, 80%] on 2 | 0 |" in markdown
    assert "| 0/0 | 0/0 | n/a |" not in markdown  # no empty lift row for a skill with trigger cases only
    props = {p.get("name"): p.get("value") for p in ET.parse(pytester.path / "j.xml").iter("property")}
    assert next(v for k, v in props.items() if k.startswith("upskill.commits.") and k.endswith(".trigger_recall")) == (
        "1.0000"
    )
    html = (pytester.path / "h.html").read_text()
    assert "trigger: recall 100% on 3 · false triggers 0% on 2" in html
    assert "trigger case, should load the skill" in html and "loaded commits" in html


def test_a_model_that_loads_the_wrong_skill_is_routed_elsewhere(pytester, write_skill):
    write_catalog(write_skill)

    def wrong(turn):
        if turn.called("read_skill"):
            return "done", []
        return "", [("read_skill", {"name": "changelog"})]

    with LoopbackServer(agent=wrong) as server:
        result = upskill(pytester, server)
    result.stdout.fnmatch_lines(
        [
            "loaded changelog instead (routed elsewhere); commits was not loaded",
            "  trigger     recall 0% * on 3 case(s) · false triggers 0% * · routed elsewhere in 3 trial(s) *",
            "upskill: exit status 1 because 3 trigger trial(s) failed *",
        ]
    )


def test_a_model_that_asks_first_and_loads_after_the_follow_up_passes(pytester, write_skill):
    write_catalog(write_skill)

    def asks_first(turn):
        if turn.called("read_skill"):
            return "done", []
        if not any(m["role"] == "user" for m in turn.history):
            return "Which repository is this for?", []
        return ("", [("read_skill", {"name": "commits"})]) if "commit" in turn.user else ("Sure.", [])

    with LoopbackServer(agent=asks_first) as server:
        result = upskill(pytester, server, "--upskill-report", "r.json")
    commits = next(r for r in report(pytester)["results"] if r["skill"] == "commits")
    assert commits["triggering"]["recall"] == 1.0
    t1 = next(c for c in commits["cases"] if c["case"] == "t1")["trials"][0]
    assert t1["message"] == "loaded commits after a follow-up turn" and t1["turns"] == 2
    conversation = [r for r in server.requests if "please make a commit message" in json.dumps(r.body)][-1].body
    assert conversation["messages"][-1] == {"role": "user", "content": "Go ahead, do what you think is best."}
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # changelog's case names no commit: not loaded


def test_a_model_that_never_loads_fails_the_recall_gate_and_passes_the_false_trigger_gate(pytester, write_skill):
    write_catalog(write_skill)

    def never(turn):
        return "I can answer that directly.", []

    with LoopbackServer(agent=never) as server:
        result = upskill(
            pytester,
            server,
            "--upskill-min-trigger-recall",
            "0.5",
            "--upskill-max-false-trigger",
            "0.5",
            "-k",
            "commits",
        )
    result.stdout.fnmatch_lines(
        [
            "*commits × *trigger_recall 0% ?95% CI *? vs at least 50%*",
            "*commits × *false_trigger 0% ?95% CI *? vs at most 50%*",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert len([r for r in server.requests if "capital of France" in json.dumps(r.body)]) == 2  # asked, told once


def test_a_trigger_case_with_checks_is_refused_naming_the_file_and_case(pytester, write_skill):
    write_skill(
        "commits",
        {"tests": [{"query": "q", "should_trigger": True, "expected": {"contains": "x"}}]},
        body="b",
    )
    result = pytester.runpytest("skills", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    result.stdout.fnmatch_lines(
        ["*skill_meta.json:* case 1 is a trigger case (should_trigger) and also has 'expected'*"]
    )


def test_skill_creators_bare_trigger_list_is_accepted_as_tests_json(pytester, write_skill):
    folder = write_skill("commits", {"tests": TRIGGERS[:1]}, body="b", description="Writes commit messages.")
    (folder / "skill_meta.json").unlink()
    (folder / "tests.json").write_text(json.dumps([{"query": "a commit message please", "should_trigger": True}]))
    with LoopbackServer(agent=by_keyword) as server:
        result = upskill(pytester, server)
    result.stdout.fnmatch_lines(["  trigger     recall 100% * on 1 case(s)*"])
    assert result.ret == pytest.ExitCode.OK


def git(path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True)


def commit_all(path) -> None:
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", "main")
        git(path, "config", "user.email", "t@example.com")
        git(path, "config", "user.name", "t")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "main")


def test_a_description_change_that_breaks_a_neighbour_is_named_with_its_paired_verdict(pytester, write_skill):
    write_catalog(write_skill)
    commit_all(pytester.path)
    # the pull request: changelog's description now claims commit messages too, and takes them
    write_skill(
        "changelog",
        {"tests": [{"id": "c1", "query": "update the changelog", "should_trigger": True}]},
        body="Keep a changelog.",
        description="Updates CHANGELOG.md and writes every commit message.",
    )

    def first_match(turn):  # loads the first listed skill (sorted by name) whose description fits
        if turn.called("read_skill"):
            return "done", []
        for name in turn.listed:
            described = turn.system.split(f'<skill name="{name}">', 1)[1].split("</skill>", 1)[0].lower()
            words = [w for w in ("commit message", "changelog") if w in turn.user.lower()]
            if any(w in described for w in words):
                return "", [("read_skill", {"name": name})]
        return "Sure.", []

    with LoopbackServer(agent=first_match) as server:
        changed = upskill(pytester, server, "--upskill-changed-since", "main", "--upskill-report", "c.json")
        against = upskill(pytester, server, "--upskill-against", "main", "--upskill-report", "a.json")
    # --upskill-changed-since: commits did not change, and its trigger cases ran (the blast radius)
    changed.stdout.fnmatch_lines(
        [
            "commits × *  (5 trigger cases × 1 run)",
            "  trigger     recall 0% *",
            "catalog: the trigger cases offered 2 skill(s) by name and description (every SKILL.md under the paths "
            "given): changelog, commits",
            "blast radius: the description of changelog differs at main, and a description decides when a skill "
            "loads: the trigger cases of every skill ran, judged by their gates; --upskill-against pairs each with "
            "the catalog at the ref",
        ]
    )
    assert {r["skill"] for r in report(pytester, "c.json")["results"]} == {"commits", "changelog"}
    # --upskill-against: each trigger case also ran with the catalog's descriptions at main, paired
    against.stdout.fnmatch_lines(
        [
            "  at REF      recall 100% → 0% (change -100% *",
            "REGRESSION   commits × *: trigger recall, the catalog at main → now*",
        ]
    )
    commits = next(r for r in report(pytester, "a.json")["results"] if r["skill"] == "commits")
    assert commits["triggering"]["recall_change"]["difference"] == -1.0
    assert against.ret == pytest.ExitCode.TESTS_FAILED


DESCRIBE_CASES = [
    *({"id": f"s{i}", "query": f"write a commit message for change {i}", "should_trigger": True} for i in range(8)),
    *({"id": f"n{i}", "query": f"update the changelog for release {i}", "should_trigger": False} for i in range(4)),
]


def test_describe_revises_the_description_on_training_failures_and_reports_the_untouched_test_set(
    pytester, write_skill
):
    """The student loads a skill whose description names what the request asks for; the original
    description does not say 'commit message', the teacher's proposal does."""
    import sys

    folder = write_skill("commits", {"tests": DESCRIBE_CASES}, body="Use feat: and fix:.", description="Git helper.")
    write_skill("changelog", {"tests": []}, body="b", description="Updates the changelog file.")
    original = (folder / "SKILL.md").read_text()
    teacher_turns = []

    def teacher(turn):
        teacher_turns.append(turn)
        return {"reasoning": "it never says commit", "description": "Writes a commit message for a change."}

    def student(turn):  # loads the listed skill whose description holds the request's first three words
        if turn.called("read_skill"):
            return "done", []
        words = " ".join(turn.user.split()[:3])
        for name in turn.listed:
            described = turn.system.split(f'<skill name="{name}">', 1)[1].split("</skill>", 1)[0]
            if words.split()[-1] in described and words.split()[1] in described:
                return "", [("read_skill", {"name": name})]
        return "Sure.", []

    with LoopbackServer(teacher=teacher, agent=student) as server:
        url = server.openai_base_url
        result = pytester.run(
            sys.executable, "-m", "pytest_upskill", "describe", "skills/commits",
            "--teacher", f"openai:t@{url}", "--student", f"openai:s@{url}", "--rounds", "2", timeout=240,
        )  # fmt: skip
    out = result.stdout.str()
    assert result.ret == 0, out
    result.stdout.fnmatch_lines(
        [
            "trigger cases of commits: 6 to train on *, 3 to choose on, 3 held out to report on *",
            "original description: train 2/6 right (33%), validation 1/3 right (33%)",
            "round 1: train 6/6 right (100%), validation 3/3 right (100%): the best so far",
            "held-out test cases (3, never seen, never chosen on): original 1/3 right (33%) → proposed 3/3 right "
            "(100%)",
            "proposed description written to *SKILL.proposed.md (SKILL.md is unchanged): Writes a commit message*",
        ]
    )
    assert (folder / "SKILL.md").read_text() == original
    assert 'description: "Writes a commit message for a change."' in (folder / "SKILL.proposed.md").read_text()
    # the teacher saw the 4 training failures (train 2/6 right), and no validation or test query
    shown = [c["query"] for c in DESCRIBE_CASES if json.dumps(c["query"]) in teacher_turns[0].user]
    assert len(shown) == 4 and all(q.startswith("write a commit") for q in shown)
    assert len(teacher_turns) == 1  # the loop stopped once training had no failure
    again = pytester.run(
        sys.executable, "-m", "pytest_upskill", "describe", "skills/commits",
        "--teacher", f"openai:t@{url}", "--student", f"openai:s@{url}", timeout=60,
    )  # fmt: skip
    assert again.ret == 2 and "SKILL.proposed.md exists" in again.stdout.str()


def test_the_plan_counts_trigger_trials_apart_and_sizes_no_lift_for_them(pytester, write_skill):
    write_catalog(write_skill)
    result = pytester.runpytest("skills", "--upskill-models", "openai:m@http://127.0.0.1:9/v1", "--upskill-plan")
    result.stdout.fnmatch_lines(
        ["arms: trigger 6 trial(s) (a trigger trial sends a second request where the model answers first)"]
    )
    assert "power:" not in result.stdout.str()  # no lift to size: no task case
