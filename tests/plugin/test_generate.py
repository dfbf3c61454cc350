"""``pytest-upskill generate`` and ``cases`` (issue 17), driven as a user drives them: the command in a
subprocess, the teacher and the students loopback servers that the real SDKs talk to (structured
output in both protocols), and the bundled local model as a teacher under a JSON grammar."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_upskill.teach.traces import cut, read_trace
from pytest_upskill.testing import LoopbackServer, Turn


def draft_case(case_id: str, word: str, **more) -> dict:
    case = {
        "id": case_id,
        "input": f"Request {case_id}: what is the word?",
        "kind": "text",
        "contains": [word],
        "not_contains": [],
        "context_files": [],
        "output_file": "",
        "validator": "",
        "test_code": "",
        "required_keys": [],
    }
    case.update(more)
    return case


CODE_CASE = draft_case(
    "adds",
    "def add",
    input="Write calc.py with add(a, b).",
    kind="files",
    output_file="calc.py",
    validator="python_tests",
    test_code="from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
)
GOOD = "Answer with the word XYZZY.\n\n```calc.py\ndef add(a, b):\n    return a + b\n```"


def upskill(pytester, *args: str, timeout: float = 240):
    return pytester.run(sys.executable, "-m", "pytest_upskill", *args, timeout=timeout)


def draft_cases_for_wordy(pytester, teacher: str, student: str, *more: str):
    """``pytest-upskill cases skills/wordy --teacher T --student S ...`` (the skill most tests here draft for)."""
    return upskill(pytester, "cases", "skills/wordy", "--teacher", teacher, "--student", student, *more)


def skill_of(path) -> dict:
    return json.loads((path / "skill_meta.json").read_text())


class Teacher:
    """A scripted teacher: the answers to give per schema, in turn (the last one repeats)."""

    def __init__(self, **answers):
        self.answers = {name: list(given) for name, given in answers.items()}
        self.turns: list[Turn] = []

    def __call__(self, turn: Turn):
        if turn.schema == "write_held_out_cases" and turn.schema not in self.answers:
            self.turns.append(turn)  # by default: as many cases as asked, answered with the word
            count = int(turn.user.split("Write exactly ", 1)[1].split()[0])
            return {"cases": [draft_case(f"held-{i}", "XYZZY") for i in range(1, count + 1)]}
        if turn.schema not in self.answers:
            return None
        self.turns.append(turn)
        given = self.answers[turn.schema]
        return given.pop(0) if len(given) > 1 else given[0]

    def asked(self, schema: str) -> list[Turn]:
        return [t for t in self.turns if t.schema == schema]


def test_the_commands_say_what_they_do(pytester):
    result = upskill(pytester, "generate", "--help")
    assert result.ret == 0
    out = result.stdout.str()
    for option in ("--teacher", "--student", "--example", "--from", "--out", "--cases", "--attempts", "--held-out"):
        assert option in out
    assert "--max-cost" in out and "--plan" in out
    result = upskill(pytester, "cases", "--help")
    assert result.ret == 0 and "--adversary" in result.stdout.str()
    result = pytester.run(Path(sys.executable).with_name("pytest-upskill"), "--help")  # the console script
    assert result.ret == 0 and "generate" in result.stdout.str() and "cases" in result.stdout.str()


def test_generate_drafts_measures_and_revises_until_the_skill_helps_keeping_held_out_cases_unseen(pytester):
    """OpenAI's JSON schema: the draft does not help, the revision does; the skill written collects
    and passes; the teacher never sees a held-out case; every attempt's figures are recorded."""
    cases = [draft_case(f"case-{i}", "XYZZY") for i in range(1, 6)] + [CODE_CASE]
    draft = {
        "name": "magic-word",
        "description": "Answers with the magic word.",
        "instructions": "Be brief.",
        "cases": cases,
    }
    teacher = Teacher(write_skill=[draft], revise_skill=[{"changes": "taught the word", "instructions": GOOD}])
    with LoopbackServer(teacher=teacher) as server:
        url = server.openai_base_url
        result = upskill(
            pytester,
            "generate",
            "answer with the magic word",
            "--teacher",
            f"openai:t@{url}",
            "--student",
            f"openai:s@{url}",
        )
        first = next(r.body for r in server.requests if r.body.get("response_format"))
    assert result.ret == 0, result.stdout.str()
    form = first["response_format"]
    assert form["type"] == "json_schema" and form["json_schema"]["name"] == "write_skill"
    assert (
        form["json_schema"]["strict"] is True and form["json_schema"]["schema"]["properties"]["cases"]["maxItems"] == 6
    )
    held = json.loads((pytester.path / "skills/magic-word/skill_meta.json").read_text())["metadata"]["splits"][
        "held_out"
    ]
    assert held == [f"held-{i}" for i in range(1, 7)]  # drafted apart: 6 by default
    result.stdout.fnmatch_lines(
        [
            "teacher openai:t@* drafts 6 held-out case(s) from the task alone, in a request of their own: it never "
            "sees the skill with them, nor how they went",
            f"cases: 6 for training, 6 held out ({', '.join(held)}): the teacher never sees how a held-out case went; "
            "they decide the exit status. 6 held-out case(s) × 1 run(s) give 80% power to pass --min-lift 0 for a "
            "true lift of +7*% or more",
            "attempt 1  openai:s@*: 0% → 0% (+0% [[]95% CI *]) on 6 case(s) INCONCLUSIVE; held out: *",
            "attempt 2: the teacher revises the skill on the training failures",
            "attempt 2  openai:s@*: 0% → 100% (+100% [[]95% CI +*, +100%]) on 6 case(s) PASS; held out: 0% → 100% *",
            "written: skills/magic-word/SKILL.md and skill_meta.json (12 case(s))",
            "kept attempt 2 of 2 *",
            "  openai:s@*: held-out cases, never shown to the teacher: 0% → 100% (+100% *) on 6 case(s): PASS against "
            "--min-lift 0",
            "  openai:s@*: training cases (optimistic: the loop fitted them): 0% → 100% *: PASS",
            "exit 0: the kept skill's lift on the held-out cases is PASS against --min-lift 0 on every student",
        ]
    )
    (asked,) = teacher.asked("write_held_out_cases")
    assert "Be brief." not in asked.user and "answer with the magic word" in asked.user  # the task, not the skill
    revise = teacher.asked("revise_skill")[0].user
    for case in held:
        assert f"case {case} " not in revise and f"Request {case}:" not in revise
    assert any(f"### case {c['id']} " in revise for c in cases)
    assert "Be brief." in revise  # the version it revises
    meta = skill_of(pytester.path / "skills/magic-word")
    assert meta["metadata"]["source_task"] == "answer with the magic word"
    assert meta["metadata"]["kept_attempt"] == 2 and len(meta["metadata"]["attempts"]) == 2
    assert meta["metadata"]["attempts"][1]["results"][f"openai:s@{url}"]["train"]["verdict"] == "PASS"
    code = next(c for c in meta["tests"] if c["id"] == "adds")
    assert (
        code["validator"] == "python_tests"
        and (pytester.path / "skills/magic-word" / code["validator_config"]["test_file"]).is_file()
    )
    assert "XYZZY" in (pytester.path / "skills/magic-word/SKILL.md").read_text()
    assert not list(pytester.path.glob("skills/.upskill-attempts-*"))  # the scratch versions are gone
    # the skill written is one the plugin collects and runs: the workspace case's validator passes with it
    with LoopbackServer() as student:
        run = pytester.runpytest("skills", "--upskill-models", f"openai:s@{student.openai_base_url}", "-p", "no:xdist")
    run.assert_outcomes(passed=12, xfailed=12)


