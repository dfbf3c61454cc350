"""Shared fixtures: loopback model servers that speak the real wire protocols, and helpers to
write skills into a pytester directory."""

from __future__ import annotations

import json
import textwrap

import pytest

# The SDKs' HTTP stacks are imported here, once: pytester's in-process runs drop every module
# first imported inside a run, and httpx2 (kept) imports httpcore2 lazily, on the first request;
# a httpcore2 imported afresh in a later run raises exceptions httpx2 no longer maps.
try:
    import anyio._backends._asyncio  # noqa: F401
    import httpcore2._backends.anyio  # noqa: F401
    import httpcore2._backends.auto  # noqa: F401
except ImportError:  # another HTTP stack: nothing to pin
    pass
try:  # llama-cpp-python (through numpy) cannot be imported twice in one process
    import llama_cpp  # noqa: F401
except ImportError:
    pass
from pytest_upskill.testing import LoopbackServer


@pytest.fixture
def model_server():
    """An OpenAI- and Anthropic-speaking server on 127.0.0.1, answering from the skill block."""
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def write_skill(pytester):
    """write_skill(name, cases, body=..., description=..., meta=None) -> the skill folder."""

    def write(name: str, cases, body: str = "", description: str | None = None, frontmatter: str | None = None):
        folder = pytester.path / "skills" / name
        folder.mkdir(parents=True, exist_ok=True)
        front = (
            frontmatter
            if frontmatter is not None
            else f"name: {name}\ndescription: {description or 'Test skill ' + name + '.'}\n"
        )
        (folder / "SKILL.md").write_text(f"---\n{front}---\n\n{textwrap.dedent(body).strip()}\n", encoding="utf-8")
        (folder / "skill_meta.json").write_text(
            cases if isinstance(cases, str) else json.dumps(cases, indent=2), encoding="utf-8"
        )
        return folder

    return write


@pytest.fixture
def code_suite(write_skill):
    """code_suite(skills, cases, expected): skills ``skill-S`` whose body gives a code (``Z{S}``, what
    LoopbackServer's default reply repeats), each with ``cases`` cases asking for it;
    ``expected(s, c)`` is case ``c``'s expected checks."""

    def write(skills: int, cases: int, expected) -> None:
        for s in range(skills):
            tests = [
                {"id": f"c{c}", "input": f"skill {s} case {c}: the code?", "expected": expected(s, c)}
                for c in range(cases)
            ]
            write_skill(f"skill-{s}", {"tests": tests}, body=f"The code of skill {s} is Z{s}.")

    return write
