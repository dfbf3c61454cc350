"""Workspace trials: multi-turn native tool calling against loopback servers speaking both wire
protocols, the workspace's confinement, max_turns, the cache, and the local model's clear skip."""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pytest_upskill.testing import LoopbackServer

NOTES_SKILL = """\
Always write the notes file:

```notes.txt
remember the milk
```
"""


def both_protocols(server) -> list[str]:
    return ["--upskill-models", f"openai:m@{server.openai_base_url},anthropic:a@{server.anthropic_base_url}"]


def report(pytester) -> dict:
    return json.loads((pytester.path / "r.json").read_text())


def result_of(data: dict, skill: str, model_prefix: str = "") -> dict:
    return next(r for r in data["results"] if r["skill"] == skill and r["model"].startswith(model_prefix))


def test_a_workspace_trial_runs_a_tool_loop_over_both_protocols(pytester, write_skill, model_server):
    write_skill(
        "notes",
        [{"id": "notes", "input": "Write notes.txt.", "expected": {"contains": "milk"}, "output_file": "notes.txt"}],
        body=NOTES_SKILL,
    )
    result = pytester.runpytest(
        "skills", "-rx", "--upskill-report", "r.json", "--junitxml", "j.xml", *both_protocols(model_server)
    )
    result.assert_outcomes(passed=2, xfailed=2)
    result.stdout.fnmatch_lines(
        ["*agent       turns 2.0 → 3.0 per trial, tool calls 1.0 → 2.0*", "*the model did not write notes.txt*"]
    )
    data = report(pytester)
    for prefix in ("openai:", "anthropic:"):
        r = result_of(data, "notes", prefix)
        assert r["with_skill"]["agent"] == {
            "trials": 1,
            "turns": 3,
            "tool_calls": 2,
            "mean_turns": 3.0,
            "mean_tool_calls": 2.0,
        }
        assert r["baseline"]["agent"]["turns"] == 2
    # tokens are summed over every turn: the report's totals are the server's
    tokens_in = sum(r[arm]["input_tokens"] for r in data["results"] for arm in ("baseline", "with_skill"))
    tokens_out = sum(r[arm]["output_tokens"] for r in data["results"] for arm in ("baseline", "with_skill"))
    assert (tokens_in, tokens_out) == (model_server.input_tokens, model_server.output_tokens)
    assert len(model_server.requests) == 10
    # the tool results went back in each protocol's own shape
    anthropic_results = [
        b
        for q in model_server.requests
        if q.protocol == "anthropic"
        for m in q.body["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]
    openai_results = [
        m for q in model_server.requests if q.protocol == "openai" for m in q.body["messages"] if m["role"] == "tool"
    ]
    assert any("wrote 17 characters to notes.txt" in b["content"] for b in anthropic_results)
    assert any("wrote 17 characters to notes.txt" in m["content"] for m in openai_results)
    assert all(
        {t.get("name") or t["function"]["name"] for t in q.body["tools"]} == {"read_file", "write_file", "list_files"}
        for q in model_server.requests
    )
    cases = {
        c.get("name"): {p.get("name"): p.get("value") for p in c.iter("property")}
        for c in ET.parse(pytester.path / "j.xml").iter("testcase")
    }
    skill_case = next(props for name, props in cases.items() if name.endswith("openai-m-with_skill]"))
    assert (skill_case["upskill.turns"], skill_case["upskill.tool_calls"], skill_case["upskill.files"]) == (
        "3",
        "2",
        "notes.txt",
    )
    assert skill_case["upskill.tools_used"] == "list_files 1, write_file 1"


def test_the_case_files_are_in_the_workspace_and_the_model_reads_them(pytester, write_skill):
    def copier(turn):
        if not turn.called("read_file"):
            return "", [("read_file", {"path": "data/in.txt"})]
        if not turn.called("write_file"):
            return "", [("write_file", {"path": "out/upper.txt", "content": turn.results("read_file")[0].upper()})]
        return "done", []

    write_skill(
        "copy",
        [
            {
                "input": "Upper-case data/in.txt into out/upper.txt.",
                "expected": {"contains": "HELLO WORLD"},
                "output_file": "out/upper.txt",
                "context": {"files": {"data/in.txt": "hello world"}},
            }
        ],
        body="Use capitals.",
    )
    with LoopbackServer(agent=copier) as server:
        result = pytester.runpytest("skills", "--upskill-report", "r.json", *both_protocols(server))
    result.assert_outcomes(passed=4)
    assert all(r["with_skill"]["agent"]["turns"] == 3 for r in report(pytester)["results"])


def test_file_tools_cannot_leave_the_workspace(pytester, write_skill, tmp_path):
    outside = tmp_path / f"escape-{uuid.uuid4().hex}.txt"

    def escaper(turn):
        if not turn.history:
            return "", [
                ("write_file", {"path": "../escape.txt", "content": "x"}),
                ("write_file", {"path": str(outside), "content": "x"}),
                ("read_file", {"path": "/etc/hostname"}),
                ("read_file", {"path": "missing.txt"}),
                ("write_file", {"path": "ok.txt"}),
            ]
        return "\n".join(turn.results("write_file") + turn.results("read_file")), []

    # a workspace case (context.files) without output_file: the checks score the final answer,
    # which quotes the tool results
    write_skill(
        "escape",
        [
            {
                "input": "Try.",
                "expected": {"contains": ["leaves the workspace", "no file 'missing.txt'", "'content' is missing"]},
                "context": {"files": {"seed.txt": "x"}},
            }
        ],
        body="b",
    )
    with LoopbackServer(agent=escaper) as server:
        result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}")
    # every refusal went back to the model as a tool result and the run went on; nothing was written outside
    result.assert_outcomes(passed=2)
    assert not outside.exists() and not (pytester.path.parent / "escape.txt").exists()


def test_max_turns_stops_a_model_that_never_stops(pytester, write_skill):
    looper = lambda turn: ("", [("list_files", {})])  # noqa: E731
    write_skill(
        "loop",
        [
            {"id": "default", "input": "a", "expected": {"contains": "done"}, "output_file": "x.txt"},
            {"id": "own-limit", "input": "b", "expected": {"contains": "done"}, "output_file": "x.txt", "max_turns": 2},
        ],
        body="b",
    )
    with LoopbackServer(agent=looper) as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-max-turns",
            "3",
            "--upskill-report",
            "r.json",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
        )
        sent = len(server.requests)
    result.stdout.fnmatch_lines(
        ["*the model did not write x.txt (stopped at max_turns = 3)*", "*(stopped at max_turns = 2)*"]
    )
    r = report(pytester)["results"][0]
    assert r["with_skill"]["agent"]["turns"] == 5 and r["baseline"]["agent"]["turns"] == 5 and sent == 10


