"""The teacher: what it is asked, the shape of its answers, and how an answer becomes a skill folder
that the plugin's own loaders accept.

Every answer is structured output (``Request.output``: Anthropic forced tool use, OpenAI JSON
schema, a local model's grammar) of one of the pydantic models below. An answer is validated by
those models and then by the plugin itself (the skill written to a folder and read back with
:func:`~pytest_upskill.skills.skill_md.load_skill` and :func:`~pytest_upskill.skills.skill_md.load_cases`, the very
code collection uses); an answer that fails is sent back with the error, a bounded number of
times, and then the command stops with a :class:`TeacherError` that says what was wrong.

The schemas have no optional fields (an empty string or list means "none"), so that OpenAI's strict
mode accepts them as they are.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from pytest_upskill.errors import SkillFileError, TeacherError
from pytest_upskill.files import write_atomic
from pytest_upskill.models import ModelSpec
from pytest_upskill.scoring import checks
from pytest_upskill.scoring.validators import ValidatorRegistry
from pytest_upskill.skills.skill_md import load_cases, load_skill
from pytest_upskill.types import Completion, Request, Tool

NAME_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"  # the Agent Skills spec's names (ASCII: what a teacher should write)
ANSWER_SHOWN = 6000  # characters of an unusable answer shown back to the teacher


def _shortened(limit: int) -> Any:
    """A name longer than ``limit`` cut at its last hyphen within it: a label, not worth sending a
    whole answer back for (a small model writes whole sentences as ids)."""

    def shorten(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            cut = value[:limit]
            value = cut.rsplit("-", 1)[0] if "-" in cut else cut
        return value

    return BeforeValidator(shorten)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContextFile(_Answer):
    path: str = Field(description="a relative path in the workspace, e.g. data/input.csv")
    content: str


class DraftCase(_Answer):
    """One test case, as the teacher writes it; :func:`case_files` makes upskill's format of it."""

    id: Annotated[str, _shortened(40)] = Field(
        pattern=NAME_PATTERN, max_length=40, description="short, unique, lowercase-with-hyphens"
    )
    input: str = Field(min_length=1, max_length=8000, description="the user's request, as a user would write it")
    kind: Literal["text", "files"] = Field(
        description="text: the answer is checked; files: the model works in a workspace and the file it writes is "
        "checked"
    )
    contains: list[str] = Field(
        description="strings the answer (text) or the output file (files) must all contain, compared "
        "case-insensitively; short and specific to what the skill teaches"
    )
    not_contains: list[str] = Field(description="strings that must not appear (a known wrong answer)")
    context_files: list[ContextFile] = Field(description="files given to the model with the request (may be empty)")
    output_file: str = Field(description="files: the file the model must write, e.g. build.toml; text: ''")
    validator: Literal["", "python_tests", "python_compiles", "toml_valid", "json_valid", "yaml_valid"] = Field(
        description="files: how the written file is judged beyond the strings ('' for none); python_tests runs "
        "test_code with pytest against the written code"
    )
    test_code: str = Field(
        description="python_tests: a pytest file that imports the output file's module and tests it; else ''"
    )
    required_keys: list[str] = Field(
        description="toml_valid, json_valid, yaml_valid: dotted keys the file must have; else empty"
    )

    @model_validator(mode="after")
    def _not_self_contradictory(self) -> DraftCase:
        """A string the answer must both contain and not contain: no answer passes, so the case measures
        nothing (an unusable answer, sent back to the teacher)."""
        both = sorted({c.lower() for c in self.contains} & {n.lower() for n in self.not_contains})
        if both:
            raise ValueError(f"case {self.id!r} requires and forbids the same string(s): {both}")
        return self


def unique_ids(cases: list[DraftCase], taken: set[str] | frozenset[str] = frozenset()) -> list[DraftCase]:
    """The cases with every id unique (and none of ``taken``): a repeated id gets -2, -3... (a label
    is no reason to send a whole answer back)."""
    seen = set(taken)
    renamed = []
    for case in cases:
        new, n = case.id, 1
        while new in seen:
            n += 1
            new = f"{case.id[: 40 - len(str(n)) - 1]}-{n}"
        seen.add(new)
        renamed.append(case if new == case.id else case.model_copy(update={"id": new}))
    return renamed


