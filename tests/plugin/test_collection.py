"""Collection: skill_meta.json formats, SKILL.md validation, node ids, selection, model names."""

from __future__ import annotations

import pytest

CASES = [
    {"id": "code", "input": "What is the alpha code?", "expected": {"contains": "ZETA-42"}},
    {"input": "Say something", "expected": {"contains": ["following", "skill"]}},
]


def collect(pytester, *args):
    return pytester.runpytest("--collect-only", "-q", "skills", *args)


def test_items_are_case_by_model_by_arm_by_run(pytester, write_skill, model_server):
    write_skill("alpha-facts", {"tests": CASES}, body="The alpha code is ZETA-42.")
    url = model_server.openai_base_url
    result = collect(pytester, "--upskill-models", f"openai:m1@{url},openai:m2@{url}", "--upskill-runs", "3")
    result.stdout.fnmatch_lines(
        [
            "skills/alpha-facts/skill_meta.json::code[[]openai-m1-baseline-run1]",
            "skills/alpha-facts/skill_meta.json::code[[]openai-m1-with_skill-run3]",
            "skills/alpha-facts/skill_meta.json::case-2[[]openai-m2-baseline-run2]",
            "24 tests collected*",
        ]
    )


@pytest.mark.parametrize(
    "document",
    [
        {"metadata": {"version": "1.0"}, "tests": CASES},
        {"cases": CASES},
        CASES,
    ],
    ids=["upskill-saved", "cases", "bare-list"],
)
def test_every_upskill_format_is_accepted(pytester, write_skill, model_server, document):
    write_skill("alpha-facts", document, body="The alpha code is ZETA-42.")
    result = collect(pytester, "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.stdout.fnmatch_lines(["4 tests collected*"])
    assert result.ret == 0


def test_k_selects_by_skill_model_and_arm(pytester, write_skill, model_server):
    write_skill("alpha-facts", CASES, body="The alpha code is ZETA-42.")
    write_skill("beta-rules", CASES, body="Beta.")
    (pytester.path / "pyproject.toml").write_text(
        '[tool.upskill.models.haiku-local]\nprovider = "openai"\nmodel = "m"\nbase_url = '
        f'"{model_server.openai_base_url}"\n'
        f'[tool.upskill.models.glm]\nprovider = "openai"\nmodel = "g"\nbase_url = "{model_server.openai_base_url}"\n'
    )
    models = ["--upskill-models", "haiku-local,glm"]
    collect(pytester, *models, "-k", "haiku and with_skill").stdout.fnmatch_lines(
        ["4/16 tests collected (12 deselected)*"]
    )
    collect(pytester, *models, "-k", "alpha-facts").stdout.fnmatch_lines(["8/16 tests collected (8 deselected)*"])
    collect(pytester, *models, "-k", "beta-rules and glm and baseline").stdout.fnmatch_lines(
        ["2/16 tests collected (14 deselected)*"]
    )


def test_broken_json_is_a_collection_error_with_file_line_and_column(pytester, write_skill):
    write_skill(
        "alpha-facts",
        '{"tests": [\n  {"input": "x", "expected": {"contains": "y"}},\n  {"input": "z" "expected": {}}\n]}',
    )
    result = pytester.runpytest("skills")
    result.stdout.fnmatch_lines(
        [
            "*skills/alpha-facts/skill_meta.json:3:17: is not valid JSON: Expecting ',' delimiter*",
            "*fix: fix the JSON syntax at this position*",
            "*1 error*",
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_unknown_expected_key_names_the_line_and_the_known_checks(pytester, write_skill):
    write_skill(
        "alpha-facts",
        '[\n {"input": "a", "expected": {"contains": "a"}},\n {"input": "b",\n  "expected": {"contians": "b"}}\n]',
    )
    result = pytester.runpytest("skills")
    result.stdout.fnmatch_lines(
        [
            "*skill_meta.json:4: case 2 has an unknown expected check 'contians'*",
            "*fix: known checks: contains, equals, is_json, json_schema, not_contains, regex; register others*",
        ]
    )


@pytest.mark.parametrize(
    ("frontmatter", "message"),
    [
        (
            "name: other-name\ndescription: d\n",
            "*SKILL.md:2: Directory name 'alpha-facts' must match skill name 'other-name'*",
        ),
        ("name: Alpha-Facts\ndescription: d\n", "*SKILL.md:2: Skill name 'Alpha-Facts' must be lowercase*"),
        ("name: alpha--facts\ndescription: d\n", "*SKILL.md:2: *consecutive hyphens*"),
        ("name: alpha-facts\n", "*SKILL.md:1: Missing required field in frontmatter: description*"),
        (
            "name: alpha-facts\ndescription: " + "x" * 1025 + "\n",
            "*SKILL.md:3: Description exceeds 1024 character limit*",
        ),
        ("name: alpha-facts\ndescription: d\nauthor: me\n", "*SKILL.md:4: Unexpected fields in frontmatter: author*"),
        ("name: alpha-facts\ndescription: [unclosed\n", "*SKILL.md:*: frontmatter is not valid YAML*"),
    ],
    ids=[
        "folder-mismatch",
        "uppercase",
        "double-hyphen",
        "no-description",
        "long-description",
        "extra-key",
        "bad-yaml",
    ],
)
def test_skill_md_that_breaks_the_spec_is_a_collection_error(pytester, write_skill, frontmatter, message):
    write_skill("alpha-facts", CASES, frontmatter=frontmatter)
    result = pytester.runpytest("skills")
    result.stdout.fnmatch_lines([message, "*fix: *", "*1 error*"])


def test_case_with_unknown_field_is_an_error_listing_the_allowed_ones(pytester, write_skill):
    write_skill("alpha-facts", [{"input": "a", "expected": {"contains": "a"}, "expect": "b"}])
    pytester.runpytest("skills").stdout.fnmatch_lines(
        ["*case 1 has an unknown field 'expect'*", "*fix: allowed fields: id, name, input, expected*"]
    )


def test_with_no_model_named_items_are_skipped_saying_how_to_name_one(pytester, write_skill):
    write_skill("alpha-facts", CASES)
    result = pytester.runpytest("skills", "-rs")
    result.stdout.fnmatch_lines(["*no model named: pass --upskill-models NAME*", "*2 skipped*"])
    assert result.ret == 0


def test_unknown_model_is_a_usage_error_listing_known_names(pytester, write_skill):
    write_skill("alpha-facts", CASES)
    result = pytester.runpytest("skills", "--upskill-models", "haikuu")
    result.stderr.fnmatch_lines(["*unknown model 'haikuu'. Known names: *gpt-5.5*haiku*opus*sonnet*PROVIDER:MODEL*"])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_missing_api_key_is_reported_once_for_all_models(pytester, write_skill, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    write_skill("alpha-facts", CASES)
    result = pytester.runpytest("skills", "--upskill-models", "haiku", "--upskill-models", "gpt-5.5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("missing API key") == 1
    assert "haiku (anthropic:claude-haiku-5-5) needs $ANTHROPIC_API_KEY" in err
    assert "gpt-5.5 (openai:gpt-5.5) needs $OPENAI_API_KEY" in err


def test_ini_upskill_models_names_the_models(pytester, write_skill, model_server):
    write_skill("alpha-facts", CASES, body="The alpha code is ZETA-42.")
    pytester.makeini(f"[pytest]\nupskill_models = openai:m@{model_server.openai_base_url}\n")
    collect(pytester).stdout.fnmatch_lines(["*code[[]openai-m-baseline]", "4 tests collected*"])


def test_pyproject_alias_with_an_unknown_key_is_a_usage_error(pytester, write_skill):
    write_skill("alpha-facts", CASES)
    (pytester.path / "pyproject.toml").write_text(
        '[tool.upskill.models.glm]\nprovider = "openai"\nmodel = "g"\nbase = "x"\n'
    )
    result = pytester.runpytest("skills", "--upskill-models", "glm")
    assert "[tool.upskill.models.glm] in " in result.stderr.str()
    assert "pyproject.toml: unknown key(s) ['base']; known: ['api_key_env', 'base_url'," in result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_duplicate_case_ids_are_an_error(pytester, write_skill):
    write_skill(
        "alpha-facts",
        [
            {"id": "a", "input": "x", "expected": {"contains": "x"}},
            {"id": "a", "input": "y", "expected": {"contains": "y"}},
        ],
    )
    pytester.runpytest("skills").stdout.fnmatch_lines(["*skill_meta.json:9: case 2 has the same id 'a' as case 1*"])


def test_duplicate_json_keys_are_an_error_with_the_line(pytester, write_skill):
    write_skill("alpha-facts", '[{"input": "x",\n  "input": "y", "expected": {"contains": "x"}}]')
    pytester.runpytest("skills").stdout.fnmatch_lines(["*skill_meta.json:2: has a duplicate key 'input'*"])


def test_a_good_skill_still_runs_beside_a_broken_one_with_continue_on_collection_errors(
    pytester, write_skill, model_server
):
    write_skill("alpha-facts", CASES, body="The alpha code is ZETA-42.")
    write_skill("broken-one", "{not json")
    result = pytester.runpytest(
        "skills", "--continue-on-collection-errors", "--upskill-models", f"openai:m@{model_server.openai_base_url}"
    )
    result.stdout.fnmatch_lines(
        ["*broken-one/skill_meta.json:1:2: is not valid JSON*", "*2 passed, 2 xfailed, 1 error*"]
    )
    assert len(model_server.requests) == 4


def test_an_upskill_case_with_a_validator_runs_as_a_workspace_trial(pytester, write_skill, model_server):
    write_skill(
        "alpha-facts",
        [
            {"input": "a", "expected": {"contains": "zeta"}},
            {
                "id": "needs-workspace",
                "input": "b",
                "expected": {"contains": []},
                "validator": "json_valid",
                "output_file": "eval.json",
            },
        ],
        body="ZETA",
    )
    result = pytester.runpytest("skills", "-rx", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    result.stdout.fnmatch_lines(["*needs-workspace*the model did not write eval.json*"])
    result.assert_outcomes(passed=1, failed=1, xfailed=2)


# ---------------------------------------------------------------- parity with the reference validator

REFERENCE_CORPUS = {  # folder name -> (SKILL.md file name, frontmatter); accepted or rejected as skills-ref decides
    "2048": ("SKILL.md", "name: 2048\ndescription: A numeric name.\n"),
    "yes-skill": ("SKILL.md", "name: yes-skill\ndescription: yes\n"),
    "compat": ("SKILL.md", "name: compat\ndescription: Compatible.\ncompatibility: 3.11\n"),
    "données-analyse": ("SKILL.md", "name: données-analyse\ndescription: Analyse de données.\n"),
    "lower": ("skill.md", "name: lower\ndescription: A lowercase file name.\n"),
    "Upper": ("SKILL.md", "name: Upper\ndescription: Capitals are not allowed.\n"),
    "flow": ("SKILL.md", "name: flow\ndescription: Flow style.\nallowed-tools: [Read, Write]\n"),
    "mismatch": ("SKILL.md", "name: other\ndescription: The folder differs.\n"),
    "extra": ("SKILL.md", "name: extra\ndescription: Unknown field.\nversion: 1\n"),
}


@pytest.mark.parametrize("folder", sorted(REFERENCE_CORPUS))
def test_skills_are_accepted_and_rejected_as_the_reference_validator_does(pytester, folder):
    from skills_ref.validator import validate

    file_name, front = REFERENCE_CORPUS[folder]
    skill_dir = pytester.path / "skills" / folder
    skill_dir.mkdir(parents=True)
    (skill_dir / file_name).write_text(f"---\n{front}---\n\nDo it.\n", encoding="utf-8")
    (skill_dir / "skill_meta.json").write_text('[{"input": "q", "expected": {"contains": "x"}}]', encoding="utf-8")
    reference_problems = validate(skill_dir)
    result = pytester.runpytest("skills", "--collect-only", "-q", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    if reference_problems:
        assert result.ret == pytest.ExitCode.INTERRUPTED, (reference_problems, result.stdout.str())
        result.stdout.fnmatch_lines([f"*{file_name}*"])
    else:
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        result.stdout.fnmatch_lines([f"skills/{folder}/skill_meta.json::case-1[[]openai-m-with_skill[]]"])


def test_a_nul_in_the_frontmatter_is_a_collection_error_naming_the_file(pytester):
    """strictyaml (the reference's parser) raises AttributeError on a NUL: found by the fuzz test."""
    skill_dir = pytester.path / "skills" / "nul"
    skill_dir.mkdir(parents=True)
    (skill_dir / "SKILL.md").write_text("---\nname: nul\ndescription: a\x00b\n---\n\nDo it.\n", encoding="utf-8")
    (skill_dir / "skill_meta.json").write_text('[{"input": "q", "expected": {"contains": "x"}}]', encoding="utf-8")
    result = pytester.runpytest("skills", "--collect-only", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*skills/nul/SKILL.md:2: frontmatter cannot be read: *special characters are not allowed*"]
    )
