"""Load and validate a skill: ``SKILL.md`` (Agent Skills spec) and ``skill_meta.json`` (upskill's cases).

Every problem is a :class:`SkillFileError` that names the file, the line (and column) where there
is one, what is wrong and how to fix it. Nothing here knows about pytest.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from pytest_upskill.errors import SkillFileError
from pytest_upskill.scoring.sandbox import path_problem
from pytest_upskill.types import SpecMode

SPEC_URL = "https://agentskills.io/specification"


class Skill(BaseModel):
    """A parsed and validated SKILL.md."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    body: str
    path: Path
    frontmatter: dict[str, Any]
    spec_findings: tuple[str, ...] = ()  # what breaks the Agent Skills spec, tested anyway (--upskill-spec warn)


def _workspace_path(name: str) -> str:
    problem = path_problem(name)
    if problem:
        raise ValueError(problem)
    return name


class CaseContext(BaseModel):
    model_config = ConfigDict(extra="forbid")

    files: dict[Annotated[str, AfterValidator(_workspace_path)], str] | None = None


class Case(BaseModel):
    """One test case, in upskill's TestCase format plus optional ``id``/``name``; or a trigger case
    in skill-creator's trigger-eval format (``query``, ``should_trigger``); or a case with
    ``expectations`` that a judge grades (skill-creator's evals.json, read by :mod:`.evals`)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    name: str | None = None
    input: str
    expected: dict[str, Any]
    # a trigger case: among the catalog of skills, should the model load this one for ``input``?
    should_trigger: bool | None = None
    # graded by the judge model, one verdict per expectation (the Agent Skills guide calls them assertions)
    expectations: list[Annotated[str, Field(min_length=1, max_length=4000)]] | None = Field(
        default=None, min_length=1, max_length=100
    )
    expected_output: str | None = Field(default=None, max_length=100_000)  # for the judge: what success looks like
    context: CaseContext | None = None
    output_file: Annotated[str, AfterValidator(_workspace_path)] | None = None
    validator: str | None = None
    validator_config: dict[str, Any] | None = (
        None  # upskill allows scalars; built-in validators also take lists and objects
    )
    max_turns: int | None = Field(default=None, ge=1, le=200)  # of a workspace trial (default: --upskill-max-turns)
    max_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000
    )  # of each answer (default: the model's, 1024 unless its alias says)
    # Filled by the loader: the case's node-id-safe identifier and its line in the file.
    key: str = Field(default="", exclude=True)
    source: str = Field(default="", exclude=True)  # evals.json: the file the case came from, where not skill_meta.json
    line: int | None = Field(default=None, exclude=True)
    prepared_validator: Any = Field(
        default=None, exclude=True
    )  # what the validator's prepare() made of validator_config

    @model_validator(mode="before")
    @classmethod
    def _other_formats(cls, data: Any) -> Any:
        """skill-creator's trigger case names its input ``query``; the Agent Skills guide names
        expectations ``assertions``. A trigger case or a graded one needs no ``expected``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for theirs, ours in (("query", "input"), ("assertions", "expectations")):
            if theirs in data and ours not in data:
                data[ours] = data.pop(theirs)
        if "expected" not in data and ("should_trigger" in data or "expectations" in data):
            data["expected"] = {}
        return data

    @property
    def is_trigger(self) -> bool:
        return self.should_trigger is not None


CASE_FIELDS = tuple(
    name for name, f in Case.model_fields.items() if not f.exclude
)  # what a case may hold (not what the loader adds)
TRIGGER_FIELDS = ("id", "name", "input", "expected", "should_trigger", "max_turns", "max_tokens")


# --------------------------------------------------------------------------------------- SKILL.md


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SkillFileError(path, f"is not valid UTF-8 (byte {exc.start})", "save the file as UTF-8", line) from None


MAX_FILE_BYTES = 64 << 20  # of any file read from a skill folder (a 20,000-case skill_meta.json is ~10 MB)


def inside(folder: Path, name: str) -> Path:
    """The regular file ``name`` of a skill folder, resolved; ValueError when it is not one or when
    it leaves the folder: an absolute path, ``..``, or a symbolic link anywhere on the way that
    points out (a pull request's ``notes.md -> /proc/self/environ`` reads nothing)."""
    problem = path_problem(name)
    if problem:
        raise ValueError(problem.replace("the workspace", "the skill folder"))
    root = folder.resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{name!r} leaves the skill folder through a symbolic link")
    if not target.is_file():  # a FIFO or a device is not a file to read either
        raise ValueError(f"there is no file {name!r} in the skill folder {folder}")
    return target