class DraftSkill(_Answer):
    name: Annotated[str, _shortened(64)] = Field(
        pattern=NAME_PATTERN, max_length=64, description="the skill's name, lowercase-with-hyphens"
    )
    description: str = Field(
        min_length=1, max_length=1024, description="what the skill does and when to use it, one or two sentences"
    )
    instructions: str = Field(min_length=1, description="the body of SKILL.md, in Markdown")
    cases: list[DraftCase]

    @model_validator(mode="after")
    def _unique(self) -> DraftSkill:
        self.cases = unique_ids(self.cases)
        return self


class Revision(_Answer):
    changes: str = Field(description="what you changed and why, in a few sentences")
    instructions: str = Field(min_length=1, description="the whole new body of SKILL.md, in Markdown")


class DraftCases(_Answer):
    cases: list[DraftCase]

    @model_validator(mode="after")
    def _unique(self) -> DraftCases:
        self.cases = unique_ids(self.cases)
        return self


T = TypeVar("T", bound=_Answer)


def _without_lengths(node: Any) -> Any:
    """A schema without string lengths: OpenAI's strict mode refuses them and llama.cpp's grammars
    cannot hold long ones; the answer's lengths are checked by the model itself, after."""
    if isinstance(node, dict):
        return {
            k: _without_lengths(v)
            for k, v in node.items()
            if k not in ("minLength", "maxLength") or isinstance(v, dict)
        }
    if isinstance(node, list):
        return [_without_lengths(v) for v in node]
    return node


def answer_tool(model: type[_Answer], name: str, description: str, count: int | None = None) -> Tool:
    """The structured answer ``model`` as the schema sent to the teacher; ``count`` fixes the number
    of cases (a small model under a grammar then cannot stop early or run on)."""
    schema = _without_lengths(model.model_json_schema())
    if count is not None:
        schema["properties"]["cases"].update(minItems=count, maxItems=count)
    return Tool(name, description, json.dumps(schema, sort_keys=True))


# ------------------------------------------------------------------------------------ prompts

SYSTEM = """You write Agent Skills: a SKILL.md (a name, a description, and Markdown instructions) that a smaller \
model reads before it does a task, so that it does the task the way an expert would. You also write test cases that \
show whether the skill helps: each case is a request a user would make, with checks that the answer passes when the \
model follows the skill and fails when it does not.

Good instructions are specific: exact names, values, formats, commands and conventions the model could not guess, \
a short worked example, and the mistakes to avoid. Keep them short: every token is paid on every request.

Good cases discriminate: a capable model that has not read the skill should fail them, and one that follows the \
skill should pass. Check for the specific facts the skill teaches (a value, a keyword, a file name), never for \
generic words. Checks compare strings case-insensitively; prefer one to three short strings per case. Where the task \
produces files or code, write a 'files' case: the model writes output_file in a workspace, and a validator judges it \
(python_tests with a pytest file in test_code, or toml_valid / json_valid / yaml_valid with required_keys).

Answer with the JSON object the schema describes, nothing else."""


def draft_prompt(task: str, cases: int, examples: list[str], source: str | None) -> str:
    parts = [f"Task: {task}", ""]
    if source:
        parts += [
            "Here is how the task was done before (an agent's trace or notes); turn what worked into the skill, "
            "and what went wrong into instructions that prevent it:",
            "<trace>",
            source,
            "</trace>",
            "",
        ]
    if examples:
        parts += ["Examples of the task (input -> expected output):", *[f"- {e}" for e in examples], ""]
    parts.append(f"Write the skill and exactly {cases} test case(s) for it.")
    return "\n".join(parts)


def held_out_prompt(task: str, cases: int, examples: list[str]) -> str:
    """The held-out cases' request: the task only, never the skill (so the cases cannot echo it)."""
    parts = [f"Task: {task}", ""]
    if examples:
        parts += ["Examples of the task (input -> expected output):", *[f"- {e}" for e in examples], ""]
    parts.append(
        f"Write exactly {cases} test case(s) for this task: requests a user would make, with checks that pass when "
        "the answer does the task well and fail when it does not. They test any instructions written for the "
        "task, which you do not see."
    )
    return "\n".join(parts)