def test_a_replayed_workspace_run_sends_nothing_and_scores_the_same(pytester, write_skill, model_server):
    write_skill(
        "notes",
        [{"id": "notes", "input": "Write notes.txt.", "expected": {"contains": "milk"}, "output_file": "notes.txt"}],
        body=NOTES_SKILL,
    )
    first = pytester.runpytest("skills", *both_protocols(model_server))
    first.assert_outcomes(passed=2, xfailed=2)
    sent = len(model_server.requests)
    again = pytester.runpytest(
        "skills", "--upskill-cache", "replay", "--upskill-report", "r.json", *both_protocols(model_server)
    )
    again.assert_outcomes(passed=2, xfailed=2)
    again.stdout.fnmatch_lines(["4 of 4 trial(s) came from the cache*"])
    assert len(model_server.requests) == sent
    assert all(r["with_skill"]["agent"]["turns"] == 3 for r in report(pytester)["results"])


@pytest.mark.slow  # the real local model
def test_a_local_model_without_native_tool_calling_runs_workspace_cases_through_constrained_tool_calls(
    pytester, write_skill
):
    """SmolLM2's chat template has no tool calling: each turn it writes one JSON object, a tool call
    or its answer, under a grammar of the tools' schemas (issue 32, part 5), and the summary says so."""
    pytest.importorskip("llama_cpp")
    write_skill(
        "notes",
        [
            {"id": "plain", "input": "Say milk.", "expected": {"contains": "milk"}},
            {
                "id": "notes",
                "input": "Write notes.txt.",
                "expected": {"contains": "milk"},
                "output_file": "notes.txt",
                "max_turns": 2,
                "max_tokens": 64,
            },
        ],
        body=NOTES_SKILL,
    )
    result = pytester.runpytest("skills", "-rs", "--upskill-models", "smollm2", "--upskill-report", "r.json")
    outcomes = result.parseoutcomes()
    assert "skipped" not in outcomes, outcomes
    result.stdout.fnmatch_lines(
        ["  note        2 trial(s): tools: constrained (the model's chat template has no tool calling: each turn *"]
    )
    (notes,) = report(pytester)["results"]
    trials = next(c for c in notes["cases"] if c["case"] == "notes")["trials"]
    assert len(trials) == 2 and all(1 <= t["turns"] <= 2 for t in trials)  # a tool loop ran in both arms


def test_tool_call_arguments_are_masked_before_the_cache(pytester, write_skill, monkeypatch):
    secret = "sk-canary-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    leaker = lambda turn: (
        ("", [("write_file", {"path": "n.txt", "content": secret})]) if not turn.history else ("done", [])
    )  # noqa: E731
    write_skill("leak", [{"input": "a", "expected": {"contains": "x"}, "output_file": "n.txt"}], body="b")
    with LoopbackServer(agent=leaker) as server:
        pytester.runpytest(
            "skills", "--upskill-report", "r.json", "--upskill-models", f"openai:m@{server.openai_base_url}"
        )
    cached = "".join(p.read_text() for p in Path(pytester.path, ".upskill-cache").rglob("*.json"))
    assert "write_file" in cached and secret not in cached


