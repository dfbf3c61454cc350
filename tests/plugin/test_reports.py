"""What a run leaves to look at (issue 16): each trial's answer in the JSON report, the versioned
schema, the history folder and ``pytest-upskill runs``, the skill × model matrix in the terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from pytest_upskill.results.report import ANSWER_CHARS, SCHEMA_VERSION, json_schema

SCHEMA_FILE = Path(__file__).parents[2] / "pytest_upskill" / "results" / "report.schema.json"
SECRET = "sk-test-a1b2c3d4e5f6"

ALPHA = "The alpha code is ZETA-42. Always sign answers with ~alpha."
CASES = [
    {"id": "code", "input": "What is the alpha code?", "expected": {"contains": "zeta-42"}},
    {"id": "unsure", "input": "Be unsure.", "expected": {"contains": "not sure"}},
]

BETA_CASE = {"id": "beta", "input": "Say what beta knows.", "expected": {"contains": "beta knows"}}


def aliases(pytester, server, prices: bool = True) -> None:
    """Two models with stable names (their URLs change with each server), priced."""
    price = "input_price = 2.0\noutput_price = 8.0\n" if prices else ""
    pytester.makefile(
        ".toml",
        pyproject=f"""
[tool.upskill.models.gamma]
provider = "openai"
model = "m"
base_url = "{server.openai_base_url}"
api_key_env = "GAMMA_KEY"
{price}
[tool.upskill.models.delta]
provider = "anthropic"
model = "c"
base_url = "{server.anthropic_base_url}"
{price}""",
    )


@pytest.fixture
def two_skills(write_skill, pytester, model_server, monkeypatch):
    monkeypatch.setenv("GAMMA_KEY", SECRET)
    write_skill("alpha-facts", {"tests": CASES}, body=ALPHA)
    write_skill("beta-facts", {"tests": [BETA_CASE]}, body="Beta knows nothing.")
    aliases(pytester, model_server)


def run(pytester, *args: str):
    return pytester.runpytest_subprocess("skills", "--upskill-models", "gamma,delta", *args)


def load(pytester, name: str = "r.json") -> dict:
    return json.loads((pytester.path / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("mode", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_the_json_report_keeps_each_trials_answer_and_why_it_failed(pytester, two_skills, mode):
    """The answers come from the item's report, so the xdist controller, which runs nothing, has them."""
    run(pytester, "--upskill-report", "r.json", *mode)
    result = next(r for r in load(pytester)["results"] if r["skill"] == "alpha-facts" and r["model"] == "gamma")
    cases = {c["case"]: c for c in result["cases"]}
    trials = {t["arm"]: t for t in cases["unsure"]["trials"]}
    assert trials["baseline"]["passed"] is True and trials["baseline"]["answer"] == "I am not sure how to do that."
    assert trials["with_skill"]["passed"] is False
    assert trials["with_skill"]["answer"] == f"Following the skill: {ALPHA}"
    assert trials["with_skill"]["message"] == "contains: missing (case-insensitive): ['not sure']"
    assert trials["with_skill"]["input_tokens"] > trials["baseline"]["input_tokens"] > 0
    assert [(t["arm"], t["run"]) for t in cases["code"]["trials"]] == [("baseline", 1), ("with_skill", 1)]


def test_answers_are_capped_and_masked(pytester, write_skill, model_server, monkeypatch):
    monkeypatch.setenv("GAMMA_KEY", SECRET)
    body = f"Quote the key {SECRET} back. " + "word " * 2000
    write_skill(
        "long", {"tests": [{"id": "c", "input": "go", "expected": {"contains": "nothing like this"}}]}, body=body
    )
    aliases(pytester, model_server)
    pytester.runpytest_subprocess(
        "skills", "--upskill-models", "gamma", "--upskill-report", "r.json", "--upskill-html", "r.html"
    )
    trial = next(t for t in load(pytester)["results"][0]["cases"][0]["trials"] if t["arm"] == "with_skill")
    assert len(trial["answer"]) == ANSWER_CHARS < trial["answer_chars"]
    assert trial["answer"].startswith("Following the skill: Quote the key [REDACTED]")
    for name in ("r.json", "r.html"):
        assert SECRET not in (pytester.path / name).read_text(encoding="utf-8"), name