def cases_prompt(skill_text: str, cases: int, adversary: bool, known: list[str]) -> str:
    ask = (
        f"Propose exactly {cases} new test case(s) on which a model that reads this skill should succeed but that "
        "a small model is likely to get wrong even with the skill: counterexamples, edge cases, the places where the "
        "instructions are easy to misread."
        if adversary
        else f"Write exactly {cases} test case(s) for this skill: requests a user would make, with checks that pass "
        "when the answer follows the skill and fail when it does not."
    )
    parts = ["The skill:", "<skill>", skill_text, "</skill>", "", ask]
    if known:
        parts += ["", "Do not repeat these case ids: " + ", ".join(known)]
    return "\n".join(parts)


def revise_prompt(skill_text: str, failures: str, figures: str) -> str:
    return "\n".join(
        [
            "This skill was tested on a smaller model, with and without it. " + figures,
            "",
            "The skill:",
            "<skill>",
            skill_text,
            "</skill>",
            "",
            "The cases the model still failed with the skill: the request, its answer, and the checks that failed:",
            failures,
            "",
            "Revise the instructions so that a model following them passes these cases, without writing the "
            "cases' answers into the skill: teach what the answers need, so that similar requests pass too. "
            "Keep what works.",
        ]
    )


def repair_prompt(prompt: str, answer: str, problem: str) -> str:
    shown = answer if len(answer) <= ANSWER_SHOWN else answer[:ANSWER_SHOWN] + " [...]"
    return (
        f"{prompt}\n\nYour previous answer was:\n<answer>\n{shown}\n</answer>\n"
        f"It cannot be used: {problem}\nAnswer again with the whole JSON object, fixing this."
    )


# ------------------------------------------------------------------------------------ asking


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(the object)'}: {e['msg']}" for e in exc.errors()[:8]
        )
    return f"not a JSON object: {exc}"