def test_an_unusable_answer_is_sent_back_with_what_is_wrong_anthropic_forced_tool_use(pytester):
    good = {
        "name": "greeter",
        "description": "Greets.",
        "instructions": "Say XYZZY.",
        "cases": [draft_case(f"c-{i}", "XYZZY") for i in range(3)],
    }
    bad = {"name": "Not A Name", "description": "Greets.", "instructions": "Say XYZZY."}
    teacher = Teacher(write_skill=[bad, good])
    with LoopbackServer(teacher=teacher) as server:
        url = server.anthropic_base_url
        result = upskill(
            pytester,
            "generate",
            "greet",
            "--teacher",
            f"anthropic:t@{url}",
            "--student",
            f"anthropic:s@{url}",
            "--cases",
            "3",
        )
        forced = [r.body for r in server.requests if r.body.get("tool_choice")]
    assert result.ret == 0, result.stdout.str()
    assert forced[0]["tool_choice"] == {"type": "tool", "name": "write_skill"}
    assert [t["name"] for t in forced[0]["tools"]] == ["write_skill"]
    result.stdout.fnmatch_lines(
        [
            "  the teacher's answer cannot be used (name: String should match pattern*cases: Field required*); "
            "sent back (1/2)"
        ]
    )
    again = teacher.asked("write_skill")[1].user
    assert "Your previous answer was:" in again and "Not A Name" in again and "cases: Field required" in again
    assert (pytester.path / "skills/greeter/SKILL.md").is_file()


