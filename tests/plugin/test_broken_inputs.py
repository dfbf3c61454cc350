"""Bad input through pytest: a collection error per broken skill, naming the file, and
--continue-on-collection-errors runs the good ones (the loaders themselves are fuzzed in
tests/unit/test_loaders.py)."""

from __future__ import annotations

import json
import os

import pytest

# ------------------------------------------------------------------------------- through pytest

GOOD = [{"id": "c", "input": "q", "expected": {"contains": "zeta"}}]


@pytest.mark.parametrize(
    "raw, shown",
    [
        (b"\xef\xbb\xbf" + json.dumps(GOOD).encode(), None),  # a BOM is accepted
        (b"", "skills/broken/skill_meta.json:1:1: is not valid JSON: Expecting value"),
        (
            b'[{"input": "q\xff", "expected": {"contains": "z"}}]',
            "skills/broken/skill_meta.json:1: is not valid UTF-8 (byte 13)",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "skills/broken/skill_meta.json: is nested too deeply to parse"),
        (
            b'[{"input": "a", "input": "b", "expected": {"contains": "z"}}]',
            "skills/broken/skill_meta.json:1: has a duplicate key 'input'",
        ),
        (
            "\n".join(json.dumps(GOOD, indent=2).split("\n")[:-1]).encode(),
            "skills/broken/skill_meta.json:8:*: is not valid JSON*",
        ),
    ],
)
def test_a_broken_skill_is_a_collection_error_and_the_good_ones_still_run(
    pytester, write_skill, model_server, raw, shown
):
    write_skill("good-skill", GOOD, body="zeta")
    (write_skill("broken", GOOD, body="zeta") / "skill_meta.json").write_bytes(raw)
    models = ("--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result = pytester.runpytest("skills", *models, "--continue-on-collection-errors", "--upskill-report", "r.json")
    report = json.loads((pytester.path / "r.json").read_text())
    if shown is None:
        assert [r["skill"] for r in report["results"]] == ["broken", "good-skill"]
        return
    result.stdout.fnmatch_lines(["*ERROR collecting skills/broken/skill_meta.json*", shown])
    assert "Traceback" not in result.stdout.str()
    assert [r["skill"] for r in report["results"]] == ["good-skill"]
    result.assert_outcomes(passed=1, xfailed=1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (
        pytester.runpytest("skills", *models).ret == pytest.ExitCode.INTERRUPTED
    )  # without the flag: pytest's own exit 2


def test_a_symlink_loop_in_the_skill_tree_does_not_break_collection(pytester, write_skill, model_server):
    folder = write_skill("good-skill", GOOD, body="zeta")
    os.symlink(folder, folder / "loop")  # skills/good-skill/loop -> skills/good-skill
    os.symlink("missing-target", folder / "dangling")
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize(
    "pyproject, shown",
    [
        ("[tool.upskill]\nmodels = 3\n", "*pyproject.toml: [[]tool.upskill.models[]] must hold one table per alias*"),
        (
            "[tool.upskill.models.glm]\nprovider = 'openai'\nmodel = 'g'\ntemperature = 'hot'\n",
            "*[[]tool.upskill.models.glm[]] in *pyproject.toml: temperature: *",
        ),
        (
            "[tool.upskill.models.glm]\nprovider = 'openai'\nmodel = 'g'\ncolour = 1\n",
            "*unknown key(s) [[]'colour'[]]*",
        ),
    ],
)
def test_a_broken_model_config_is_a_usage_error_naming_the_file(pytester, write_skill, pyproject, shown):
    write_skill("good-skill", GOOD, body="zeta")
    pytester.makefile(".toml", pyproject=pyproject)
    result = pytester.runpytest("skills", "--upskill-models", "glm")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([shown])
    assert "Traceback" not in result.stderr.str()
