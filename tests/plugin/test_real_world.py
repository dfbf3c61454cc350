"""Skills where agents keep them, upskill's own files as upskill reads them, and what a newcomer
sees on a first run (issue 14, items 3, 4, 6 and 9)."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from pytest_upskill.testing import LoopbackServer


def _skill(root, folder: str, name: str, tests=None):
    path = root / folder / name
    path.mkdir(parents=True)
    (path / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: Skill {name}.\n---\n\nAnswer with the word {name.upper()}.\n"
    )
    if tests is not None:
        (path / "skill_meta.json").write_text(json.dumps(tests))
    return path


CASE = {"tests": [{"id": "q", "input": "What is the word?", "expected": {"contains": "word"}}]}


def test_skills_in_the_folders_where_agents_keep_them_are_collected(pytester, model_server):
    for folder, name in (
        (".claude/skills", "claude-skill"),
        (".agents/skills", "agents-skill"),
        ("skills/.curated", "curated-skill"),
        ("skills", "plain-skill"),
    ):
        _skill(pytester.path, folder, name, CASE)
    result = pytester.runpytest("--collect-only", "-q", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.stdout.fnmatch_lines(["*8 tests collected*"])
    for path in (
        ".claude/skills/claude-skill",
        ".agents/skills/agents-skill",
        "skills/.curated/curated-skill",
        "skills/plain-skill",
    ):
        result.stdout.fnmatch_lines([f"{path}/skill_meta.json::q[[]openai-m-baseline[]]"])
    # --ignore wins over the default folders, and the ini option replaces them
    result = pytester.runpytest(
        "--collect-only", "-q", "--ignore", ".claude", "--upskill-models", f"openai:m@{model_server.openai_base_url}"
    )
    result.stdout.fnmatch_lines(["*6 tests collected*"])
    pytester.makeini("[pytest]\nupskill_skill_folders =\n    .agents/skills\n")
    result = pytester.runpytest("--collect-only", "-q", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.stdout.fnmatch_lines(["*4 tests collected*"])


def test_a_run_that_finds_skill_md_files_it_does_not_collect_says_which_and_why(pytester, model_server):
    _skill(pytester.path, ".cursor/skills", "hidden-skill", CASE)
    _skill(pytester.path, "skills", "untested-skill")
    result = pytester.runpytest("--upskill-models", f"openai:m@{model_server.openai_base_url}")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(
        [
            "upskill: 2 SKILL.md file(s) found but not collected: "
            ".cursor/skills/hidden-skill/SKILL.md (in a hidden folder: add '.cursor/skills' to the ini option "
            "upskill_skill_folders); "
            "skills/untested-skill/SKILL.md (no test cases beside it: add skill_meta.json *) or upskill's tests.json "
            "(a list of such cases), or have a teacher draft them: pytest-upskill cases FOLDER --teacher MODEL)",
        ]
    )


def test_upskills_bare_list_tests_json_is_collected(pytester, model_server):
    folder = _skill(pytester.path, "skills", "listed")
    (folder / "tests.json").write_text(json.dumps([{"input": "q", "expected": {"contains": "Following"}}]))
    result = pytester.runpytest("--upskill-models", f"openai:m@{model_server.openai_base_url}", "skills")
    result.assert_outcomes(passed=1, xfailed=1)


def test_an_empty_list_of_cases_skips_that_skill_and_the_others_run(pytester, model_server):
    _skill(pytester.path, "skills", "drafted", {"metadata": {"generated_by": "upskill"}, "tests": []})
    _skill(
        pytester.path,
        "skills",
        "tested",
        {"metadata": {"generated_by": "upskill", "source_task": "t"}, "tests": CASE["tests"]},
    )
    result = pytester.runpytest("-rs", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.assert_outcomes(passed=1, xfailed=1, skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] skills/drafted/skill_meta.json:1: skills/drafted/skill_meta.json has an empty list of "
            "test cases (what upskill writes when it generated none): add cases with 'input' and 'expected', "
            "or have a teacher draft them: pytest-upskill cases skills/drafted --teacher MODEL"
        ]
    )


@pytest.mark.slow  # the real local model
def test_a_case_with_only_context_files_runs_in_a_workspace_on_a_local_model_without_native_tools(
    pytester, write_skill
):
    """A local model without native tool calling reads the case's files in a workspace through the
    constrained protocol (issue 32; it ran such a case as a plain completion before), saying so."""
    pytest.importorskip("llama_cpp")
    write_skill(
        "notes",
        {
            "tests": [
                {
                    "id": "read",
                    "input": "What colour is in the file?",
                    "expected": {"contains": "blue"},
                    "context": {"files": {"colour.txt": "blue"}},
                    "max_tokens": 16,
                    "max_turns": 2,
                }
            ]
        },
        body="Answer with the file's colour.",
    )
    result = pytester.runpytest("-rs", "--upskill-models", "smollm2", "--junitxml", "out.xml")
    outcomes = result.parseoutcomes()
    assert (
        "skipped" not in outcomes
        and outcomes.get("passed", 0)
        + outcomes.get("failed", 0)
        + outcomes.get("xfailed", 0)
        + outcomes.get("xpassed", 0)
        == 2
    ), outcomes
    result.stdout.fnmatch_lines(["  note        2 trial(s): tools: constrained (the model's chat template has no *"])
    props = [p.attrib for p in ET.parse(pytester.path / "out.xml").iter("property")]
    assert sum(p["name"] == "upskill.note" for p in props) == 2
    assert sum(p["name"] == "upskill.turns" for p in props) == 2  # a tool loop in each arm


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_answers_that_stop_at_max_tokens_are_counted_per_arm_and_the_case_sets_the_cap(
    pytester, write_skill, protocol, monkeypatch
):
    """A skill that makes answers run away to the token cap is a finding: the summary counts such
    answers per arm (as the provider says: finish_reason length, stop_reason max_tokens), and a
    case may set max_tokens; a cached rerun says the same."""
    monkeypatch.setenv("LOOPBACK_KEY", "k")
    long_skill = " ".join(f"word{i}" for i in range(40))
    write_skill(
        "wordy",
        {
            "tests": [
                {"id": "a", "input": "Say it.", "expected": {"contains": "word1"}, "max_tokens": 12},
                {"id": "b", "input": "Say it again.", "expected": {"contains": "word1"}},
            ]
        },
        body=long_skill,
    )
    with LoopbackServer() as server:
        url = server.openai_base_url if protocol == "openai" else server.anthropic_base_url
        pytester.makepyprojecttoml(
            f'[tool.upskill.models.m]\nprovider = "{protocol}"\nmodel = "m"\nbase_url = "{url}"\n'
            'api_key_env = "LOOPBACK_KEY"\nmax_tokens = 100\n'
        )
        runs = [
            pytester.runpytest("--upskill-models", "m", "--upskill-report", f"r{i}.json", "--junitxml", f"out{i}.xml")
            for i in (1, 2)
        ]
    caps = sorted(r.body.get("max_tokens") for r in server.requests)
    assert caps == [12, 12, 100, 100]  # the case's cap, else the alias's
    for i, result in enumerate(runs, 1):
        result.stdout.fnmatch_lines(
            ["  token cap   0/2 → 1/2 answers stopped at max_tokens, not where the model ended them*"]
        )
        report = json.loads((pytester.path / f"r{i}.json").read_text())["results"][0]
        assert (report["baseline"]["hit_max_tokens"], report["with_skill"]["hit_max_tokens"]) == (0, 1)
    assert len(server.requests) == 4  # the second run came from the cache
    props = {(p.attrib["name"], p.attrib["value"]) for p in ET.parse(pytester.path / "out2.xml").iter("property")}
    assert ("upskill.hit_max_tokens", "True") in props and ("upskill.cached", "True") in props


def test_no_model_named_is_said_in_the_summary_and_a_gate_without_a_model_is_a_usage_error(pytester, write_skill):
    write_skill("alpha", CASE, body="b")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.OK  # nothing asked to measure anything: a local try-out stays green
    result.stdout.fnmatch_lines(
        [
            "*upskill: no trial ran*",
            "upskill: no model named: pass --upskill-models NAME*; the 1 case(s) found were skipped, and nothing was "
            "measured",
        ]
    )
    result = pytester.runpytest("--upskill-min-lift", "0.1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--upskill-min-lift set, but no model is named, so nothing would be measured: no model named: pass "
            "--upskill-models*"
        ]
    )


def test_a_long_run_shows_progress_per_model_and_ends_saying_why_it_exits_as_it_does(pytester, write_skill):
    write_skill(
        "slow",
        {"tests": [{"id": f"q{i}", "input": f"q{i}", "expected": {"contains": "never said"}} for i in range(6)]},
        body="b",
    )
    with LoopbackServer(latency_s=0.25, slots=1) as server:
        result = pytester.runpytest(
            "-o", "upskill_progress=0.5", "--upskill-models", f"openai:m@{server.openai_base_url}"
        )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    lines = [line for line in result.stdout.lines if line.startswith("upskill progress: ")]
    assert lines, result.stdout.str()
    assert all(
        re.fullmatch(r"upskill progress: openai:m@\S+ \d+/12 done \(0 errors(, about \d+ s left)?\)", line)
        for line in lines
    ), lines
    assert result.stdout.lines[-2] == (
        "upskill: exit status 1 because 6 with-skill trial(s) failed, and with no gate set every with-skill "
        "trial must pass (set --upskill-min-lift to judge the lift instead)"
    )


NOTES = "Always write the notes file:\n\n```notes.txt\nremember the milk\n```\n"


def test_small_things_a_newcomer_met(pytester, write_skill, model_server):
    """Issue 14, item 11: a plan after a recorded run of workspace trials sends nothing; prices
    show as cost in the summary; cached trials keep the model's time; a base URL without http://
    is a usage error; an unknown case field lists only the fields a case may hold."""
    write_skill(
        "notes",
        {
            "tests": [
                {"id": "w", "input": "Write the notes.", "expected": {"contains": "milk"}, "output_file": "notes.txt"},
                {"id": "p", "input": "Say it.", "expected": {"contains": "milk"}},
            ]
        },
        body=NOTES,
    )
    pytester.makepyprojecttoml(
        f'[tool.upskill.models.priced]\nprovider = "openai"\nmodel = "m"\nbase_url = "{model_server.openai_base_url}"\n'
        "input_price = 1.0\noutput_price = 10.0\n"
    )
    first = pytester.runpytest("--upskill-models", "priced", "--junitxml", "out1.xml")
    first.stdout.fnmatch_lines(
        [
            "  cost        $0.0* → $0.0* (+0.0* USD with the skill; the alias's prices per million tokens; totals, "
            "no interval)"
        ]
    )
    sent = len(model_server.requests)
    plan = pytester.runpytest("--upskill-models", "priced", "--upskill-plan")
    plan.stdout.fnmatch_lines(
        ["priced * 4 * 0 * 0 * 0 * $0.0000*"]
    )  # 4 trials, every one (workspace too) from the cache
    again = pytester.runpytest("--upskill-models", "priced", "--junitxml", "out2.xml")
    assert len(model_server.requests) == sent and again.ret == first.ret
    latency = lambda name: sorted(
        float(p.attrib["value"])
        for p in ET.parse(pytester.path / name).iter("property")
        if p.attrib["name"] == "upskill.latency_s"
    )
    assert all(v > 0 for v in latency("out2.xml")) and latency("out2.xml") == pytest.approx(
        latency("out1.xml"), abs=1e-3
    )

    bad = pytester.runpytest("--upskill-models", "openai:m@127.0.0.1:8080/v1")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(
        [
            "*model 'openai:m@127.0.0.1:8080/v1': the base URL '127.0.0.1:8080/v1' must start with http:// or https:// "
            "and name a host: e.g. http://127.0.0.1:8080/v1"
        ]
    )

    write_skill("notes", {"tests": [{"input": "x", "expected": {"contains": "y"}, "max_token": 3}]}, body=NOTES)
    typo = pytester.runpytest("--upskill-models", "priced")
    typo.stdout.fnmatch_lines(
        [
            "*case 1 has an unknown field 'max_token'",
            "  fix: allowed fields: id, name, input, expected, should_trigger, expectations, expected_output, "
            "context, output_file, validator, validator_config, max_turns, max_tokens",
        ]
    )
    assert "prepared_validator" not in typo.stdout.str()


def test_every_skill_md_not_collected_is_named_once_per_reason(pytester, model_server):
    """Issue 28, done means: over anthropics/skills' layout (17 skills, most without cases) every
    skill shows in the summary; the reason is said once for the files it applies to."""
    for i in range(12):
        _skill(pytester.path, "skills", f"untested-{i:02d}")
    result = pytester.runpytest("--upskill-models", f"openai:m@{model_server.openai_base_url}")
    line = next(x for x in result.stdout.lines if "found but not collected" in x)
    assert all(f"skills/untested-{i:02d}/SKILL.md" in line for i in range(12)) and "more" not in line
    assert line.count("no test cases beside it") == 1