def test_a_teacher_that_never_answers_usably_stops_the_command_saying_why(pytester):
    teacher = Teacher(write_skill=["this is not JSON"])
    with LoopbackServer(teacher=teacher) as server:
        url = server.openai_base_url
        result = upskill(pytester, "generate", "greet", "--teacher", f"openai:t@{url}", "--repairs", "1")
    assert result.ret == 3
    result.stdout.fnmatch_lines(
        [
            "pytest-upskill generate: the teacher openai:t@* gave no usable write_skill answer in 2 attempt(s); "
            "the last: not a JSON object: *. Try another teacher (--teacher), or more attempts (--repairs)"
        ]
    )
    assert len(teacher.asked("write_skill")) == 2
    assert not (pytester.path / "skills").exists() or not any((pytester.path / "skills").iterdir())


def test_a_revision_that_does_not_help_is_not_kept(pytester):
    """The kept version is the best by the lower bound of the training lift, not the last one."""
    cases = [draft_case(f"x-{i}", "XYZZY") for i in range(3)] + [draft_case(f"y-{i}", "PLUGH") for i in range(3)]
    draft = {"name": "half", "description": "Half right.", "instructions": "Say XYZZY.", "cases": cases}
    worse = {"changes": "rewrote everything", "instructions": "Say nothing useful."}
    teacher = Teacher(write_skill=[draft], revise_skill=[worse])
    with LoopbackServer(teacher=teacher) as server:
        url = server.openai_base_url
        result = upskill(
            pytester,
            "generate",
            "half",
            "--teacher",
            f"openai:t@{url}",
            "--attempts",
            "1",
            "--min-lift",
            "0.9",
            "--held-out",
            "0",
        )
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "cases: all 6 for training; none held out*",
            "attempt 1  openai:t@*: 0% → 50% (+50% *) on 6 case(s) FAIL",
            "attempt 2  openai:t@*: 0% → 0% (+0% *) on 6 case(s) FAIL",
            "kept attempt 1 of 2 *",
            "exit 1: the skill was written, but its lift on the training cases is not PASS against --min-lift 0.9*",
        ]
    )
    assert "Say XYZZY." in (pytester.path / "skills/half/SKILL.md").read_text()
    assert skill_of(pytester.path / "skills/half")["metadata"]["kept_attempt"] == 1


def test_a_new_skill_never_goes_into_an_existing_folder(pytester, write_skill):
    mine = write_skill("greeter", {"tests": []}, body="My own words.")
    before = (mine / "SKILL.md").read_text()
    good = {
        "name": "greeter",
        "description": "Greets.",
        "instructions": "Say XYZZY.",
        "cases": [draft_case("c-1", "XYZZY")],
    }
    with LoopbackServer(teacher=Teacher(write_skill=[good])) as server:
        result = upskill(
            pytester,
            "generate",
            "greet",
            "--teacher",
            f"openai:t@{server.openai_base_url}",
            "--cases",
            "1",
            "--held-out",
            "0",
        )
    assert result.ret == 1, result.stdout.str()  # written, but one case cannot make the interval PASS
    result.stdout.fnmatch_lines(["exit 1: the skill was written, but *more cases or runs narrow the interval"])
    result.stdout.fnmatch_lines(
        ["skills/greeter exists: the new skill is named greeter-2 (nothing existing is changed)"]
    )
    assert (mine / "SKILL.md").read_text() == before
    assert "name: greeter-2" in (pytester.path / "skills/greeter-2/SKILL.md").read_text()