class Teacher:
    """Asks one model for structured answers, through the plugin's own transport (cache, retries,
    limiter, budget, redaction): ``send(spec, request)`` returns a completion or raises TrialError."""

    def __init__(
        self,
        spec: ModelSpec,
        send: Callable[[ModelSpec, Request], Completion],
        *,
        max_tokens: int,
        repairs: int,
        say: Callable[[str], None],
    ):
        self.spec, self.send, self.max_tokens, self.repairs, self.say = spec, send, max_tokens, repairs, say
        self.requests = 0

    def request(self, prompt: str, output: Tool) -> Request:
        return Request(
            system=SYSTEM,
            user=prompt,
            model=self.spec.model,
            temperature=self.spec.temperature,
            max_tokens=self.max_tokens,
            seed=self.spec.seed,
            output=output,
        )

    def ask(
        self,
        prompt: str,
        model: type[T],
        output: Tool,
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        """The teacher's answer to ``prompt`` as ``model``, accepted by ``check`` (None: usable; else
        what is wrong, sent back to the teacher)."""
        request = self.request(prompt, output)
        problem = ""
        for attempt in range(self.repairs + 1):
            self.requests += 1
            completion = self.send(self.spec, request)
            try:
                value = model.model_validate(json.loads(completion.text, strict=False))
            except (ValueError, ValidationError, RecursionError) as exc:
                problem = _problem(exc)
            else:
                found = check(value) if check is not None else None
                if found is None:
                    return value
                problem = found
            if completion.truncated:
                problem += f" (the answer stopped at the token limit, {self.max_tokens}: write less)"
            if attempt < self.repairs:
                self.say(f"  the teacher's answer cannot be used ({problem}); sent back ({attempt + 1}/{self.repairs})")
                request = replace(request, user=repair_prompt(prompt, completion.text, problem))
        raise TeacherError(
            f"the teacher {self.spec.name} gave no usable {output.name} answer in {self.repairs + 1} attempt(s); "
            f"the last: {problem}. Try another teacher (--teacher), or more attempts (--repairs)"
        )


# ------------------------------------------------------------------------------------ skill files


def case_files(draft: DraftCase) -> tuple[dict[str, Any], dict[str, str]]:
    """The case in upskill's format, and the files it needs in the skill folder (a python_tests file)."""
    case: dict[str, Any] = {"id": draft.id, "input": draft.input}
    expected: dict[str, Any] = {}
    if draft.contains:
        expected["contains"] = draft.contains
    if draft.not_contains:
        expected["not_contains"] = draft.not_contains
    case["expected"] = expected
    if draft.context_files:
        case["context"] = {"files": {f.path: f.content for f in draft.context_files}}
    extra: dict[str, str] = {}
    if draft.kind == "files":
        if draft.output_file:
            case["output_file"] = draft.output_file
        if draft.validator == "python_tests":
            # a name pytest never collects (not test_*.py or *_test.py): a drafted test, the teacher's code, runs only
            # inside python_tests' sandbox, never in a later plain pytest run with the developer's environment
            name = f"checks/check_{draft.id.replace('-', '_')}.py"
            extra[name] = draft.test_code
            case["validator"], case["validator_config"] = "python_tests", {"test_file": name}
        elif draft.validator in ("toml_valid", "json_valid", "yaml_valid"):
            case["validator"] = draft.validator
            if draft.required_keys:
                case["validator_config"] = {"required_keys": draft.required_keys}
        elif draft.validator:
            case["validator"] = draft.validator
    return case, extra


def cases_meta(drafts: list[DraftCase]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The drafted cases in upskill's format, and the files they need in the skill folder."""
    cases: list[dict[str, Any]] = []
    extra: dict[str, str] = {}
    for draft in drafts:
        data, files = case_files(draft)
        cases.append(data)
        extra.update(files)
    return cases, extra


def frontmatter(name: str, description: str) -> str:
    """YAML frontmatter; the description double-quoted (a JSON string is a YAML double-quoted scalar),
    so that no ':' or '#' in it can break the YAML."""
    return f"---\nname: {name}\ndescription: {json.dumps(description, ensure_ascii=False)}\n---\n"


def skill_md(front: str, instructions: str) -> str:
    return front + "\n" + instructions.strip() + "\n"


def front_of(path: Path) -> str:
    """The frontmatter block of a SKILL.md, verbatim (an improved skill keeps its own)."""
    text = path.read_text(encoding="utf-8-sig")
    match = re.match(r"---\r?\n.*?\r?\n---[ \t]*\r?\n", text, re.DOTALL)
    if match is None:
        raise SkillFileError(path, "does not start with YAML frontmatter")
    return match.group(0)


def write_files(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)


def write_skill(
    folder: Path, front: str, instructions: str, meta: dict[str, Any], extra: dict[str, str] | None = None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_files(folder, extra or {})
    write_atomic(folder / "SKILL.md", skill_md(front, instructions))
    write_atomic(folder / "skill_meta.json", json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def problems_of(folder: Path) -> str | None:
    """What the plugin's own loaders say of the skill in ``folder`` (None: it collects)."""
    try:
        load_skill(folder / "SKILL.md")
        registry = ValidatorRegistry()
        found = load_cases(
            folder / "skill_meta.json",
            checks.CheckRegistry().prepare,
            lambda name, config: registry.get(name).prepare(config, folder),
        )
    except SkillFileError as exc:
        return str(exc.shown_from(folder.parent)).replace("\n", " ")
    if not found.cases:
        return "there are no test cases"
    return None


def check_draft(draft: DraftSkill, cases: int) -> str | None:
    """Whether a drafted skill is what was asked and collects, tried in a scratch folder named after it."""
    if len(draft.cases) != cases:
        return f"write exactly {cases} test case(s), not {len(draft.cases)}"
    scratch = Path(tempfile.mkdtemp(prefix="upskill-draft-"))
    try:
        tests, extra = cases_meta(draft.cases)
        write_skill(
            scratch / draft.name,
            frontmatter(draft.name, draft.description),
            draft.instructions,
            {"tests": tests},
            extra,
        )
        return problems_of(scratch / draft.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_cases(drafts: list[DraftCase], cases: int, skill_dir: Path, known: set[str]) -> str | None:
    """Whether drafted cases are as many as asked, new, and load beside the skill in ``skill_dir``."""
    if len(drafts) != cases:
        return f"write exactly {cases} test case(s), not {len(drafts)}"
    drafts = unique_ids(drafts, known)
    scratch = Path(tempfile.mkdtemp(prefix="upskill-cases-"))
    try:
        folder = scratch / skill_dir.name
        shutil.copytree(skill_dir, folder, ignore=shutil.ignore_patterns("skill_meta*.json", ".*"))
        tests, extra = cases_meta(drafts)
        write_files(folder, extra)
        (folder / "skill_meta.json").write_text(json.dumps({"tests": tests}), encoding="utf-8")
        return problems_of(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