def read_inside(folder: Path, name: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """At most ``limit`` bytes of the file ``name`` of a skill folder (see :func:`inside`), read
    without following a link swapped in since (``O_NOFOLLOW``) and never more than the limit."""
    target = inside(folder, name)
    fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"{name!r} is not a regular file")
        return f.read(limit)


# a skill folder's files that are not the skill's own (its tests, its cases): read_skill does not
# serve them, and a change to them alone leaves the skill the same (--upskill-against)
EVALS_FILE = "evals/evals.json"  # skill-creator's evals, relative to the skill folder (skills/evals.py)
NOT_SERVED = (
    "SKILL.md",
    "SKILL.proposed.md",
    "skill_meta.json",
    "skill_meta.proposed.json",
    "tests.json",
    "evals",
    "checks",
    "tests",
)


def files_inside(
    folder: Path, under: str, limit: int, count: int = 200, leave_out: tuple[str, ...] = ()
) -> list[tuple[str, bytes]]:
    """The regular files beneath ``folder/under`` (at most ``count``, each cut at ``limit`` bytes as
    it is read), paths relative to ``folder``, hidden ones and those ``leave_out`` names (a file or
    a folder, relative to ``folder``) left out; folders that are links are not walked, files that
    are links are read only where they point inside the folder."""
    top = folder / under
    if top.is_symlink() or not top.is_dir():
        return []
    found: list[tuple[str, bytes]] = []
    for here, dirs, files in os.walk(top, followlinks=False):
        base = Path(here).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (base / d).as_posix() not in leave_out)
        for name in sorted(files):
            relative = Path(here, name).relative_to(folder).as_posix()
            if name.startswith(".") or relative in leave_out:
                continue
            try:
                found.append((relative, read_inside(folder, relative, limit)))
            except (OSError, ValueError):
                continue
            if len(found) >= count:
                return found
    return found


def _read(path: Path) -> str:
    try:
        data = read_inside(path.parent, path.name)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SkillFileError(
            path, f"cannot be read: {reason}", "check that the file exists, is readable and lies in the skill folder"
        ) from None
    if len(data) >= MAX_FILE_BYTES:
        raise SkillFileError(path, f"is larger than {MAX_FILE_BYTES >> 20} MB", "split the skill or its cases")
    return _decode(path, data)


def _key_line(lines: list[str], key: str) -> int | None:
    for number, text in enumerate(lines, start=2):  # frontmatter starts on line 2
        if re.match(rf"{re.escape(key)}\s*:", text):
            return number
    return None


SPEC_MODES = tuple(SpecMode)


