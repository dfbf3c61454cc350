"""The shared vocabulary of the package, imported by every layer and importing nothing of it:
requests and completions (what a provider is asked and answers), tools, the two arms, the kinds of
error a trial can end with, and the root of the plugin's exceptions.
"""

from __future__ import annotations

import enum
import json
import os
import re
from dataclasses import dataclass, replace
from typing import Any


def cores_per_process() -> int:
    """This machine's cores shared out among the processes of the run (xdist's workers say how
    many there are in PYTEST_XDIST_WORKER_COUNT): what one process's own compute may use."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(1, workers))


MAX_TOKENS = 10**9  # a token count above this is not a count but a broken (or hostile) server, cache or report


class Arm(enum.StrEnum):
    """The arms of a trial, equal to their names as strings. ``baseline`` (no skill) and
    ``with_skill`` (the working tree's skill) always run; the others are added by settings, each
    described once in :data:`pytest_upskill.engine.arms.ARMS`."""

    BASELINE = "baseline"
    WITH_SKILL = "with_skill"
    PREVIOUS = "previous"  # --upskill-against REF: the skill as it was at REF
    PLACEBO = "placebo"  # --upskill-controls: a neutral text of the skill's length in its place
    AA_CONTROL = "aa_control"  # --upskill-controls: the skill again, on a sample of cases (A/A)
    POSITIVE_CONTROL = "positive_control"  # --upskill-controls, progressive: a request that names the skill
    TRIGGER = "trigger"  # a trigger case: the catalog of skills offered by name and description; is it loaded?
    PREVIOUS_TRIGGER = "previous_trigger"  # a trigger case, the catalog's descriptions as at --upskill-against REF


class ErrorKind(enum.StrEnum):
    """Why a trial could not be scored, as counted in the summary and the reports."""

    RATE_LIMIT = "rate_limit"
    SERVER = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"  # could not connect
    DROPPED = "connection_dropped"  # the connection broke after the server took the request
    BAD_RESPONSE = "bad_response"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    BAD_USAGE = "bad_usage"  # a token count that is not one
    TOO_LARGE = "response_too_large"
    CHECK_ERROR = "check_error"
    JUDGE_ERROR = "judge_error"
    NOT_CACHED = "not_cached"  # --upskill-cache replay, and the answer is not in the cache
    OVER_BUDGET = "over_budget"  # not sent: --upskill-max-cost
    MODEL_CRASHED = "model_crashed"  # the local model's own process died (a native crash in llama.cpp)
    TOOL_LIMIT = "tool_limit"  # a workspace trial asked for more tool calls, or more tool output, than a trial may have


@dataclass(frozen=True)
class Request:
    system: str
    user: str
    model: str
    temperature: float | None
    max_tokens: int
    seed: int | None = None
    tools: tuple[Tool, ...] = ()  # offered to the model (native tool calling); empty: a plain completion
    history: tuple[Message, ...] = ()  # the conversation after the user message
    tool_choice: str | None = None  # the name of a tool the model must call (a judge's verdict)
    # structured output: the answer is one JSON object of this schema, in ``Completion.text``, by the
    # provider's native way (Anthropic forced tool use, OpenAI JSON schema, a local model's grammar)
    output: Tool | None = None


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters_json: str  # a JSON schema of the arguments, as text so that a Request stays hashable

    @property
    def parameters(self) -> dict[str, Any]:
        parameters: dict[str, Any] = json.loads(self.parameters_json)
        return parameters


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments_json: str  # as the model sent it; may be invalid JSON

    def arguments(self) -> dict[str, Any]:
        """The arguments, or ValueError saying why they are unusable."""
        try:
            value = json.loads(self.arguments_json or "{}")
        except ValueError as exc:
            raise ValueError(f"the arguments are not valid JSON ({exc})") from None
        except RecursionError:
            raise ValueError("the arguments are nested too deeply to read") from None
        if not isinstance(value, dict):
            raise ValueError("the arguments are not a JSON object")
        return value


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str
    is_error: bool = False


@dataclass(frozen=True)
class Message:
    """A turn after the user message: the model's (``assistant``: text and tool calls), the
    results of those calls (``tool``), or the user's again (``user``: text; a trigger trial's
    "go ahead" after the model asked a question)."""

    role: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    results: tuple[ToolResult, ...] = ()


_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 and C1 controls but tab and newline, DEL, and the bidirectional overrides (text that reads other than it is)
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WORKFLOW_COMMAND = re.compile(r"^(\s*):(?=:)", re.MULTILINE)


def printable(text: str) -> str:
    """Text of a model (or of a file from a pull request) as it may be printed to a terminal or a
    CI log: control characters shown as escapes (no cursor movement, colour, OSC 52 clipboard
    write or OSC 8 link reaches the terminal, and ``\\r`` cannot overwrite a line), and a line that
    starts with ``::`` broken up (``: :``), so GitHub Actions never reads it as a workflow command
    (``::error``, ``::add-mask::``, ``::group::``, ``::stop-commands::``)."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1] if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}", text)
    return _WORKFLOW_COMMAND.sub(r"\1: ", text)


