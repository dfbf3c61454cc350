"""Workspace trials: the model works in a fresh folder through tools, turn after turn.

A case with ``context.files``, ``output_file`` or ``validator`` runs as an agent would run it: the
case's files are written into a fresh :class:`~pytest_upskill.scoring.sandbox.Workspace`, and the model gets
``read_file``, ``write_file`` and ``list_files`` through its provider's native tool calling, every
path confined to the workspace. With ``--upskill-injection progressive`` the with-skill arm also
gets ``read_skill`` (SKILL.md and every other file of the skill's folder but its test cases).

The loop sends the conversation, runs the tools the model asked for, appends the results and
sends again, until the model answers without a tool call or ``max_turns`` requests were made. A
tool that fails (a missing file, a path leaving the workspace, bad arguments) is the model's
problem: it gets the error as the tool's result, as real agents do. Nothing here sends a request:
the runner passes ``send``, which adds retries, the model's concurrency limit and the cache.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pytest_upskill.engine.prompt import Message, Request, Tool, ToolCall, ToolResult
from pytest_upskill.errors import TrialError
from pytest_upskill.scoring.sandbox import Workspace
from pytest_upskill.skills.skill_md import NOT_SERVED, Case, Skill, files_inside
from pytest_upskill.types import Completion, ErrorKind

MAX_READ_CHARS = 100_000  # of one read_file result
MAX_WRITE_CHARS = 1_000_000  # of one written file
MAX_FILES = 200  # files the model may create in one trial
MAX_WORKSPACE_BYTES = 32 << 20  # all the files the model writes in one trial, together
MAX_CALLS_PER_TURN = 64  # tool calls in one answer
MAX_RESULT_CHARS = 4_000_000  # all the tool results of one trial, together (each is sent again every later turn)


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Tool:
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return Tool(name, description, json.dumps(schema, sort_keys=True))


_PATH = {"type": "string", "description": "a path relative to the workspace, e.g. src/main.py"}
READ_FILE = _tool("read_file", "Read a text file of the workspace.", {"path": _PATH}, ["path"])
WRITE_FILE = _tool(
    "write_file",
    "Create or overwrite a text file in the workspace (folders are created).",
    {"path": _PATH, "content": {"type": "string", "description": "the whole content of the file"}},
    ["path", "content"],
)
LIST_FILES = _tool(
    "list_files",
    "List the files of the workspace (or of one folder of it), one path per line.",
    {"path": {"type": "string", "description": "a folder relative to the workspace; default: the whole workspace"}},
    [],
)
READ_SKILL = _tool(
    "read_skill",
    "Load a skill: its instructions (SKILL.md), or one of its reference files.",
    {
        "name": {"type": "string", "description": "the skill's name"},
        "file": {"type": "string", "description": "optional: a file of the skill, e.g. references/api.md"},
    },
    ["name"],
)
FILE_TOOLS = (READ_FILE, WRITE_FILE, LIST_FILES)


@dataclass(frozen=True)
class SkillFiles:
    """What ``read_skill`` serves: the instructions and the reference files, read at collection
    (never the skill's tests, whose expected answers the model must not read: skill_md.NOT_SERVED)."""

    name: str
    body: str
    references: tuple[tuple[str, str], ...] = ()  # (path relative to the skill folder, text)

    @classmethod
    def load(cls, skill: Skill) -> SkillFiles:
        found = files_inside(skill.path.parent, ".", MAX_READ_CHARS * 4, count=100, leave_out=NOT_SERVED)
        refs = [(path, data.decode("utf-8", "replace")[:MAX_READ_CHARS]) for path, data in found]
        return cls(skill.name, skill.body, tuple(refs))


@dataclass(frozen=True)
class AgentPlan:
    """How one trial's agent runs: the files to start with, the tools offered, the turn limit."""

    files: tuple[tuple[str, str], ...] = ()
    tools: tuple[Tool, ...] = FILE_TOOLS
    max_turns: int = 10
    skill: SkillFiles | None = None  # served by read_skill (progressive disclosure): the arm's skill
    catalog: tuple[SkillFiles, ...] = ()  # a trigger case: every skill of the catalog, served by read_skill
    # a trigger case: the decision is the first read_skill call (the loop ends there), and a model that
    # answers without calling it is told this once, as a user would (it may have asked a question first)
    follow_up: str | None = None

    @property
    def uses_files(self) -> bool:
        """Whether the trial needs a workspace: it has file tools, not only read_skill."""
        return any(tool.name != READ_SKILL.name for tool in self.tools)

    @property
    def served(self) -> tuple[SkillFiles, ...]:
        """What read_skill serves: the arm's skill, or the catalog."""
        return self.catalog or ((self.skill,) if self.skill is not None else ())

    def first_request(self, request: Request) -> Request:
        """The trial's request as the agent sends it first: with the plan's tools, no history yet
        (what the cache holds the first turn under)."""
        return replace(request, tools=self.tools)


FOLLOW_UP = "Go ahead, do what you think is best."  # a trigger trial's second user turn


def trigger_plan(catalog: tuple[SkillFiles, ...], max_turns: int) -> AgentPlan:
    """A trigger case's agent: read_skill over the catalog, the first call decides, one follow-up."""
    return AgentPlan(tools=(READ_SKILL,), max_turns=max(2, min(max_turns, 4)), catalog=catalog, follow_up=FOLLOW_UP)


def is_workspace_case(case: Case) -> bool:
    return bool(case.validator or case.output_file or (case.context and case.context.files))


def plan_for(case: Case, max_turns: int, skill_files: SkillFiles | None) -> AgentPlan | None:
    """How a trial of ``case`` runs as an agent, or None for a plain completion. A workspace case
    gets the file tools in every arm; with progressive disclosure ``skill_files`` is what the arm
    offers (None for an arm with no skill), and ``read_skill`` serves it (so even a plain case
    becomes a conversation there)."""
    progressive = skill_files is not None
    if not is_workspace_case(case) and not progressive:
        return None
    tools = (FILE_TOOLS if is_workspace_case(case) else ()) + ((READ_SKILL,) if progressive else ())
    files = tuple((case.context.files or {}).items()) if case.context else ()
    return AgentPlan(files=files, tools=tools, max_turns=case.max_turns or max_turns, skill=skill_files)


@dataclass
class AgentRun:
    text: str = ""  # the model's last answer
    turns: int = 0  # requests made
    tool_calls: list[str] = field(default_factory=list)  # tool names, in the order called
    calls: list[str] = field(default_factory=list)  # each call in words, in order: "write_file build.toml"
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    skill_loaded: bool = False  # read_skill returned the skill's instructions
    loaded: list[str] = field(default_factory=list)  # the skills whose instructions read_skill returned, in order
    chosen: list[str] = field(default_factory=list)  # the listed skills read_skill was called for (any file), in order
    hit_max_turns: bool = False
    result_chars: int = 0  # of all the tool results so far


class Toolbox:
    """Runs the model's tool calls in one workspace."""

    def __init__(self, workspace: Workspace | None, skills: tuple[SkillFiles, ...] = (), own: str | None = None):
        """``skills``: what read_skill serves; ``own``: the skill under test among them (loading
        it is ``skill_loaded``)."""
        self.workspace, self.skills = workspace, {s.name: s for s in skills}
        self.own = own if own is not None else (skills[0].name if len(skills) == 1 else None)
        self.loaded: list[str] = []  # the skills whose instructions were returned
        self.chosen: list[str] = []  # the listed skills asked for, whatever file (a trigger case's decision)
        self.created = 0
        self.sizes: dict[Path, int] = {}  # bytes of each file the model wrote
        self.written: list[str] = []  # the paths the model wrote, in the order first written

    def call(self, call: ToolCall) -> ToolResult:
        try:
            args = call.arguments()
            content = self._run(call.name, args)
        except (ValueError, KeyError, OSError) as exc:  # WorkspaceError is a ValueError
            message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            return ToolResult(call.id, call.name, f"error: {message}", is_error=True)
        return ToolResult(call.id, call.name, content)

    def _run(self, name: str, args: dict[str, Any]) -> str:
        if name == "read_skill" and self.skills:
            return self._read_skill(args)
        if self.workspace is None or name not in ("read_file", "write_file", "list_files"):
            raise ValueError(f"there is no tool {name!r}")
        ws = self.workspace
        if name == "list_files":
            folder = _string(args, "path", default=".")
            base = ws.path(folder) if folder not in ("", ".") else ws.root
            files = [f for f in ws.files() if folder in ("", ".") or (ws.root / f).is_relative_to(base)]
            return "\n".join(files) if files else "(no files)"
        path = _string(args, "path")
        if name == "read_file":
            target = ws.path(path)
            if not target.is_file():
                raise ValueError(f"no file {path!r} in the workspace")
            return ws.read(path, MAX_READ_CHARS)
        content = _string(args, "content")
        if len(content) > MAX_WRITE_CHARS:
            raise ValueError(f"content of {len(content):,} characters is over the limit of {MAX_WRITE_CHARS:,}")
        target = ws.path(path)
        size = len(content.encode("utf-8", "surrogatepass"))
        total = sum(self.sizes.values()) - self.sizes.get(target, 0) + size
        if total > MAX_WORKSPACE_BYTES:
            raise ValueError(
                f"the workspace would hold {total:,} bytes written by you, over the limit of {MAX_WORKSPACE_BYTES:,}"
            )
        if not target.exists():
            if self.created >= MAX_FILES:
                raise ValueError(f"no more than {MAX_FILES} files may be created")
            self.created += 1
        ws.write(path, content)
        if target not in self.sizes:
            self.written.append(path)
        self.sizes[target] = size
        return f"wrote {len(content)} characters to {path}"

    @property
    def skill_loaded(self) -> bool:
        return self.own is not None and self.own in self.loaded

    def _read_skill(self, args: dict[str, Any]) -> str:
        name = _string(args, "name")
        skill = self.skills.get(name)
        if skill is None:
            raise ValueError(f"no skill {name!r}; available: {', '.join(self.skills)}")
        if name not in self.chosen:
            self.chosen.append(name)
        file = args.get("file")
        if file in (None, "", "SKILL.md"):
            if name not in self.loaded:
                self.loaded.append(name)
            listing = "".join(f"\n- {path}" for path, _ in skill.references)
            return skill.body + (f"\n\nReference files (read_skill with file=...):{listing}" if listing else "")
        for path, text in skill.references:
            if path == file:
                return text
        raise ValueError(
            f"skill {skill.name!r} has no file {file!r}"
            + (f"; it has: {', '.join(p for p, _ in skill.references)}" if skill.references else "")
        )


def _string(args: dict[str, Any], key: str, default: str | None = None) -> str:
    value = args.get(key, default)
    if not isinstance(value, str):
        raise ValueError(f"argument {key!r} must be a string" if key in args else f"argument {key!r} is missing")
    return value


def _in_words(call: ToolCall) -> str:
    """A tool call as a report shows it: its name and the path or skill it named (never a file's content)."""
    try:
        args = call.arguments()
    except ValueError:
        return f"{call.name} (arguments not JSON)"
    named = [str(args[k]) for k in ("path", "name", "file") if args.get(k)]
    return " ".join([call.name, *named])[:200]


Send = Callable[[Request], Awaitable[Completion]]  # raises the trial's error (core.TrialError) when the request failed


async def run_agent(request: Request, plan: AgentPlan, toolbox: Toolbox, send: Send) -> AgentRun:
    """The tool loop, turn after turn, until the model answers without a tool call or the turns
    run out; a failed request's error (raised by ``send``) ends it."""
    run = AgentRun()
    history: tuple[Message, ...] = ()
    request = plan.first_request(request)
    follow_up = plan.follow_up
    while run.turns < plan.max_turns:
        completion = await send(replace(request, history=history))
        run.turns += 1
        run.input_tokens += completion.input_tokens
        run.cache_read_tokens += completion.cache_read_tokens
        run.cache_write_tokens += completion.cache_write_tokens
        run.output_tokens += completion.output_tokens
        run.text = completion.text
        if not completion.tool_calls:
            if follow_up is not None and not toolbox.chosen and run.turns < plan.max_turns:
                history += (Message("assistant", completion.text), Message("user", follow_up))
                follow_up = None
                continue
            break
        if len(completion.tool_calls) > MAX_CALLS_PER_TURN:
            raise TrialError(
                ErrorKind.TOOL_LIMIT,
                f"the model asked for {len(completion.tool_calls):,} tool calls in one turn; a turn may have at most "
                f"{MAX_CALLS_PER_TURN}",
            )
        results = tuple(toolbox.call(call) for call in completion.tool_calls)
        run.result_chars += sum(len(r.content) for r in results)
        if run.result_chars > MAX_RESULT_CHARS:
            raise TrialError(
                ErrorKind.TOOL_LIMIT,
                f"the tool results of this trial came to {run.result_chars:,} characters; a trial may have at most "
                f"{MAX_RESULT_CHARS:,} (the model read the same large files again and again)",
            )
        run.tool_calls += [call.name for call in completion.tool_calls]
        run.calls += [_in_words(call) for call in completion.tool_calls]
        history += (Message("assistant", completion.text, completion.tool_calls), Message("tool", results=results))
        if plan.follow_up is not None and READ_SKILL.name in run.tool_calls:
            break  # a trigger trial: the first read_skill call is the decision (a name not listed loads nothing)
    else:
        run.hit_max_turns = True
    run.skill_loaded, run.loaded, run.chosen = toolbox.skill_loaded, list(toolbox.loaded), list(toolbox.chosen)
    return run