def load_skill(skill_md: Path, spec: str = "error") -> Skill:
    """Parse ``SKILL.md`` and validate its frontmatter against the Agent Skills spec. With ``spec``
    "warn", a skill that breaks the spec but has a name and a description (Anthropic's ``claude-api``
    has a 1,068-character description) is loaded, its findings in ``spec_findings``."""
    text = _read(skill_md)
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        raise SkillFileError(
            skill_md,
            "does not start with YAML frontmatter",
            "begin the file with a line '---', then 'name:' and 'description:', then '---'",
            1,
        )
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].rstrip() == "---")
    except StopIteration:
        raise SkillFileError(
            skill_md, "frontmatter is not closed", "add a line '---' after the frontmatter", len(lines)
        ) from None
    front_lines = lines[1:end]
    # read as the reference (skills-ref) reads it: strictyaml, every value a string (`name: 2048`,
    # `description: yes`, `compatibility: 3.11` are strings, as agents will read them)
    from skills_ref.errors import ParseError
    from skills_ref.parser import parse_frontmatter
    from skills_ref.validator import validate_metadata

    try:
        meta, _ = parse_frontmatter("---\n" + "\n".join(front_lines) + "\n---\n")
    except ParseError as exc:
        cause = exc.__context__  # strictyaml's own error, with where it is
        mark = getattr(cause, "problem_mark", None) or getattr(cause, "context_mark", None)
        line = mark.line + 1 if mark is not None else None  # the parsed text starts with the remainder of line 1
        problem = (getattr(cause, "problem", None) or str(exc).splitlines()[0]).strip()
        raise SkillFileError(
            skill_md,
            f"frontmatter is not valid YAML: {problem}",
            "fix the YAML syntax: quote values that contain ':' or '#'; write lists and mappings in block style, "
            "one item per line (the Agent Skills reference parser allows no [..] or {..})",
            line,
        ) from None
    except Exception as exc:  # noqa: BLE001 - strictyaml fails on some input with its own bug (a NUL: AttributeError)
        cause = exc.__context__ or exc
        raise SkillFileError(
            skill_md,
            f"frontmatter cannot be read: {' '.join(str(cause).split())[:200]}",
            "remove control characters from the frontmatter",
            2,
        ) from None
    if not isinstance(meta, dict):
        raise SkillFileError(
            skill_md,
            "frontmatter is not a YAML mapping",
            "write 'name: my-skill' and 'description: ...' between the '---' lines",
            2,
        )

    problems = validate_metadata(meta, skill_md.parent)
    usable = all(isinstance(meta.get(k), str) and meta[k].strip() for k in ("name", "description"))
    if problems and spec == SpecMode.WARN and usable:
        return Skill(
            name=meta["name"].strip(),
            description=str(meta["description"]).strip(),
            body="\n".join(lines[end + 1 :]).strip(),
            path=skill_md,
            frontmatter=meta,
            spec_findings=tuple(problems),
        )
    if problems:
        first = problems[0]
        key = next((k for k in ("description", "compatibility", "name") if k in first.lower()), None)
        if first.startswith("Unexpected fields"):
            key = next(
                iter(
                    sorted(set(meta) - {"name", "description", "license", "allowed-tools", "metadata", "compatibility"})
                ),
                None,
            )
        line = (_key_line(front_lines, key) if key else None) or 1
        fix = {
            "name": "use 1-64 lowercase letters, digits and '-', no leading, trailing or double hyphen, "
            f"equal to the folder name '{skill_md.parent.name}'",
            "description": "write a description of 1-1024 characters saying what the skill does and when to use it",
            "compatibility": "keep 'compatibility' a string of at most 500 characters",
        }.get(key or "", f"follow the Agent Skills spec: {SPEC_URL}")
        if first.startswith("Unexpected fields"):
            fix = (
                "keep only name, description, license, compatibility, metadata and allowed-tools; move the rest "
                "under 'metadata:'"
            )
        if usable:
            fix += " (or test it as it is: --upskill-spec warn)"
        raise SkillFileError(skill_md, "; ".join(problems), fix, line)

    body = "\n".join(lines[end + 1 :]).strip()
    return Skill(
        name=meta["name"].strip(),
        description=str(meta["description"]).strip(),
        body=body,
        path=skill_md,
        frontmatter=meta,
    )


def skill_md_in(folder: Path) -> Path | None:
    """The folder's SKILL.md, as the reference finds it: ``SKILL.md``, else ``skill.md``."""
    from skills_ref.parser import find_skill_md

    found = find_skill_md(folder)
    return found if found is not None and found.is_file() else None