def test_improving_a_skill_writes_beside_it_or_over_it_with_force_keeping_the_old_text(pytester, write_skill):
    cases = {
        "metadata": {"owner": "team-a"},
        "tests": [{"id": f"k-{i}", "input": "word?", "expected": {"contains": "XYZZY"}} for i in range(9)],
    }
    folder = write_skill("wordy", cases, body="Say hello.")
    (folder / "references").mkdir()
    (folder / "references" / "notes.md").write_text("kept with every version")
    old = (folder / "SKILL.md").read_text()
    teacher = Teacher(revise_skill=[{"changes": "the word", "instructions": "Say XYZZY."}])
    with LoopbackServer(teacher=teacher) as server:
        url = server.openai_base_url
        args = ["generate", "teach the word", "--from", "skills/wordy", "--teacher", f"openai:t@{url}"]
        result = upskill(pytester, *args)
        assert result.ret == 0, result.stdout.str()
        assert (folder / "SKILL.md").read_text() == old  # not overwritten
        proposed = (folder / "SKILL.proposed.md").read_text()
        assert proposed.startswith("---\nname: wordy\ndescription: Test skill wordy.\n---") and "Say XYZZY." in proposed
        meta = json.loads((folder / "skill_meta.proposed.json").read_text())
        assert meta["metadata"]["owner"] == "team-a" and meta["metadata"]["kept_attempt"] == 2
        result.stdout.fnmatch_lines(
            ["written beside the old files: skills/wordy/SKILL.proposed.md and skill_meta.proposed.json*"]
        )
        result = upskill(pytester, *args, "--force")
    assert result.ret == 0, result.stdout.str()
    assert "Say XYZZY." in (folder / "SKILL.md").read_text()
    assert (folder / "SKILL.md.orig").read_text() == old
    assert json.loads((folder / "skill_meta.json.orig").read_text()) == cases
    assert json.loads((folder / "skill_meta.json").read_text())["metadata"]["owner"] == "team-a"
    result.stdout.fnmatch_lines(
        [
            "written: skills/wordy/SKILL.md and skill_meta.json (--force); "
            "the old files kept as SKILL.md.orig, skill_meta.json.orig"
        ]
    )


CLAUDE_CODE = [
    {"type": "user", "message": {"role": "user", "content": "Build the kernel for H100."}},
    {
        "type": "assistant",
        "message": {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Writing build.toml."},
                {"type": "tool_use", "id": "t1", "name": "Write", "input": {"file_path": "build.toml"}},
            ],
        },
    },
    {
        "type": "user",
        "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]},
    },
]


@pytest.mark.parametrize(
    "name, content, form, shown",
    [
        (
            "trace.jsonl",
            "\n".join(json.dumps(e) for e in CLAUDE_CODE),
            "Claude Code transcript",
            ["USER: Build the kernel for H100.", '[tool call Write: {"file_path": "build.toml"}]', "[tool result: ok]"],
        ),
        (
            "messages.json",
            json.dumps(
                [
                    {"role": "user", "content": "Parse YAML"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "1", "type": "function", "function": {"name": "run", "arguments": "{}"}}],
                    },
                    {"role": "tool", "tool_call_id": "1", "content": "done"},
                ]
            ),
            "messages JSON",
            ["USER: Parse YAML", "[tool call run: {}]", "TOOL: done"],
        ),
        (
            "history.json",
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "Parse YAML"}]},
                        {
                            "role": "assistant",
                            "content": [],
                            "tool_calls": {
                                "c1": {"method": "tools/call", "params": {"name": "read", "arguments": {"p": 1}}}
                            },
                        },
                        {
                            "role": "user",
                            "content": [],
                            "tool_results": {"c1": {"content": [{"type": "text", "text": "a: 1"}], "isError": False}},
                        },
                    ]
                }
            ),
            "fast-agent history",
            ["USER: Parse YAML", '[tool call read: {"p": 1}]', "[tool result: a: 1]"],
        ),
        ("notes.md", "# How I did it\n\nRan `make`.", "text", ["# How I did it", "Ran `make`."]),
    ],
)
def test_traces_are_read_in_the_formats_agents_write(tmp_path, name, content, form, shown):
    path = tmp_path / name
    path.write_text(content)
    text, found = read_trace(path)
    assert found == form
    for line in shown:
        assert line in text