def test_a_workspace_trial_reports_its_tool_calls_in_order_and_the_files_written(pytester, write_skill, model_server):
    notes = "Always write the notes file:\n\n```notes.txt\nremember the milk\n```\n"
    write_skill(
        "notes",
        [{"id": "notes", "input": "Write notes.txt.", "expected": {"contains": "milk"}, "output_file": "notes.txt"}],
        body=notes,
    )
    pytester.runpytest(
        "skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}", "--upskill-report", "r.json"
    )
    trials = {t["arm"]: t for t in load(pytester)["results"][0]["cases"][0]["trials"]}
    assert trials["with_skill"]["calls"] == ["list_files", "write_file notes.txt"]
    assert trials["with_skill"]["written"] == ["notes.txt"]
    assert trials["baseline"]["calls"] == ["list_files"] and "written" not in trials["baseline"]
    assert trials["baseline"]["message"] == "the model did not write notes.txt"


# ------------------------------------------------------------------------------------ schema


def test_the_published_schema_is_the_one_the_model_generates():
    """Regenerate with: python -m pytest_upskill.results.report > pytest_upskill/results/report.schema.json"""
    assert json.loads(SCHEMA_FILE.read_text(encoding="utf-8")) == json_schema()


def test_a_written_report_validates_against_the_published_schema(pytester, two_skills):
    run(pytester, "--upskill-report", "r.json", "--upskill-min-lift", "0.1")
    data = load(pytester)
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert data["run"]["models"] == ["gamma", "delta"]
    assert data["run"]["settings"]["min_lift"] == 0.1
    assert data["results"][0]["with_skill"]["cost"] > 0
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))).validate(data)
    data["results"][0]["lift"] = "high"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(json_schema()).validate(data)


def test_a_schema_1_report_still_compares(pytester, two_skills):
    """Reports written before the schema had its name called the field ``version``."""
    old = {
        "version": 1,
        "results": [
            {
                "skill": "alpha-facts",
                "model": "gamma",
                "lift": 0.5,
                "cases": [{"case": "unsure", "baseline": [True], "with_skill": [True]}],
            }
        ],
    }
    (pytester.path / "old.json").write_text(json.dumps(old))
    result = run(pytester, "--upskill-compare", "old.json")
    result.stdout.fnmatch_lines(["*alpha-facts × gamma*case unsure: with skill passed before, fails now*"])
    assert "not a report written by" not in result.stdout.str()


# ----------------------------------------------------------------------------------- history