def in_skill_folder(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a skill's folder (a folder with SKILL.md), looking up to ``root``."""
    for folder in path.parents:
        if skill_md_in(folder) is not None:
            return True
        if folder == root or folder.parent == folder:
            return False
    return False


# ------------------------------------------------------------------------------ skill_meta.json


def _line_of(text: str, pos: int) -> int:
    """The 1-based line of ``pos``: a binary search in the file's newline offsets, found once per text
    (counting newlines from the start for every case made collection quadratic in the cases)."""
    return bisect.bisect_left(_newlines(text), pos) + 1


@functools.lru_cache(maxsize=8)
def _newlines(text: str) -> list[int]:
    return [m.start() for m in re.finditer("\n", text)]


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        self.key = key


_WS = re.compile(r"\s*")


def _array_element_offsets(text: str, data: Any) -> list[int]:
    """Offsets in ``text`` of the elements of the case array (top-level list, or 'tests'/'cases')."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        blank = _WS.match(text, i)
        return blank.end() if blank else i

    def elements(i: int) -> list[int]:
        offsets: list[int] = []
        i = skip(i + 1)
        while i < len(text) and text[i] != "]":
            offsets.append(i)
            _, i = decoder.raw_decode(text, i)
            i = skip(i)
            if i < len(text) and text[i] == ",":
                i = skip(i + 1)
        return offsets

    i = skip(0)
    if isinstance(data, list):
        return elements(i)
    key = "tests" if "tests" in data else "cases"
    i = skip(i + 1)
    while i < len(text) and text[i] != "}":
        name, i = decoder.raw_decode(text, i)
        i = skip(skip(i) + 1)  # the ':'
        if name == key:
            return elements(i)
        _, i = decoder.raw_decode(text, i)
        i = skip(i)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
    return []


def _slug(value: str) -> str:
    """A case's id in node ids: letters and digits of any script, '_', '.', '-'; the rest becomes '-'."""
    return re.sub(r"[^\w.-]+", "-", value).strip("-")[:60] or "case"


CheckPreparer = Callable[[str, Any], Any]
ValidatorPreparer = Callable[[str, dict[str, Any]], Any]


THRESHOLD_KEYS = (
    "min_lift",
    "min_pass_rate",
    "max_token_increase",
    "min_trigger_recall",
    "max_false_trigger",
)


class SkillMeta(NamedTuple):
    cases: list[Case]
    thresholds: dict[str, float]  # the skill's own gate thresholds, overriding the ini and options


def _thresholds(meta_path: Path, text: str, data: Any) -> dict[str, float]:
    value = data.get("thresholds") if isinstance(data, dict) else None
    if value is None:
        return {}
    match = re.search(r'"thresholds"\s*:', text)
    line = _line_of(text, match.start()) if match else None
    if not isinstance(value, dict) or set(value) - set(THRESHOLD_KEYS):
        raise SkillFileError(
            meta_path,
            f"'thresholds' must be an object with keys from {list(THRESHOLD_KEYS)}",
            'e.g. "thresholds": {"min_lift": 0.2}',
            line,
        )
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise SkillFileError(
                meta_path,
                f"threshold {key!r} must be a finite number, not {json.dumps(number)}",
                "write fractions: 0.2 for 20%",
                line,
            )
    return {k: float(v) for k, v in value.items()}


def load_cases(
    meta_path: Path, prepare_check: CheckPreparer, prepare_validator: ValidatorPreparer | None = None
) -> SkillMeta:
    """Load the cases (and optional ``thresholds``) of ``skill_meta.json`` in any of upskill's formats.

    ``prepare_check(name, value)`` validates one ``expected`` entry; it raises ``KeyError`` for an
    unknown check and ``ValueError`` for a bad value. ``prepare_validator(name, config)`` does the
    same for a case's ``validator`` and ``validator_config``.
    """
    text = _read(meta_path)
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise SkillFileError(
            meta_path, f"is not valid JSON: {exc.msg}", "fix the JSON syntax at this position", exc.lineno, exc.colno
        ) from None
    except _DuplicateKey as exc:
        positions = [m.start() for m in re.finditer(re.escape(json.dumps(exc.key)) + r"\s*:", text)]
        line = _line_of(text, positions[1]) if len(positions) > 1 else None
        raise SkillFileError(
            meta_path, f"has a duplicate key {exc.key!r}", "remove or rename one of the two", line
        ) from None
    except RecursionError:
        raise SkillFileError(meta_path, "is nested too deeply to parse", "flatten the JSON") from None

    if isinstance(data, dict):
        if "tests" in data and "cases" in data:
            raise SkillFileError(meta_path, "has both 'tests' and 'cases'", "keep one list of test cases")
        raw = data.get("tests", data.get("cases"))
        if raw is None:
            raise SkillFileError(
                meta_path,
                "has no 'tests' or 'cases' list",
                'write {"tests": [{"input": "...", "expected": {"contains": "..."}}]}',
                1,
            )
    else:
        raw = data
    if not isinstance(raw, list):
        raise SkillFileError(
            meta_path,
            f"test cases must be a JSON list, not {type(raw).__name__}",
            'write {"tests": [ ... ]} or a bare list [ ... ]',
            1,
        )
    if not raw:  # what upskill writes when it generated no case: the skill is skipped, saying so
        return SkillMeta([], _thresholds(meta_path, text, data))

    offsets = _array_element_offsets(text, data)
    cases: list[Case] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        start = offsets[index] if index < len(offsets) else 0
        line = _line_of(text, start)

        def key_line(key: str, start: int = start, line: int = line) -> int:
            match = re.compile(re.escape(json.dumps(key)) + r"\s*:").search(text, start)
            return _line_of(text, match.start()) if match else line

        label = f"case {index + 1}"
        if not isinstance(item, dict):
            raise SkillFileError(
                meta_path,
                f"{label} is a {type(item).__name__}, not an object",
                'write each case as {"input": "...", "expected": {...}}',
                line,
            )
        try:
            case = Case.model_validate(item)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = [str(p) for p in err["loc"]]
            if (
                "[key]" in loc
            ):  # a key of an object (a file name in context.files): the line is the key's, the field its object
                loc = loc[: loc.index("[key]")]
                at, field = key_line(loc[-1]), ".".join(loc[:-1])
            else:
                at, field = (key_line(loc[-1]) if loc and loc[-1] in item or len(loc) > 1 else line), ".".join(loc)
            if err["type"] == "value_error":
                msg, fix = (
                    f"{label}: {field!r}: {err['ctx']['error']}",
                    "see the case format in docs/cases-and-checks.md",
                )
            elif err["type"] == "extra_forbidden":
                msg, fix = f"{label} has an unknown field {field!r}", "allowed fields: " + ", ".join(CASE_FIELDS)
            elif err["type"] == "missing":
                msg, fix = f"{label} is missing {field!r}", f"add {field!r} to the case"
            else:
                msg, fix = f"{label}: {field!r} {err['msg'].lower()}", "see the case format in docs/cases-and-checks.md"
            raise SkillFileError(meta_path, msg, fix, at) from None
        for check, value in case.expected.items():
            try:
                case.expected[check] = prepare_check(check, value)
            except KeyError as exc:
                raise SkillFileError(
                    meta_path,
                    f"{label} has an unknown expected check {check!r}",
                    exc.args[0] if exc.args else "",
                    key_line(check),
                ) from None
            except (ValueError, TypeError) as exc:
                raise SkillFileError(
                    meta_path,
                    f"{label}: expected {check!r}: {exc}",
                    "see the check reference in docs/cases-and-checks.md",
                    key_line(check),
                ) from None
        if case.validator and prepare_validator is not None:
            try:
                case.prepared_validator = prepare_validator(case.validator, case.validator_config or {})
            except KeyError as exc:
                raise SkillFileError(
                    meta_path,
                    f"{label} names an unknown validator {case.validator!r}",
                    exc.args[0] if exc.args else "",
                    key_line("validator"),
                ) from None
            except (ValueError, TypeError) as exc:
                where = "validator_config" if "validator_config" in item else "validator"
                raise SkillFileError(
                    meta_path,
                    f"{label}: validator {case.validator!r}: {exc}",
                    "see the validator reference in docs/workspace-trials.md",
                    key_line(where),
                ) from None
        elif case.validator_config is not None and not case.validator:
            raise SkillFileError(
                meta_path,
                f"{label} has 'validator_config' but no 'validator'",
                'name the validator, e.g. "validator": "toml_valid"',
                key_line("validator_config"),
            )
        if case.is_trigger:
            extra = [k for k in CASE_FIELDS if k not in TRIGGER_FIELDS and getattr(case, k) is not None]
            if case.expected or extra:
                field = "expected" if case.expected else extra[0]
                raise SkillFileError(
                    meta_path,
                    f"{label} is a trigger case (should_trigger) and also has {field!r}",
                    "a trigger case is only a query and whether the skill should be loaded for it; write the "
                    "task's checks in a case of their own",
                    key_line(field),
                )
        elif not case.expected and not case.validator and not case.output_file and not case.expectations:
            raise SkillFileError(
                meta_path,
                f"{label} has an empty 'expected'",
                'add a check such as {"contains": "..."}',
                key_line("expected"),
            )
        key = _slug(case.id or case.name or f"case-{index + 1}")
        if key in seen:
            raise SkillFileError(
                meta_path,
                f"{label} has the same id {key!r} as case {seen[key] + 1}",
                "give every case a unique 'id'",
                line,
            )
        seen[key] = index
        case.key, case.line = key, line
        cases.append(case)
    return SkillMeta(cases, _thresholds(meta_path, text, data))
