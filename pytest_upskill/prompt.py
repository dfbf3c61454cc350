"""The request of each arm. Both arms share byte-identical scaffolding; the ``with_skill`` arm
appends exactly one delimited skill block to the system prompt, nothing else differs:

    system (baseline)   = SCAFFOLD
    system (with_skill) = SCAFFOLD + "\\n\\n<skill name=\\"NAME\\">\\n" + SKILL.md body + "\\n</skill>"
    user (both arms)    = case input + for each context file: "\\n\\n```FILENAME\\nCONTENT\\n```"

The user message is built exactly as upskill builds it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ModelSpec
from .skill import Case, Skill

ARMS = ("baseline", "with_skill")

DEFAULT_SCAFFOLD = "You are a helpful assistant. Answer the user's request directly and completely."


@dataclass(frozen=True)
class Request:
    system: str
    user: str
    model: str
    temperature: float | None
    max_tokens: int
    seed: int | None = None


def skill_block(skill: Skill) -> str:
    return f'\n\n<skill name="{skill.name}">\n{skill.body}\n</skill>'


def user_message(case: Case) -> str:
    text = case.input
    if case.context and case.context.files:
        for filename, content in case.context.files.items():
            text += f"\n\n```{filename}\n{content}\n```"
    return text


def system_prompt(arm: str, skill: Skill, scaffold: str = DEFAULT_SCAFFOLD) -> str:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}")
    return scaffold + (skill_block(skill) if arm == "with_skill" else "")


def build_request(spec: ModelSpec, arm: str, skill: Skill, case: Case, scaffold: str = DEFAULT_SCAFFOLD) -> Request:
    return Request(
        system=system_prompt(arm, skill, scaffold),
        user=user_message(case),
        model=spec.model,
        temperature=spec.temperature,
        max_tokens=spec.max_tokens,
        seed=spec.seed,
    )