def test_progressive_disclosure_offers_read_skill_and_reports_activation(pytester, write_skill, model_server):
    folder = write_skill(
        "facts",
        [{"id": "fact", "input": "What is the code word?", "expected": {"contains": "zeta-42"}}],
        body="The code word is zeta-42.",
        description="Knows the code word. Use when asked for it.",
    )
    (folder / "references").mkdir()
    (folder / "references" / "more.md").write_text("more facts")
    result = pytester.runpytest(
        "skills",
        "--upskill-injection",
        "progressive",
        "--upskill-report",
        "r.json",
        "--upskill-markdown",
        "pr.md",
        *both_protocols(model_server),
    )
    result.assert_outcomes(passed=2, xfailed=2)
    result.stdout.fnmatch_lines(
        [
            "*activation  skill loaded in 1/1 with-skill trial(s) (100%); by case 100% [[]95% CI *, 100%[]] over "
            "1 case(s)*"
        ]
    )
    data = report(pytester)
    assert [r["activation_rate"] for r in data["results"]] == [1.0, 1.0]
    assert all(r["baseline"].get("activation") is None for r in data["results"])
    first = next(q for q in model_server.requests if q.protocol == "openai" and q.body.get("tools"))
    system = first.body["messages"][0]["content"]
    assert (
        '<skill name="facts">Knows the code word. Use when asked for it.</skill>' in system and "zeta-42" not in system
    )
    assert [t["function"]["name"] for t in first.body["tools"]] == ["read_skill"]  # a plain case: only read_skill
    loaded = [
        m["content"]
        for q in model_server.requests
        if q.protocol == "openai"
        for m in q.body["messages"]
        if m["role"] == "tool"
    ]
    assert any("The code word is zeta-42." in c and "references/more.md" in c for c in loaded)
    assert "| 1/1 |" in (pytester.path / "pr.md").read_text()
    # the baseline stays a plain request, with no tools and no skill
    assert any(
        q.protocol == "openai"
        and not q.body.get("tools")
        and "available_skills" not in q.body["messages"][0]["content"]
        for q in model_server.requests
    )


def test_a_model_that_never_loads_the_skill_has_zero_activation(pytester, write_skill):
    write_skill(
        "facts",
        [{"id": "fact", "input": "What is the code word?", "expected": {"contains": "zeta-42"}}],
        body="The code word is zeta-42.",
    )
    with LoopbackServer(agent=lambda turn: ("no idea", [])) as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-injection",
            "progressive",
            "--upskill-report",
            "r.json",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
        )
    result.stdout.fnmatch_lines(["*activation  skill loaded in 0/1 with-skill trial(s) (0%)*"])
    assert report(pytester)["results"][0]["activation_rate"] == 0.0


def test_read_skill_serves_the_skills_reference_files(pytester, write_skill):
    def reader(turn):
        if not turn.called("read_skill"):
            return "", [
                ("read_skill", {"name": "facts", "file": "references/codes.md"}),
                ("read_skill", {"name": "facts", "file": "../SKILL.md"}),
            ]
        return " | ".join(turn.results("read_skill")), []

    folder = write_skill(
        "facts",
        [{"input": "code?", "expected": {"contains": ["omega-7", "has no file '../SKILL.md'"]}}],
        body="See references.",
    )
    (folder / "references").mkdir()
    (folder / "references" / "codes.md").write_text("The code is omega-7.")
    with LoopbackServer(agent=reader) as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-injection",
            "progressive",
            "--upskill-report",
            "r.json",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
        )
    result.assert_outcomes(passed=1, xfailed=1)
    assert report(pytester)["results"][0]["activation_rate"] == 0.0  # a reference file is not the skill's instructions


def test_the_kernel_example_writes_a_build_toml_and_a_kernel_that_nvcc_compiles_for_sm_90(pytester, model_server):
    """The origin story: with the skill, the agent writes build.toml (capabilities has "9.0") and
    kernel_src/relu.cu, which the real nvcc compiles for sm_90; without it, it writes neither."""
    import shutil

    if shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed on this machine (CI has it)")
    example = Path(__file__).parents[2] / "example_skills" / "kernel-builder-cuda-kernels"
    shutil.copytree(example, pytester.path / "kernel-builder-cuda-kernels")
    result = pytester.runpytest(
        "kernel-builder-cuda-kernels", "-k", "write", "-rs", "--upskill-report", "r.json", *both_protocols(model_server)
    )
    result.assert_outcomes(passed=4, xfailed=4)
    data = report(pytester)
    for r in data["results"]:
        cases = {c["case"]: (c["baseline"], c["with_skill"]) for c in r["cases"]}
        assert cases == {"write-build-toml": ([False], [True]), "write-relu-kernel": ([False], [True])}
    result = pytester.runpytest("kernel-builder-cuda-kernels", "-k", "runs", "-rs", *both_protocols(model_server))
    result.stdout.fnmatch_lines(
        ["SKIPPED*skill_meta.json:*: cuda_runs needs *"]
    )  # no GPU here: skipped, never needed in CI
