"""skill-creator's ``evals/evals.json`` beside a SKILL.md, read as cases.

The format (anthropics/skills, skill-creator's ``references/schemas.md``)::

    {"skill_name": "pdf",
     "evals": [{"id": 1, "prompt": "...", "expected_output": "...",
                "files": ["evals/files/sample.pdf"], "expectations": ["The output includes X"]}]}

The Agent Skills guide "Evaluating skills" calls the expectations ``assertions``: both are read.
Each eval becomes a case named ``evals.json-ID``; its expectations are graded by the judge model
(``--upskill-judge-model``), one verdict per expectation with its evidence; its ``files`` (paths
relative to the skill folder, never out of it) are given to the model as the case's files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pytest_upskill.errors import SkillFileError
from pytest_upskill.skills.skill_md import (
    EVALS_FILE,
    MAX_FILE_BYTES,
    Case,
    CaseContext,
    _line_of,
    _read,
    _slug,
    read_inside,
)

MAX_EVAL_FILE = 200_000  # characters of one eval file given to the model
_Text = Annotated[str, Field(min_length=1, max_length=100_000)]


class Eval(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int | str
    prompt: _Text
    expected_output: str | None = None
    files: list[str] = Field(default_factory=list, max_length=50)
    expectations: list[Annotated[str, Field(min_length=1, max_length=4000)]] = Field(min_length=1, max_length=100)

    @model_validator(mode="before")
    @classmethod
    def _assertions(cls, data: Any) -> Any:
        if isinstance(data, dict) and "assertions" in data and "expectations" not in data:
            data = {**data, "expectations": data["assertions"]}
            del data["assertions"]
        return data


class EvalsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    skill_name: str | None = None
    evals: list[Eval]


def _line(text: str, pattern: str) -> int | None:
    match = re.search(pattern, text)
    return _line_of(text, match.start()) if match else None


def load_evals(path: Path, skill_name: str) -> list[Case]:
    """The cases of an ``evals/evals.json``; a :class:`SkillFileError` names what is wrong and where."""
    text = _read(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SkillFileError(
            path, f"is not valid JSON: {exc.msg}", "fix the JSON syntax", exc.lineno, exc.colno
        ) from None
    except RecursionError:
        raise SkillFileError(path, "is nested too deeply to parse", "flatten the JSON") from None
    try:
        evals = EvalsFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        where = ".".join(loc)
        line = None
        if len(loc) >= 2 and loc[0] == "evals" and loc[1].isdigit() and isinstance(data, dict):
            listed = data.get("evals")
            items: list[Any] = listed if isinstance(listed, list) else []
            item = items[int(loc[1])] if int(loc[1]) < len(items) else None
            if isinstance(item, dict) and "id" in item:
                line = _line(text, rf'"id"\s*:\s*{re.escape(json.dumps(item["id"]))}')
        raise SkillFileError(
            path,
            f"{where or 'the file'}: {err['msg'].lower()}",
            'write {"skill_name": ..., "evals": [{"id": 1, "prompt": "...", "expectations": ["..."]}]} '
            "(skill-creator's format; 'assertions' is read as 'expectations')",
            line,
        ) from None
    if evals.skill_name and evals.skill_name != skill_name:
        raise SkillFileError(
            path,
            f"names the skill {evals.skill_name!r}, but the SKILL.md beside it is {skill_name!r}",
            "set skill_name to the skill's name",
            _line(text, r'"skill_name"\s*:'),
        )
    folder = path.parent.parent
    cases: list[Case] = []
    seen: set[str] = set()
    for item in evals.evals:
        key = _slug(f"evals.json-{item.id}")
        line = _line(text, rf'"id"\s*:\s*{re.escape(json.dumps(item.id))}')
        if key in seen:
            raise SkillFileError(path, f"has two evals with the id {item.id!r}", "give every eval a unique id", line)
        seen.add(key)
        files: dict[str, str] = {}
        for name in item.files:
            try:
                data_bytes = read_inside(folder, name, MAX_FILE_BYTES)
            except (OSError, ValueError) as exc:
                raise SkillFileError(
                    path,
                    f"eval {item.id}: file {name!r} cannot be read: {exc}",
                    "give paths relative to the skill folder, to files inside it",
                    line,
                ) from None
            try:
                content = data_bytes.decode("utf-8")[:MAX_EVAL_FILE]
            except UnicodeDecodeError:
                content = f"(a binary file of {len(data_bytes):,} bytes, not shown as text)"
            files[name] = content
        case = Case.model_validate(
            {
                "id": key,
                "input": item.prompt,
                "expectations": item.expectations,
                "expected_output": item.expected_output,
                **({"context": CaseContext(files=files)} if files else {}),
            }
        )
        case.key, case.line, case.source = key, line, EVALS_FILE
        cases.append(case)
    return cases