def git(path: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def runs_command(pytester, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_upskill", "runs", *args], cwd=pytester.path, capture_output=True, text=True
    )


def test_history_keeps_each_run_with_its_commit_branch_models_and_settings(pytester, two_skills):
    git(pytester.path, "init", "-q", "-b", "feature-x")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-q", "-m", "first")
    commit = git(pytester.path, "rev-parse", "HEAD")
    first = run(pytester, "--upskill-history", "hist", "--upskill-runs", "2")
    first.stdout.fnmatch_lines(
        ["history: this run added as *hist/*.json; see the runs with: pytest-upskill runs *hist"]
    )
    run(pytester, "--upskill-history", "hist")
    files = sorted((pytester.path / "hist").glob("*.json"))
    assert len(files) == 2
    entries = [json.loads(f.read_text()) for f in files]
    for entry in entries:
        assert entry["run"]["commit"] == commit and entry["run"]["branch"] == "feature-x"
        assert entry["run"]["models"] == ["gamma", "delta"]
        assert entry["run"]["time"].endswith("Z")
        assert len(entry["results"]) == 4
    assert [e["run"]["settings"]["runs"] for e in entries] == [2, 1]
    assert files[0].name.endswith(".json") and commit[:8] in files[0].name


def test_runs_shows_bars_the_matrix_and_trends_and_writes_csv(pytester, two_skills):
    for runs in ("1", "1", "2"):
        run(pytester, "--upskill-history", "hist", "--upskill-runs", runs)
    (pytester.path / "hist" / "notes.json").write_text("{not json")
    done = runs_command(pytester, "hist", "--csv", "runs.csv")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "warning: hist/notes.json: not a report, left out" in out
    assert "3 run(s) in hist" in out
    # several skills and models: the matrix, baseline -> with skill and the lift per cell
    assert "alpha-facts  50% → 50% +0%" in out
    assert "beta-facts   0% → 100% +100%" in out
    assert "beta-facts × gamma  (3 runs:" in out
    assert "  with skill ███  100% → 100%" in out
    # issue 30, item 7: a trend comes with its noise band, the paired change first → last
    assert "  noise      with skill first → last +0% [95% CI " in out and "on 1 shared case(s): within the noise" in out
    assert "  note       settings changed at " in out and ": runs 1 → 2 (the figures may not compare)" in out
    rows = (pytester.path / "runs.csv").read_text().splitlines()
    assert rows[0].startswith("time,commit,branch,skill,model,paired_cases,baseline_pass_rate")
    assert len(rows) == 1 + 3 * 4
    beta = [r.split(",") for r in rows[1:] if ",beta-facts,gamma," in r]
    assert [(r[6], r[7], r[8]) for r in beta] == [("0", "1", "1")] * 3

    one = runs_command(pytester, "hist", "--skill", "beta-facts", "--model", "gamma", "--last", "2")
    assert "2 run(s) in hist" in one.stdout
    assert "beta-facts × gamma  (latest:" in one.stdout  # one skill × model: upskill's bars
    assert "  baseline   ░░░░░░░░░░░░░░░░░░░░        0%" in one.stdout
    assert "  with skill ████████████████████      100%  (+100%)" in one.stdout

    cost = runs_command(pytester, "hist", "--skill", "alpha-facts", "--model", "delta", "--metric", "cost")
    assert "metric: cost" in cost.stdout and "$0.0" in cost.stdout and "(+$0.0" in cost.stdout


def test_runs_says_what_is_wrong(pytester):
    missing = runs_command(pytester, "nowhere")
    assert missing.returncode == 1
    assert "nowhere: no such folder; write runs there with pytest --upskill-history DIR" in missing.stdout
    (pytester.path / "empty").mkdir()
    empty = runs_command(pytester, "empty")
    assert empty.returncode == 1 and "no runs in empty (0 report(s) read)" in empty.stdout
    bad = runs_command(pytester, "empty", "--last", "0")
    assert bad.returncode == 2 and "--last: must be a whole number of runs, 1 or more" in bad.stderr


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--upskill-html=out", "--upskill-html *out: this is a folder; name a file in it*"),
        (
            "--upskill-history=taken.txt",
            "--upskill-history (upskill_history) *taken.txt: this is a file, not a folder*",
        ),
    ],
)
def test_a_bad_output_is_a_usage_error_before_any_request(pytester, two_skills, model_server, option, message):
    (pytester.path / "out").mkdir()
    (pytester.path / "taken.txt").write_text("x")
    result = run(pytester, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}"])
    assert model_server.requests == []


# ------------------------------------------------------------------------------------ matrix


def test_the_summary_ends_with_a_skill_by_model_matrix_with_verdicts(pytester, two_skills):
    result = run(pytester, "--upskill-min-lift", "0.5", "--upskill-lenient")
    result.stdout.fnmatch_lines(
        [
            "*upskill: skill × model (pass rate baseline → with skill, lift)*",
            "skill        gamma               delta",
            "-----------  ------------------  ------------------",
            "alpha-facts  50% → 50% +0% ?✗    50% → 50% +0% ?✗",
            "beta-facts   0% → 100% +100% ?✓  0% → 100% +100% ?✓",
            "verdicts: ✓ PASS, ✗ FAIL, ?✓ / ?✗ INCONCLUSIVE that passes / fails the run (docs/ci.md: Gates)",
        ]
    )


def test_one_skill_or_one_model_prints_no_matrix(pytester, write_skill, model_server):
    write_skill("alpha-facts", {"tests": CASES}, body=ALPHA)
    aliases(pytester, model_server)
    result = pytester.runpytest("skills", "--upskill-models", "gamma,delta")
    assert "upskill: skill × model" not in result.stdout.str()


def test_the_history_folder_can_be_set_in_the_ini_file(pytester, two_skills):
    pyproject = pytester.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + '\n[tool.pytest.ini_options]\nupskill_history = "ci/history"\n')
    sub = pytester.path / "skills"
    result = pytester.runpytest_subprocess(str(sub), "--rootdir", str(pytester.path), "--upskill-models", "gamma")
    result.stdout.fnmatch_lines(["history: this run added as *ci/history/*.json*"])
    assert len(list((pytester.path / "ci" / "history").glob("*.json"))) == 1