def clean_text(text: str) -> str:
    """Text as every writer can write it: lone surrogates (valid JSON escapes, not valid UTF-8)
    become U+FFFD, so the cache, JUnit and the reports never fail on a reply."""
    if not _SURROGATE.search(text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@dataclass(frozen=True)
class Completion:
    """A model's reply. Its text is clean (see clean_text) however it was made: from a provider or
    read back from the cache."""

    text: str
    input_tokens: int
    output_tokens: int
    seconds: float | None = (
        None  # the model's own time, where a provider knows it better than the wall clock (not cached)
    )
    tool_calls: tuple[ToolCall, ...] = ()  # the tools the model asked to call (a workspace trial's turn)
    truncated: bool = False  # the answer stopped at max_tokens, not where the model ended it
    # of input_tokens (always the whole prompt): read from the provider's prompt cache (a local
    # model's kept prefix), and written to it (Anthropic's cache_creation_input_tokens)
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(self.text))
        if self.tool_calls:
            object.__setattr__(
                self,
                "tool_calls",
                tuple(
                    replace(
                        c, id=clean_text(c.id), name=clean_text(c.name), arguments_json=clean_text(c.arguments_json)
                    )
                    for c in self.tool_calls
                ),
            )


@dataclass
class Outcome:
    """What one trial produced. ``passed`` is None when the trial could not be scored (an error)."""

    skill: str
    case: str
    model: str
    arm: str
    run: int
    passed: bool | None = None
    message: str = ""
    output: str = ""
    input_tokens: int = 0  # the whole prompt, its cached part included
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of input_tokens: written to it
    latency_s: float = 0.0
    error_kind: str | None = None
    cached: bool = False
    # workspace trials (None for a plain completion)
    turns: int | None = None
    tool_calls: int | None = None
    tools_used: str | None = None  # "list_files 1, write_file 2"
    files: str | None = None  # the workspace's files at the end, comma-separated
    calls: list[str] | None = None  # the tool calls in order: "write_file build.toml", "list_files"
    written: list[str] | None = None  # the files the model wrote, in the order first written
    skill_loaded: bool | None = None  # progressive disclosure: the model called read_skill for the skill
    judge_input_tokens: int | None = None  # llm_judge's own tokens, apart from the model's
    judge_output_tokens: int | None = None
    hit_max_tokens: bool | None = None  # an answer (of any turn) stopped at max_tokens
    note: str | None = None  # how the trial ran where it differs from the case (see Trial.note)
    output_chars: int | None = None  # the whole answer's length where ``output`` was cut (the wire cuts it)
    against: str | None = None  # with_skill, --upskill-against: the skill changed, is the same, or is new there
    should_trigger: bool | None = None  # a trigger case: whether the model should load the skill
    loaded: list[str] | None = None  # trigger and progressive trials: the listed skills read_skill was called for
    # evals.json: each expectation's grade by the judge, {"text", "passed", "evidence"} (skill-creator's grading)
    expectations: list[dict[str, Any]] | None = None

    @property
    def is_error(self) -> bool:
        return self.passed is None


# --------------------------------------------------------------------------------- the settings' modes


class CacheMode(enum.StrEnum):
    """``--upskill-cache``: read and write the response cache, leave it alone, or only read it."""

    RW = "rw"
    OFF = "off"
    REPLAY = "replay"


class Injection(enum.StrEnum):
    """``--upskill-injection``: how the with-skill arm gets the skill."""

    SYSTEM = "system"
    PROGRESSIVE = "progressive"


class SpecMode(enum.StrEnum):
    """``--upskill-spec``: a SKILL.md that breaks the Agent Skills spec is an error, or tested with a note."""

    ERROR = "error"
    WARN = "warn"


class Family(enum.StrEnum):
    """``--upskill-family``: no adjustment for many gates, or Holm's step-down."""

    NONE = "none"
    HOLM = "holm"


class Switch(enum.StrEnum):
    """An ``auto``/``off`` setting."""

    AUTO = "auto"
    OFF = "off"