def test_a_long_trace_is_cut_to_its_budget_keeping_its_beginning_and_end(pytester):
    trace = "BEGINNING " + "middle " * 5000 + " THE END"
    (pytester.path / "trace.md").write_text(trace)
    good = {
        "name": "from-trace",
        "description": "From a trace.",
        "instructions": "Say XYZZY.",
        "cases": [draft_case("c-1", "XYZZY")],
    }
    teacher = Teacher(write_skill=[good])
    with LoopbackServer(teacher=teacher) as server:
        result = upskill(
            pytester,
            "generate",
            "distil",
            "--from",
            "trace.md",
            "--trace-chars",
            "2000",
            "--cases",
            "1",
            "--held-out",
            "0",
            "--teacher",
            f"openai:t@{server.openai_base_url}",
        )
    assert result.ret == 1, result.stdout.str()  # one case: written, not PASS
    result.stdout.fnmatch_lines(
        ["trace: trace.md read as text, 35,018 characters; cut to 2,000 (--trace-chars): 33,0* from the middle"]
    )
    prompt = teacher.asked("write_skill")[0].user
    assert "BEGINNING" in prompt and "THE END" in prompt and "characters of the trace cut here" in prompt
    assert len(prompt) < 2000 + 1000
    assert skill_of(pytester.path / "skills/from-trace")["metadata"]["source"] == "trace.md (text)"
    assert cut("short", 100) == ("short", 0)


def test_cases_drafts_keeps_counterexamples_that_discriminate_and_audits_the_rest(pytester, write_skill):
    folder = write_skill("wordy", {"tests": []}, body="Say XYZZY.")
    teacher = Teacher(write_cases=[{"cases": [draft_case("helps", "XYZZY"), draft_case("trivial", "sure")]}])
    adversary = Teacher(write_cases=[{"cases": [draft_case("edge", "xyzzy"), draft_case("impossible", "PLUGH")]}])

    def both(turn: Turn):
        return (adversary if "counterexamples" in turn.user else teacher)(turn)

    with LoopbackServer(teacher=both, reply=lambda system, user: "Sure: " + system[-40:]) as server:
        url = server.openai_base_url
        result = draft_cases_for_wordy(
            pytester,
            f"openai:t@{url}",
            f"openai:s@{url}",
            "--adversary",
            f"openai:a@{url}",
            "--cases",
            "2",
            "--adversary-cases",
            "2",
        )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "  drafted case trivial measures nothing: openai:s@*: passes in both arms in every run",
            "  counterexample impossible dropped: it does not discriminate "
            "(openai:s@*: fails in both arms in every run)",
            "  counterexample edge kept: its arms differed on at least one student (chosen on this run, which is "
            "not cached: the next run measures it afresh)",
            "written: skills/wordy/skill_meta.json (3 case(s)); the old file kept as skill_meta.json.orig",
            "exit 0: 2 of 3 new case(s) discriminate on at least one student",
        ]
    )
    # issue 30, item 7: the run the cases were chosen on is not cached (only the two teachers' answers
    # are), so the suite's next run measures them afresh instead of replaying the selection
    assert len(list((pytester.path / ".upskill-cache").rglob("*.json"))) == 2
    meta = skill_of(folder)
    assert [c["id"] for c in meta["tests"]] == ["helps", "trivial", "edge"]
    assert meta["metadata"]["measures_nothing"] == ["trivial"]
    adversary_prompt = adversary.asked("write_cases")[0].user
    assert "Say XYZZY." in adversary_prompt and "helps, trivial" in adversary_prompt


def test_plan_and_max_cost_cover_the_teachers_requests(pytester):
    pytester.makepyprojecttoml(
        """
        [tool.upskill.models.priced]
        provider = "openai"
        model = "t"
        base_url = "http://127.0.0.1:9/v1"
        input_price = 3.0
        output_price = 15.0
        """
    )
    result = upskill(pytester, "generate", "greet", "--teacher", "priced", "--student", "priced", "--plan")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "model * role * requests * est. input tok * max output tok * est. cost",
            "priced * teacher * 15 * $*",  # 3 for the draft, 3 for the held-out cases, 9 for 3 revisions
            "priced * student * 96 * $*",  # 4 versions × 12 cases × 2 arms
            "at most 4 version(s) of the skill (--attempts 3), *; nothing was sent",
        ]
    )
    pytester.mkdir("skills")
    (pytester.path / "skills/wordy").mkdir()
    (pytester.path / "skills/wordy/SKILL.md").write_text("---\nname: wordy\ndescription: Words.\n---\nSay XYZZY.\n")
    result = upskill(pytester, "cases", "skills/wordy", "--teacher", "priced", "--adversary", "priced", "--plan")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["priced * teacher * 3 *", "priced * adversary * 3 *", "priced * student * 16 *"])
    with LoopbackServer(teacher=Teacher(write_skill=["{}"])) as server:
        pytester.makepyprojecttoml(
            f"""
            [tool.upskill.models.priced]
            provider = "openai"
            model = "t"
            base_url = "{server.openai_base_url}"
            input_price = 3.0
            output_price = 15.0
            """
        )
        result = upskill(pytester, "generate", "greet", "--teacher", "priced", "--max-cost", "0")
        assert not server.requests
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["pytest-upskill generate: stopped: priced: not sent: the estimated spend passed --upskill-max-cost $0*"]
    )


