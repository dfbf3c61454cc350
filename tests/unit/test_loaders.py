"""Bad input, generated: the loaders of SKILL.md, skill_meta.json and the model config either
accept a file or raise the one error type that names it (with line and column for JSON); never a
raw traceback, never a dropped case. The same through pytest is in
tests/plugin/test_broken_inputs.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_upskill.errors import ConfigError, SkillFileError
from pytest_upskill.models import load_user_aliases, resolve
from pytest_upskill.scoring.checks import CheckRegistry
from pytest_upskill.skills.skill_md import load_cases, load_skill

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
WORDS = st.sampled_from(
    [
        "tests",
        "cases",
        "input",
        "expected",
        "contains",
        "regex",
        "id",
        "name",
        "context",
        "files",
        "thresholds",
        "min_lift",
        "validator",
        "output_file",
        "json_schema",
        "equals",
        "not_contains",
        "x",
    ]
)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(WORDS, st.text(max_size=8)), inner, max_size=4)
    ),
    max_leaves=25,
)
CASE = st.fixed_dictionaries(
    {"input": st.one_of(st.text(max_size=20), JSON_VALUES)},
    optional={
        "expected": st.one_of(st.dictionaries(WORDS, JSON_VALUES, max_size=3), JSON_VALUES),
        "id": st.one_of(st.text(max_size=10), st.integers()),
        "context": JSON_VALUES,
        "x": JSON_VALUES,
    },
)
CASE_FILES = st.one_of(
    st.lists(CASE, max_size=5),
    st.fixed_dictionaries({"tests": st.lists(CASE, max_size=5)}, optional={"thresholds": JSON_VALUES}),
)


def mangle(text: str, data: st.DataObject) -> bytes:
    """Damage a valid file the ways files get damaged: BOM, truncation, bad bytes, duplicate keys."""
    raw = text.encode()
    how = data.draw(
        st.sampled_from(["as-is", "bom", "truncate", "bad-byte", "duplicate", "deep", "huge", "empty", "utf16"])
    )
    if how == "bom":
        return b"\xef\xbb\xbf" + raw
    if how == "truncate":
        return raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))]
    if how == "bad-byte":
        at = data.draw(st.integers(0, len(raw)))
        return raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x80", b"\x00"])) + raw[at:]
    if how == "duplicate":
        return raw.replace(b'"input"', b'"input": "a", "input"', 1)
    if how == "deep":
        depth = data.draw(st.integers(500, 100_000))
        return b"[" * depth + b"]" * depth
    if how == "huge":
        return json.dumps([{"input": "x" * 2_000_000, "expected": {"contains": "y" * 100_000}}]).encode()
    if how == "empty":
        return b""
    if how == "utf16":
        return text.encode("utf-16")
    return raw


def expected_cases(raw: bytes) -> int | None:
    """How many cases a file that loads must yield (counted independently of the loader)."""
    data = json.loads(raw.decode("utf-8-sig"))
    cases = data.get("tests", data.get("cases")) if isinstance(data, dict) else data
    return len(cases)


def check_meta(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    try:
        meta = load_cases(path, CheckRegistry().prepare)
    except SkillFileError as exc:
        text = str(exc)
        assert text.startswith(str(path)), text
        assert exc.fix or "not valid" in text, text  # every message says what to do
        if "is not valid JSON" in text:
            assert exc.line is not None and exc.col is not None, text
        return
    assert len(meta.cases) == expected_cases(raw)  # nothing silently dropped
    assert len({c.key for c in meta.cases}) == len(meta.cases)


@FUZZ
@given(data=st.data(), content=CASE_FILES)
def test_skill_meta_json_loads_or_names_the_file(tmp_path, data, content):
    check_meta(
        tmp_path / "skill_meta.json", mangle(json.dumps(content, indent=data.draw(st.sampled_from([None, 2]))), data)
    )


@FUZZ
@given(raw=st.binary(max_size=400))
def test_arbitrary_bytes_as_skill_meta_json(tmp_path, raw):
    check_meta(tmp_path / "skill_meta.json", raw)


def test_a_json_syntax_error_has_line_and_column(tmp_path):
    path = tmp_path / "skill_meta.json"
    path.write_text(
        '{"tests": [\n  {"input": "a", "expected": {"contains": "b"}},\n  {"input": "c" "expected": {}}\n]}\n'
    )
    with pytest.raises(SkillFileError) as info:
        load_cases(path, CheckRegistry().prepare)
    assert str(info.value).startswith(f"{path}:3:17: is not valid JSON: Expecting ',' delimiter")


FRONTMATTER = st.dictionaries(
    st.sampled_from(["name", "description", "license", "compatibility", "metadata", "allowed-tools", "other"]),
    st.one_of(st.just("demo-skill"), st.text(max_size=40), JSON_VALUES),
    max_size=6,
)


@FUZZ
@given(data=st.data(), front=FRONTMATTER, body=st.text(max_size=200))
def test_skill_md_loads_or_names_the_file(tmp_path, data, front, body):
    import yaml

    folder = tmp_path / "demo-skill"
    folder.mkdir(exist_ok=True)
    path = folder / "SKILL.md"
    text = "---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\n" + body
    path.write_bytes(mangle(text, data) if data.draw(st.booleans()) else data.draw(st.binary(max_size=300)))
    try:
        skill = load_skill(path)
    except SkillFileError as exc:
        assert str(exc).startswith(str(path)), str(exc)
        return
    assert skill.name == "demo-skill" and skill.description


TOML_VALUES = st.one_of(
    st.integers(),
    st.text(max_size=10),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(), max_size=3),
)


def toml_value(value) -> str:
    return json.dumps(value)  # integers, strings, booleans, floats and lists read the same in TOML


@FUZZ
@given(data=st.data())
def test_model_config_resolves_or_is_a_config_error(tmp_path, data):
    shape = data.draw(
        st.sampled_from(["tool-scalar", "upskill-scalar", "models-scalar", "alias-scalar", "alias-table", "bytes"])
    )
    if shape == "bytes":
        text = None
        (tmp_path / "pyproject.toml").write_bytes(data.draw(st.binary(max_size=200)))
    else:
        value = data.draw(TOML_VALUES)
        text = {
            "tool-scalar": f"tool = {toml_value(value)}\n",
            "upskill-scalar": f"[tool]\nupskill = {toml_value(value)}\n",
            "models-scalar": f"[tool.upskill]\nmodels = {toml_value(value)}\n",
            "alias-scalar": f"[tool.upskill.models]\nglm = {toml_value(value)}\n",
            "alias-table": "[tool.upskill.models.glm]\n"
            + "".join(
                f"{key} = {toml_value(data.draw(TOML_VALUES))}\n"
                for key in data.draw(
                    st.lists(
                        st.sampled_from(
                            [
                                "provider",
                                "model",
                                "base_url",
                                "temperature",
                                "max_tokens",
                                "input_price",
                                "seed",
                                "api_key_env",
                                "colour",
                            ]
                        ),
                        unique=True,
                        max_size=5,
                    )
                )
            ),
        }[shape]
        (tmp_path / "pyproject.toml").write_text(text)
    try:
        aliases = load_user_aliases(tmp_path / "pyproject.toml")
        spec = resolve("glm", aliases, "pyproject.toml")
    except ConfigError as exc:
        assert "pyproject.toml" in str(exc) or "unknown model 'glm'" in str(exc), str(exc)
        return
    assert spec.name == "glm" and spec.provider in ("anthropic", "openai", "local")


@pytest.mark.parametrize("provider, model", [("0", "[]"), ('"openai"', "[1]"), ("[]", '"gpt-5.5"')])
def test_a_table_whose_provider_or_model_is_not_a_string_is_a_config_error(tmp_path, provider, model):
    # found by the fuzz test in CI: the list prices were looked up before the table was validated
    (tmp_path / "pyproject.toml").write_text(f"[tool.upskill.models.glm]\nprovider = {provider}\nmodel = {model}\n")
    with pytest.raises(ConfigError, match=r"\[tool.upskill.models.glm\] in pyproject.toml: (provider|model)"):
        resolve("glm", load_user_aliases(tmp_path / "pyproject.toml"), "pyproject.toml")
