"""The request of each arm. Every arm shares byte-identical scaffolding; an arm that offers a
skill (engine/arms.py: the working tree's, the previous one, a placebo) appends exactly one
delimited skill block to the system prompt, nothing else differs:

    system (baseline)   = SCAFFOLD
    system (with_skill) = SCAFFOLD + "\\n\\n<skill name=\\"NAME\\">\\n" + SKILL.md body + "\\n</skill>"
    user (every arm)    = case input + for each context file: "\\n\\n```FILENAME\\nCONTENT\\n```"

(the positive control's user message starts with a line that names the skill: arms.names_skill).

The user message is built exactly as upskill builds it.

With ``--upskill-injection progressive`` the with_skill arm's block lists only the skill's name and
description and the request offers a ``read_skill`` tool, as agents load skills on demand:

    system (with_skill) = SCAFFOLD + "\\n\\n<available_skills>\\n<skill "
                                     "name=\\"NAME\\">DESCRIPTION</skill>\\n</available_skills>\\n" + HINT

A trigger case lists the catalog, every skill by name and description, the same way:

    system (trigger)    = SCAFFOLD + "\\n\\n<available_skills>\\n" + one <skill name="NAME">DESCRIPTION</skill>
                          line per skill, sorted by name + "</available_skills>\\n" + HINT

A workspace trial (see :mod:`pytest_upskill.engine.agent`) is a conversation: ``Request.history`` holds the
turns so far (the model's tool calls and their results) and ``Request.tools`` the tools offered.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from pytest_upskill.models import ModelSpec
from pytest_upskill.skills.skill_md import Case, Skill
from pytest_upskill.types import Injection, Message, Request, Tool, ToolCall, ToolResult

__all__ = [
    "Message",
    "Request",
    "Tool",
    "ToolCall",
    "ToolResult",
    "build_request",
    "catalog_request",
    "listing",
    "skill_block",
    "system_prompt",
    "user_message",
]

INJECTIONS = tuple(Injection)
PROGRESSIVE_HINT = "Skills hold instructions for specific tasks. Before you use one, load it with the read_skill tool."

DEFAULT_SCAFFOLD = "You are a helpful assistant. Answer the user's request directly and completely."


# The formats above, read back: what a test server (pytest_upskill.testing) finds in a request.
SKILL_BLOCK_PATTERN = re.compile(r'<skill name="[^"]*">\n(.*?)\n</skill>', re.DOTALL)  # the body of an injected skill
# the listed skills' names (a listed entry's description follows on its line; an injected body on the next)
LISTED_SKILLS_PATTERN = re.compile(r'^<skill name="([^"]+)">(?=[^\n])', re.MULTILINE)
FILE_BLOCK_PATTERN = re.compile(
    r"^```([\w./-]+\.[\w]+)[ \t]*\n(.*?)\n```", re.DOTALL | re.MULTILINE
)  # a fenced file: name, content


def listing(skills: Sequence[Skill]) -> str:
    """Skills offered by name and description, to be loaded with read_skill (progressive
    disclosure: one skill; a trigger case: the catalog)."""
    entries = "".join(f'<skill name="{s.name}">{s.description}</skill>\n' for s in skills)
    return f"\n\n<available_skills>\n{entries}</available_skills>\n{PROGRESSIVE_HINT}"


def skill_block(skill: Skill, injection: str = Injection.SYSTEM) -> str:
    if injection == Injection.PROGRESSIVE:
        return listing((skill,))
    return f'\n\n<skill name="{skill.name}">\n{skill.body}\n</skill>'


def user_message(case: Case) -> str:
    text = case.input
    if case.context and case.context.files:
        for filename, content in case.context.files.items():
            text += f"\n\n```{filename}\n{content}\n```"
    return text


def system_prompt(offered: Skill | None, scaffold: str = DEFAULT_SCAFFOLD, injection: str = Injection.SYSTEM) -> str:
    """The system prompt of an arm that offers ``offered`` (None: no skill, the baseline)."""
    return scaffold + (skill_block(offered, injection) if offered is not None else "")


def build_request(
    spec: ModelSpec,
    offered: Skill | None,
    case: Case,
    scaffold: str = DEFAULT_SCAFFOLD,
    injection: str = Injection.SYSTEM,
    tools: tuple[Tool, ...] = (),
    user: Callable[[str], str] | None = None,
) -> Request:
    """The request of an arm that offers ``offered``; ``user`` rewrites the user message (the
    positive control names the skill)."""
    text = user_message(case)
    return Request(
        system=system_prompt(offered, scaffold, injection),
        tools=tools,
        user=user(text) if user else text,
        model=spec.model,
        temperature=spec.temperature,
        max_tokens=case.max_tokens or spec.max_tokens,
        seed=spec.seed,
    )


def catalog_request(spec: ModelSpec, catalog: Sequence[Skill], case: Case, scaffold: str = DEFAULT_SCAFFOLD) -> Request:
    """A trigger case's request: the catalog listed, the case's query as the user's message."""
    return Request(
        system=scaffold + listing(catalog),
        user=case.input,
        model=spec.model,
        temperature=spec.temperature,
        max_tokens=case.max_tokens or spec.max_tokens,
        seed=spec.seed,
    )