@pytest.mark.slow  # the real local model as teacher
def test_the_bundled_local_model_as_teacher_writes_a_spec_valid_skill_that_collects(pytester):
    """Quality aside: SmolLM2 under a grammar-forced JSON answer writes a skill the reference
    validator accepts and the plugin collects."""
    pytest.importorskip("llama_cpp")
    from skills_ref.validator import validate

    with LoopbackServer() as student:
        result = upskill(
            pytester,
            "generate",
            "convert temperatures from Celsius to Fahrenheit",
            "--teacher",
            "smollm2",
            "--student",
            f"openai:s@{student.openai_base_url}",
            "--cases",
            "2",
            "--attempts",
            "0",
            "--teacher-max-tokens",
            "1024",
            "--repairs",
            "3",
            timeout=600,
        )
    assert result.ret in (0, 1), result.stdout.str()
    folders = [p.parent for p in (pytester.path / "skills").glob("*/SKILL.md")]
    assert len(folders) == 1, result.stdout.str()
    assert validate(folders[0]) == []
    collected = pytester.runpytest(
        "--collect-only", "-q", "skills", "--upskill-models", "openai:s@http://127.0.0.1:9/v1"
    )
    collected.stdout.fnmatch_lines(["4 tests collected*"])


def test_cases_for_a_skill_that_has_some_go_beside_its_file(pytester, write_skill):
    mine = {
        "thresholds": {"min_lift": 0.1},
        "tests": [{"id": "old", "input": "word?", "expected": {"contains": "XYZZY"}}],
    }
    folder = write_skill("wordy", mine, body="Say XYZZY.")
    teacher = Teacher(write_cases=[{"cases": [draft_case("old", "XYZZY")]}])  # an id that is taken: renamed
    with LoopbackServer(teacher=teacher) as server:
        url = server.openai_base_url
        result = upskill(pytester, "cases", "skills/wordy", "--teacher", f"openai:t@{url}", "--cases", "1")
    assert result.ret == 0, result.stdout.str()
    assert json.loads((folder / "skill_meta.json").read_text()) == mine
    proposed = json.loads((folder / "skill_meta.proposed.json").read_text())
    assert [c["id"] for c in proposed["tests"]] == ["old", "old-2"] and proposed["thresholds"] == {"min_lift": 0.1}
    assert not (folder / "SKILL.proposed.md").exists()
    result.stdout.fnmatch_lines(["written beside the old file: skills/wordy/skill_meta.proposed.json (2 case(s))*"])


def test_the_teachers_and_students_answers_are_cached_like_any_run(pytester):
    """The same cache as the plugin's runs: the same command again does not ask the teacher again,
    nor send the baselines; only the with-skill trials go out, the skill being named cached-2 now."""
    good = {
        "name": "cached",
        "description": "Cached.",
        "instructions": "Say XYZZY.",
        "cases": [draft_case(f"c-{i}", "XYZZY") for i in range(3)],
    }
    with LoopbackServer(teacher=Teacher(write_skill=[good])) as server:
        args = ["generate", "greet", "--teacher", f"openai:t@{server.openai_base_url}", "--cases", "3"]
        first = upskill(pytester, *args)
        sent = len(server.requests)
        second = upskill(pytester, *args)
        again = server.requests[sent:]
    assert first.ret == second.ret == 0, second.stdout.str()
    assert sent == 2 + 18 and any((pytester.path / ".upskill-cache").rglob("*.json"))  # draft, held-out, trials
    assert len(again) == 9 and all('<skill name="cached-2">' in r.body["messages"][0]["content"] for r in again)
    second.stdout.fnmatch_lines(["skills/cached exists: the new skill is named cached-2*"])


