"""Each validator passes good work and fails bad work, end to end: the loopback model writes the
files its skill shows (a good skill and a bad one), the validator judges the workspace."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pytest_upskill.testing import LoopbackServer

KERNEL = """\
#include <cuda_runtime.h>
__global__ void scale(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = 2.0f * x[i];
}"""

# validator -> (config, file, good content, bad content, what the failure says)
CASES = {
    "python_compiles": (
        {},
        "calc.py",
        "def add(a, b):\n    return a + b",
        "def add(a, b)\n    return a + b",
        "does not compile",
    ),
    "python_tests": (
        {"test_file": "checks/test_calc.py"},
        "calc.py",
        "def add(a, b):\n    return a + b",
        "def add(a, b):\n    return a - b",
        "test_calc.py failed",
    ),
    "nvcc_compiles": (
        {"arch": "sm_90"},
        "kernel.cu",
        KERNEL,
        KERNEL.replace("2.0f * x[i];", "2.0f * x[i]"),
        "kernel.cu does not compile for sm_90",
    ),
    "toml_valid": (
        {"required_values": {"general.cuda.capabilities": "9.0"}},
        "build.toml",
        '[general]\nname = "k"\n[general.cuda]\ncapabilities = ["8.0", "9.0"]',
        '[general]\nname = "k"\n[general.cuda]\ncapabilities = ["8.0"]',
        'general.cuda.capabilities is ["8.0"], expected "9.0"',
    ),
    "json_valid": (
        {"required_keys": ["name"]},
        "package.json",
        '{"name": "x"}',
        '{"name": ',
        "package.json is not valid JSON",
    ),
    "yaml_valid": (
        {"required_values": {"jobs.*.runs-on": "ubuntu-latest"}},
        "ci.yml",
        "jobs:\n  test:\n    runs-on: ubuntu-latest",
        "jobs:\n  test:\n    steps: []",
        "no key 'jobs.*.runs-on'",
    ),
}


def skill_body(file: str, content: str) -> str:
    return f"Write this file:\n\n```{file}\n{content}\n```\n"


@pytest.mark.parametrize("validator", sorted(CASES))
def test_a_validator_passes_good_work_and_fails_bad_work(pytester, write_skill, model_server, validator):
    if validator == "nvcc_compiles" and shutil.which("nvcc") is None:
        pytest.skip("nvcc is not installed on this machine")
    config, file, good, bad, failure = CASES[validator]
    for name, content in (("good", good), ("bad", bad)):
        folder = write_skill(
            name,
            [
                {
                    "id": "work",
                    "input": f"Write {file}.",
                    "expected": {"contains": []},
                    "output_file": file,
                    "validator": validator,
                    "validator_config": config,
                }
            ],
            body=skill_body(file, content),
        )
        (folder / "checks").mkdir()
        (folder / "checks" / "test_calc.py").write_text(
            "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
        )
    result = pytester.runpytest(
        "skills", "-rx", "--upskill-report", "r.json", "--upskill-models", f"openai:m@{model_server.openai_base_url}"
    )
    result.stdout.fnmatch_lines(["*" + re.sub(r"([][])", r"[\1]", failure) + "*"])  # brackets literal
    results = {r["skill"]: r for r in json.loads((pytester.path / "r.json").read_text())["results"]}
    assert (results["good"]["with_skill"]["passed"], results["bad"]["with_skill"]["failed"]) == (1, 1)
    assert results["good"]["baseline"]["failed"] == 1  # the baseline wrote nothing
    result.stdout.fnmatch_lines([f"*the model did not write {file}*"])


def test_python_tests_runs_the_case_tests_even_when_the_model_rewrote_them(pytester, write_skill, model_server):
    body = (
        skill_body("calc.py", "def add(a, b):\n    return 0")
        + "\n"
        + skill_body("test_calc.py", "def test_nothing():\n    pass")
    )
    folder = write_skill(
        "cheat",
        [
            {
                "input": "w",
                "expected": {"contains": []},
                "output_file": "calc.py",
                "validator": "python_tests",
                "validator_config": {"test_file": "checks/test_calc.py"},
            }
        ],
        body=body,
    )
    (folder / "checks").mkdir()
    (folder / "checks" / "test_calc.py").write_text(
        "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*test_calc.py failed*", "*assert 0 == 5*"])


def test_a_validator_that_runs_model_output_cannot_write_outside_the_workspace(
    pytester, write_skill, model_server, tmp_path
):
    target = tmp_path / "pwned.txt"
    code = f"from pathlib import Path\nPath({str(target)!r}).write_text('x')\n\ndef add(a, b):\n    return a + b"
    folder = write_skill(
        "evil",
        [
            {
                "input": "w",
                "expected": {"contains": []},
                "output_file": "calc.py",
                "validator": "python_tests",
                "validator_config": {"test_file": "checks/test_calc.py"},
            }
        ],
        body=skill_body("calc.py", code),
    )
    (folder / "checks").mkdir()
    (folder / "checks" / "test_calc.py").write_text(
        "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.assert_outcomes(failed=1, xfailed=1)  # with Landlock the write is refused, so the import fails
    result.stdout.fnmatch_lines(["*PermissionError*"])
    assert not target.exists()


def test_llm_judge_grades_with_a_forced_verdict_and_reports_its_tokens_apart(pytester, write_skill, model_server):
    rubric = "The notes must mention `milk` and `eggs`."
    for name, content in (("good", "milk and eggs"), ("bad", "only milk")):
        write_skill(
            name,
            [
                {
                    "id": "notes",
                    "input": f"Write shopping notes for {name}.",
                    "expected": {"contains": []},
                    "output_file": "notes.md",
                    "validator": "llm_judge",
                    "validator_config": {"rubric": rubric},
                }
            ],
            body=skill_body("notes.md", content),
        )
    args = [
        "skills",
        "-rx",
        "--upskill-report",
        "r.json",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "--upskill-judge-model",
        f"anthropic:judge@{model_server.anthropic_base_url}",
    ]
    result = pytester.runpytest(*args)
    result.assert_outcomes(passed=1, failed=1, xfailed=2)
    result.stdout.fnmatch_lines(["*judge: fail (score 0.0): missing [[]'eggs'[]]*"])
    result.stdout.fnmatch_lines(["*judge       in * out * tokens (llm_judge, expectations; not in the figures above)*"])
    judged = [q for q in model_server.requests if q.body.get("tool_choice") == {"type": "tool", "name": "verdict"}]
    assert len(judged) == 2  # the baselines wrote no file: nothing to judge
    assert "<rubric>\nThe notes must mention `milk` and `eggs`.\n</rubric>" in judged[0].body["messages"][0]["content"]
    data = json.loads((pytester.path / "r.json").read_text())
    good = next(r for r in data["results"] if r["skill"] == "good")
    judge_tokens = good["with_skill"]["judge_tokens"]
    assert judge_tokens["input_tokens"] > 0 and judge_tokens["output_tokens"] > 0
    # the judge's tokens are apart from the model's, and together they are what the server counted
    model_in = sum(r[a]["input_tokens"] for r in data["results"] for a in ("baseline", "with_skill"))
    judge_in = sum(
        r[a].get("judge_tokens", {}).get("input_tokens", 0) for r in data["results"] for a in ("baseline", "with_skill")
    )
    assert judge_in == sum(
        len(q.body["system"][0]["text"].split()) + len(q.body["messages"][0]["content"].split()) for q in judged
    )
    assert model_in + judge_in == model_server.input_tokens
    # the verdicts are cached: a second run asks the judge nothing
    again = pytester.runpytest(*args)
    again.assert_outcomes(passed=1, failed=1, xfailed=2)
    assert (
        len([q for q in model_server.requests if q.body.get("tool_choice") == {"type": "tool", "name": "verdict"}]) == 2
    )


def test_llm_judge_without_a_judge_model_is_skipped_with_the_option_to_pass(pytester, write_skill, model_server):
    write_skill(
        "notes",
        [
            {
                "input": "w",
                "expected": {"contains": []},
                "output_file": "n.md",
                "validator": "llm_judge",
                "validator_config": {"rubric": "good"},
            }
        ],
        body="b",
    )
    result = pytester.runpytest("skills", "-rs", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*llm_judge needs a judge model: pass --upskill-judge-model NAME*"])


def test_a_judge_model_without_native_tool_calling_grades_llm_judge_cases_through_constrained_calls(
    pytester, write_skill, model_server
):
    """SmolLM2 as the judge: its verdict comes through a constrained tool call (issue 32; llm_judge
    cases were skipped on such a judge before), its tokens counted apart."""
    pytest.importorskip("llama_cpp")
    write_skill(
        "notes",
        [
            {
                "input": "w",
                "expected": {"contains": []},
                "output_file": "n.md",
                "validator": "llm_judge",
                "validator_config": {"rubric": "good"},
            }
        ],
        body="Write the notes:\n\n```n.md\ngood notes\n```",
    )
    result = pytester.runpytest(
        "skills",
        "-rs",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "--upskill-judge-model",
        "smollm2",
        "--upskill-report",
        "r.json",
    )
    assert "skipped" not in result.parseoutcomes()
    (notes,) = json.loads((pytester.path / "r.json").read_text())["results"]
    judged = [t for c in notes["cases"] for t in c["trials"] if t.get("judge_input_tokens")]
    assert judged  # the judge was asked, and answered through the verdict tool (or the trial says why not)


def test_a_judge_that_gives_no_verdict_is_an_error_not_a_failure(pytester, write_skill):
    def agent(turn):
        if turn.tool_choice == "verdict":
            return "I think it is fine.", []
        return ("", [("write_file", {"path": "n.md", "content": "x"})]) if not turn.history else ("done", [])

    write_skill(
        "notes",
        [
            {
                "input": "w",
                "expected": {"contains": []},
                "output_file": "n.md",
                "validator": "llm_judge",
                "validator_config": {"rubric": "good"},
            }
        ],
        body="b",
    )
    with LoopbackServer(agent=agent) as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-judge-model",
            f"openai:j@{server.openai_base_url}",
        )
    result.stdout.fnmatch_lines(
        [
            "*not scored (judge_error): openai:j@*: the judge answered without calling the verdict tool*",
            "errors: openai:m@*: 2 trial(s) not scored (judge_error 2)",
        ]
    )
    assert result.ret == 1


def test_a_conftest_validator_with_upskills_signature_passes_and_fails(pytester, write_skill, model_server):
    pytester.makeconftest("""
        from dataclasses import dataclass

        @dataclass
        class ValidationResult:  # upskill's shape
            passed: bool
            error_message: str | None = None

        def has_lines(workspace, output_file, min_lines=1, **config):
            path = workspace / output_file
            if not path.exists():
                return ValidationResult(False, f"no {output_file}")
            n = len(path.read_text().splitlines())
            return ValidationResult(n >= min_lines, None if n >= min_lines else f"{n} line(s), want {min_lines}")

        def broken(workspace, output_file, **config):
            raise RuntimeError("validator bug")

        def pytest_upskill_validators():
            return {"has_lines": has_lines, "broken": broken}
    """)
    write_skill(
        "lines",
        [
            {
                "id": "two",
                "input": "w",
                "expected": {"contains": []},
                "output_file": "a.txt",
                "validator": "has_lines",
                "validator_config": {"min_lines": 2},
            },
            {
                "id": "five",
                "input": "w",
                "expected": {"contains": []},
                "output_file": "a.txt",
                "validator": "has_lines",
                "validator_config": {"min_lines": 5},
            },
            {"id": "bug", "input": "w", "expected": {"contains": []}, "output_file": "a.txt", "validator": "broken"},
        ],
        body=skill_body("a.txt", "one\ntwo\nthree"),
    )
    result = pytester.runpytest("skills", "-rx", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.assert_outcomes(passed=1, failed=1, errors=1, xfailed=3)
    result.stdout.fnmatch_lines(["*3 line(s), want 5*"])
    result.stdout.fnmatch_lines(["*not scored (check_error): validator 'broken' raised RuntimeError: validator bug*"])
    result.stdout.fnmatch_lines(["*XFAIL*two*the model did not write a.txt*"])


@pytest.mark.parametrize(
    "case, message",
    [
        ({"validator": "hf_eval_yaml"}, "*skill_meta.json:*: case 1 names an unknown validator 'hf_eval_yaml'*"),
        (
            {"validator": "toml_valid", "validator_config": {"required": ["x"]}},
            "*skill_meta.json:*: case 1: validator 'toml_valid': unknown validator_config key(s) [[]'required'[]]*",
        ),
        (
            {"validator": "python_tests", "validator_config": {"test_file": "checks/missing.py"}},
            "*'test_file' 'checks/missing.py': there is no file*",
        ),
        ({"validator": "nvcc_compiles", "validator_config": {"arch": "90"}}, "*'arch' must be like 'sm_90', not '90'*"),
        ({"validator_config": {"x": 1}}, "*case 1 has 'validator_config' but no 'validator'*"),
    ],
)
def test_a_bad_validator_is_a_collection_error_naming_the_line(pytester, write_skill, case, message):
    write_skill(
        "bad",
        json.dumps({"tests": [{"input": "w", "expected": {"contains": []}, "output_file": "x", **case}]}, indent=2),
    )
    result = pytester.runpytest("skills", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    result.stdout.fnmatch_lines([message])
    assert result.ret == 2


@pytest.mark.slow  # the real local model
def test_the_real_local_model_judges_through_a_forced_tool_call_and_runs_a_workspace_loop(
    pytester, write_skill, model_server
):
    """SmolLM2 with a chat template that renders tools (its own has none): its verdict is generated
    under the verdict tool's JSON-schema grammar; as a workspace model its turns are recorded."""
    pytest.importorskip("llama_cpp")
    template = Path(__file__).parents[1] / "data" / "chatml_tools.jinja"
    pytester.makepyprojecttoml(f"""
        [tool.upskill.models.smollm2-tools]
        provider = "local"
        model = "smollm2"
        max_tokens = 64
        chat_template = "{template}"
    """)
    write_skill(
        "notes",
        [
            {
                "id": "notes",
                "input": "Write notes.md with the word milk.",
                "expected": {"contains": []},
                "output_file": "notes.md",
                "validator": "llm_judge",
                "validator_config": {"rubric": "The notes mention milk."},
            }
        ],
        body=skill_body("notes.md", "buy milk"),
    )
    result = pytester.runpytest(
        "skills",
        "-p",
        "no:cacheprovider",
        "--upskill-report",
        "r.json",
        "--upskill-cache",
        "off",
        "--upskill-max-turns",
        "2",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url},smollm2-tools",
        "--upskill-judge-model",
        "smollm2-tools",
    )
    data = json.loads((pytester.path / "r.json").read_text())
    assert data["errors"] == 0, result.stdout.str()
    loopback = next(r for r in data["results"] if r["model"].startswith("openai:"))
    assert (
        loopback["with_skill"]["judge_tokens"]["output_tokens"] > 0
    )  # the local judge gave a verdict through the tool
    local = next(r for r in data["results"] if r["model"] == "smollm2-tools")
    assert 1 <= local["with_skill"]["agent"]["mean_turns"] <= 2 and local["with_skill"]["input_tokens"] > 0