def test_a_case_that_requires_and_forbids_the_same_string_is_sent_back(pytester, write_skill):
    write_skill("wordy", {"tests": []}, body="Say XYZZY.")
    contradictory = draft_case("both", "Hello", not_contains=["hello"])
    teacher = Teacher(write_cases=[{"cases": [contradictory]}, {"cases": [draft_case("fine", "XYZZY")]}])
    with LoopbackServer(teacher=teacher) as server:
        url = server.openai_base_url
        result = draft_cases_for_wordy(pytester, f"openai:t@{url}", f"openai:s@{url}", "--cases", "1")
    result.stdout.fnmatch_lines(["*requires and forbids the same string(s): ?'hello'?*sent back*"])
    assert [c["id"] for c in skill_of(pytester.path / "skills" / "wordy")["tests"]] == ["fine"]


def test_the_plan_of_cases_names_no_option_cases_does_not_have(pytester, write_skill):
    write_skill("wordy", {"tests": []}, body="Say XYZZY.")
    pytester.makepyprojecttoml(
        """
        [tool.upskill.models.priced]
        provider = "openai"
        model = "t"
        base_url = "http://127.0.0.1:9/v1"
        """
    )
    result = draft_cases_for_wordy(pytester, "priced", "priced", "--plan")
    assert result.ret == 0, result.stdout.str()
    assert "--attempts" not in result.stdout.str()
    result.stdout.fnmatch_lines(["one version of the skill, each answer of the teacher sent back at most*"])


def test_a_slow_teacher_gets_progress_lines_while_it_writes(pytester):
    """A local teacher may write for minutes (issue 28): a line every upskill_progress seconds says it is at work."""
    pytester.makeini("[pytest]\nupskill_progress = 1\n")
    skill = {"name": "greet", "description": "Greets.", "instructions": GOOD, "cases": [draft_case("hi", "XYZZY")]}
    teacher = Teacher(write_skill=[skill])
    with LoopbackServer(teacher=teacher, latency_s=2.5) as server:
        url = server.openai_base_url
        result = upskill(
            pytester,
            "generate",
            "greet",
            "--teacher",
            f"openai:t@{url}",
            "--student",
            f"openai:s@{url}",
            "--cases",
            "1",
            "--attempts",
            "0",
        )
    result.stdout.fnmatch_lines(["  still waiting for openai:t@*: 1 s (at most --timeout per attempt)"])


def test_the_exit_status_is_the_held_out_verdict_not_the_training_lift_the_loop_fitted(pytester):
    """Issue 30, item 6: a skill that fits its training cases and not the task fails on the cases
    drafted apart from it; a teacher that cannot draft them leaves the decision to the training
    cases, labelled optimistic."""
    good = {
        "name": "fitted",
        "description": "Says the word.",
        "instructions": "Answer with the word XYZZY.",
        "cases": [draft_case(f"c-{i}", "XYZZY") for i in range(6)],
    }
    other = {"cases": [draft_case(f"h-{i}", "PLUGH") for i in range(6)]}  # what the task really asks
    with LoopbackServer(teacher=Teacher(write_skill=[good], write_held_out_cases=[other])) as server:
        fitted = upskill(pytester, "generate", "say the word", "--teacher", f"openai:t@{server.openai_base_url}")
    assert fitted.ret == 1, fitted.stdout.str()
    fitted.stdout.fnmatch_lines(
        [
            "  openai:t@*: held-out cases, never shown to the teacher: 0% → 0% (+0% *) on 6 case(s): INCONCLUSIVE "
            "against --min-lift 0",
            "  openai:t@*: training cases (optimistic: the loop fitted them): 0% → 100% *: PASS",
            "exit 1: the skill was written, but its lift on the held-out cases is not PASS against --min-lift 0*",
        ]
    )
    good["name"] = "unheld"
    with LoopbackServer(teacher=Teacher(write_skill=[good], write_held_out_cases=["not JSON"])) as server:
        unheld = upskill(pytester, "generate", "say the word", "--teacher", f"openai:t@{server.openai_base_url}")
    unheld.stdout.fnmatch_lines(
        [
            "  no usable held-out cases (*); going on without them",
            "cases: all 6 for training; none held out: the exit status is decided on the training cases, which the "
            "loop fits (optimistic)",
            "exit 0: the kept skill's lift on the training cases is PASS against --min-lift 0 on every student "
            "(training cases only: optimistic, nothing was held out)",
        ]
    )
    assert unheld.ret == 0 and (pytester.path / "skills/unheld/SKILL.md").is_file()
