"""Test your checks, validators and CI set-up offline: a model server on 127.0.0.1 that speaks the
OpenAI chat-completions and Anthropic messages wire protocols, so the real SDKs talk to it as to
the real APIs (as httpx's MockTransport or inspect_ai's mock model do for theirs).

In a ``conftest.py``::

    pytest_plugins = ["pytest_upskill.testing"]

gives the fixture ``upskill_model_server``, a :class:`LoopbackServer` started for the test. Name it
as a model, through an inline spec or an alias::

    def test_my_checks(pytester, upskill_model_server):
        ...
        pytester.runpytest("--upskill-models", f"openai:m@{upskill_model_server.openai_base_url}")

or use :class:`LoopbackServer` directly (``with LoopbackServer() as server:``). The server's
default "model" is deterministic: it answers with the body of the skill block when the system
prompt holds one and with a fixed sentence otherwise, so a case whose expected text is in the
skill passes with the skill and fails without it. ``reply(system, user)`` replaces that answer.
Tokens are whitespace-separated words; the server keeps its own totals and every request it
received (``requests``, ``attempts``), so a test can compare the plugin's figures with what the
server counted. ``fault(n, body)`` injects HTTP errors, bad bodies and delays (:class:`Fault`,
:func:`first_attempts`, :func:`capacity`, :func:`periodic`); ``slots`` and ``props`` make it a
llama.cpp server with that many slots; an answer longer than the request's ``max_tokens`` stops
there, as a real server's does.

A request that offers tools is answered by ``agent`` instead, with native tool calls (OpenAI
``tool_calls``, Anthropic ``tool_use`` blocks). The default :func:`skill_agent` does what the skill
says, and nothing without it: it loads the skill with ``read_skill`` when the skill is only listed
(progressive disclosure; among a catalog of several, the one the user's request names, else
none), looks at the workspace with ``list_files``, then writes every file the
skill shows in a fenced block whose info string is a file name (```build.toml), and answers. A
request that forces the ``verdict`` tool is a judge's: :func:`rubric_judge` passes a submission
that contains every `backticked` phrase of the rubric; one that forces ``grade`` grades a case's
expectations (:func:`expectation_judge`), each met when the submission holds its `backticked`
phrases. The formats it reads (the skill block, the
listed skill, fenced files, the judge's rubric and submission) are the plugin's own, imported from
:mod:`pytest_upskill.engine.prompt` and :mod:`pytest_upskill.scoring.validators`, so the two cannot drift apart.

A request for a structured answer (OpenAI's ``response_format`` JSON schema, Anthropic's forced
tool) is answered by ``teacher(turn)`` where one is given (``turn.schema`` names the answer asked
for): how ``pytest-upskill generate`` is tested without a real teacher.

PYTEST_DONT_REWRITE: a plugin module with no test asserts.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pytest_upskill.engine.prompt import FILE_BLOCK_PATTERN as FILE_BLOCK
from pytest_upskill.engine.prompt import LISTED_SKILLS_PATTERN as LISTED_SKILLS
from pytest_upskill.engine.prompt import SKILL_BLOCK_PATTERN as SKILL_BLOCK
from pytest_upskill.scoring.validators import RUBRIC_PATTERN as RUBRIC
from pytest_upskill.scoring.validators import SUBMISSION_PATTERN as SUBMISSION

NO_SKILL_ANSWER = "I am not sure how to do that."


def default_reply(system: str, user: str) -> str:
    match = SKILL_BLOCK.search(system)
    return f"Following the skill: {match.group(1)}" if match else NO_SKILL_ANSWER


def count_tokens(text: str) -> int:
    return len(text.split())


@dataclass
class Turn:
    """The conversation of a tool-calling request, whichever protocol it came in."""

    system: str
    user: str
    # {"role": "assistant", "text", "calls": [(name, args)]}, {"role": "tool", "results": [(name, content)]}
    # or {"role": "user", "text"} (a user's turn after the model answered)
    history: list[dict[str, Any]]
    tools: list[str]
    tool_choice: str | None
    schema: str | None = None  # the structured answer asked for: OpenAI's json_schema name, Anthropic's forced tool

    def results(self, name: str) -> list[str]:
        return [content for m in self.history if m["role"] == "tool" for tool, content in m["results"] if tool == name]

    def called(self, name: str) -> bool:
        return any(tool == name for m in self.history if m["role"] == "assistant" for tool, _ in m["calls"])

    @property
    def listed(self) -> list[str]:
        """The skills the system prompt lists by name (progressive disclosure: one; a trigger case: the catalog)."""
        return LISTED_SKILLS.findall(self.system)


def skill_agent(turn: Turn) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """An agent that follows the skill it was given or loaded; returns (text, tool calls)."""
    if turn.tool_choice == "verdict":
        return rubric_judge(turn)
    if turn.tool_choice == "grade":
        return expectation_judge(turn)
    match = SKILL_BLOCK.search(turn.system)
    skill = match.group(1) if match else "\n".join(turn.results("read_skill"))
    listed = turn.listed
    if len(listed) > 1:  # a catalog: the skill the user's request names, else none
        named = [name for name in listed if name in turn.user or name.replace("-", " ") in turn.user.lower()]
        listed = named[:1]
    if not skill and listed and "read_skill" in turn.tools and not turn.called("read_skill"):
        return "", [("read_skill", {"name": listed[0]})]
    if "list_files" in turn.tools and not turn.called("list_files"):
        return "", [("list_files", {})]
    files = FILE_BLOCK.findall(skill)
    if files and "write_file" in turn.tools and not turn.called("write_file"):
        return "", [("write_file", {"path": path, "content": content}) for path, content in files]
    return (f"Following the skill: {skill}" if skill else NO_SKILL_ANSWER), []


def rubric_judge(turn: Turn) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    rubric = RUBRIC.search(turn.user)
    submission = SUBMISSION.search(turn.user)
    needed = re.findall(r"`([^`]+)`", rubric.group(1)) if rubric else []
    text = submission.group("text") if submission else ""
    missing = [n for n in needed if n not in text]
    reason = f"missing {missing}" if missing else "meets the rubric"
    return "", [("verdict", {"passed": not missing, "score": 0.0 if missing else 1.0, "reason": reason})]


def expectation_judge(turn: Turn) -> tuple[str, list[tuple[str, dict[str, Any]]]]:
    """Grades each numbered expectation of the rubric: met when the submission contains every
    `backticked` phrase of it (skill-creator's grading fields: text, passed, evidence)."""
    rubric = RUBRIC.search(turn.user)
    submission = SUBMISSION.search(turn.user)
    text = submission.group("text") if submission else ""
    graded = []
    for expectation in re.findall(r"^\d+\. (.*)$", rubric.group(1) if rubric else "", re.MULTILINE):
        needed = re.findall(r"`([^`]+)`", expectation)
        missing = [n for n in needed if n not in text]
        evidence = f"missing {missing}" if missing else f"found {needed}"
        graded.append({"text": expectation, "passed": not missing, "evidence": evidence})
    return "", [("grade", {"expectations": graded})]


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default backlog of 5 makes bursts of connections wait for SYN retries
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(
            sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)
        ):  # a client hanging up is not news
            super().handle_error(request, client_address)


@dataclass
class Fault:
    """What to send instead of a normal answer: an HTTP status with a body, or a delay."""

    status: int = 500
    body: bytes = b'{"error": {"message": "injected fault", "type": "server_error"}}'
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


# Faults as the real APIs send them. GARBAGE and EMPTY are 200s: a proxy's error page, a
# truncated body, a reply with no content.
RATE_LIMITED = Fault(
    429,
    b'{"error": {"message": "rate limited", "type": "rate_limit_error"}}',
    {"retry-after": "0", "content-type": "application/json"},
)
SERVER_ERROR = Fault(
    500, b'{"error": {"message": "injected fault", "type": "server_error"}}', {"content-type": "application/json"}
)
GARBAGE = Fault(200, b"<html><body>502 Bad Gateway</body></html>", {"content-type": "application/json"})
EMPTY = Fault(200, b"{}", {"content-type": "application/json"})


def first_attempts(*faults: Fault) -> Callable[[int, dict[str, Any]], Fault | None]:
    """A schedule that answers the first attempt of every distinct request with a fault (taking
    ``faults`` in turn) and every later attempt normally: with one retry, every trial is answered,
    and the figures must equal those of a run without faults."""
    seen: set[str] = set()
    lock = threading.Lock()

    def fault(n: int, body: dict[str, Any]) -> Fault | None:
        key = json.dumps(body, sort_keys=True)
        with lock:
            if key in seen:
                return None
            seen.add(key)
            return faults[len(seen) % len(faults)]

    return fault


def capacity(server: LoopbackServer, limit: int) -> Callable[[int, dict[str, Any]], Fault | None]:
    """A provider's rate limiter: a 429 for every request beyond ``limit`` in flight."""
    return lambda n, body: RATE_LIMITED if server.in_flight > limit else None


def periodic(schedule: dict[int, Fault], period: int) -> Callable[[int, dict[str, Any]], Fault | None]:
    """Request n gets ``schedule[n % period]`` when there is one: a steady mix of faults."""
    return lambda n, body: schedule.get(n % period)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def _arguments(text: str | None) -> Any:
    """A tool call's arguments as the model sent them: parsed when they parse, as the raw text otherwise
    (the OpenAI API keeps them as a string and does not judge them)."""
    try:
        return json.loads(text or "{}")
    except (ValueError, RecursionError):
        return text


def parse_openai(body: dict[str, Any]) -> Turn:
    messages = body.get("messages", [])
    system = "".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    user = _text(messages[users[0]].get("content")) if users else ""
    history: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages[(users[0] + 1) if users else len(messages) :]:
        if m.get("role") == "assistant":
            calls = [(c["function"]["name"], _arguments(c["function"]["arguments"])) for c in m.get("tool_calls") or []]
            names.update({c["id"]: c["function"]["name"] for c in m.get("tool_calls") or []})
            history.append({"role": "assistant", "text": _text(m.get("content")), "calls": calls})
        elif m.get("role") == "user":
            history.append({"role": "user", "text": _text(m.get("content"))})
        elif m.get("role") == "tool":
            result = (names.get(m.get("tool_call_id"), "?"), _text(m.get("content")))
            if history and history[-1]["role"] == "tool":
                history[-1]["results"].append(result)
            else:
                history.append({"role": "tool", "results": [result]})
    tools = [t["function"]["name"] for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    form = body.get("response_format")
    schema = form["json_schema"].get("name") if isinstance(form, dict) and form.get("type") == "json_schema" else None
    return Turn(system, user, history, tools, choice["function"]["name"] if isinstance(choice, dict) else None, schema)


def parse_anthropic(body: dict[str, Any]) -> Turn:
    messages = body.get("messages", [])
    system = _text(body.get("system", "") or "")
    user = _text(messages[0]["content"]) if messages else ""
    history: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for m in messages[1:]:
        blocks = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
        if m["role"] == "assistant":
            calls = [(b["name"], b.get("input") or {}) for b in blocks if b.get("type") == "tool_use"]
            names.update({b["id"]: b["name"] for b in blocks if b.get("type") == "tool_use"})
            history.append(
                {"role": "assistant", "text": _text([b for b in blocks if b.get("type") == "text"]), "calls": calls}
            )
        elif not any(b.get("type") == "tool_result" for b in blocks):
            history.append({"role": "user", "text": _text(blocks)})
        else:
            history.append(
                {
                    "role": "tool",
                    "results": [
                        (names.get(str(b.get("tool_use_id")), "?"), _text(b.get("content")))
                        for b in blocks
                        if b.get("type") == "tool_result"
                    ],
                }
            )
    tools = [t["name"] for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    name = choice.get("name") if isinstance(choice, dict) else None
    return Turn(system, user, history, tools, name, name)


@dataclass
class Received:
    protocol: str  # "openai" or "anthropic"
    body: dict[str, Any]
    headers: dict[str, str]


class LoopbackServer:
    def __init__(
        self,
        reply: Callable[[str, str], str] = default_reply,
        latency_s: float = 0.0,
        fault: Callable[[int, dict[str, Any]], Fault | None] | None = None,
        agent: Callable[[Turn], tuple[str, list[tuple[str, dict[str, Any]]]]] = skill_agent,
        slots: int | None = None,
        props: bool = False,
        teacher: Callable[[Turn], Any] | None = None,
        prompt_cache: bool = True,
        cache_min_tokens: int = 0,
    ):
        """``fault(n, body)`` is asked for the n-th request (0-based); a Fault replaces the answer.
        ``agent(turn)`` answers the requests that offer tools: (text, [(tool, arguments)]).

        ``slots``: serve at most this many requests at once, the others waiting in turn (first
        come, first served), as a llama.cpp server with that many slots does; a request whose
        client hung up is still served to the end, as such servers do. ``props``: answer
        ``GET /props`` with ``total_slots``, as llama.cpp's server does.

        ``teacher(turn)`` answers the requests for a structured answer (``turn.schema``: OpenAI's
        ``response_format`` JSON schema, Anthropic's forced tool): a dict is sent as the JSON object
        (the message content, or the forced tool's input), a str as the answer's raw text (to send
        what does not parse), None leaves the request to ``reply`` and ``agent``.

        ``prompt_cache``: cache prompt prefixes as the APIs do, and say so in the usage. Anthropic
        caches the tools and system prompt of a request whose system block is marked
        ``cache_control`` (written the first time, ``cache_creation_input_tokens``; read after,
        ``cache_read_input_tokens``; ``input_tokens`` is the rest); OpenAI caches every prompt's
        (``prompt_tokens_details.cached_tokens``, included in ``prompt_tokens``). A prefix shorter
        than ``cache_min_tokens`` is not cached, as the APIs have a least length."""
        self.reply, self.latency_s, self.fault, self.agent = reply, latency_s, fault, agent
        self.teacher = teacher
        self.slots, self.props = slots, props
        self._turns = threading.Condition()
        self._next_ticket = self._serving_ticket = 0
        self._serving = 0
        self.requests: list[Received] = []  # the requests answered normally
        self.attempts: list[
            tuple[float, int, dict[str, Any]]
        ] = []  # (time.monotonic(), status, body) of every request, faults too
        self.input_tokens = 0  # the whole prompts, their cached parts included
        self.output_tokens = 0
        self.prompt_cache, self.cache_min_tokens = prompt_cache, cache_min_tokens
        self.cache_read_tokens = self.cache_write_tokens = 0
        self._cached_prefixes: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.arrivals: list[int] = []  # requests at the server (queued or served) as each request arrived
        self._lock = threading.Lock()
        self._count = 0
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-model", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------------------------ answering

    def _answer(
        self, protocol: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            n = self._count
            self._count += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.arrivals.append(self.in_flight)
        try:
            return self._respond(n, protocol, body, headers)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _respond(
        self, n: int, protocol: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        slots = self.slots
        if slots is None:
            return self._serve(n, protocol, body, headers)
        with self._turns:  # wait for a slot, in the order the requests came
            ticket = self._next_ticket
            self._next_ticket += 1
            self._turns.wait_for(lambda: ticket == self._serving_ticket and self._serving < slots)
            self._serving += 1
            self._serving_ticket += 1
            self._turns.notify_all()
        try:
            return self._serve(n, protocol, body, headers)
        finally:
            with self._turns:
                self._serving -= 1
                self._turns.notify_all()

    def _serve(
        self, n: int, protocol: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        fault = self.fault(n, body) if self.fault else None
        with self._lock:
            self.attempts.append((time.monotonic(), fault.status if fault and fault.status else 200, body))
        if fault is not None and fault.status:  # an error answer comes at once (after its own delay)
            time.sleep(fault.delay_s)
            return fault.status, fault.body, fault.headers
        if self.latency_s:
            time.sleep(self.latency_s)
        if fault is not None:
            time.sleep(fault.delay_s)
        turn = parse_openai(body) if protocol == "openai" else parse_anthropic(body)
        calls: list[tuple[str, dict[str, Any]]] = []
        structured = self.teacher(turn) if self.teacher is not None and turn.schema else None
        if isinstance(structured, dict) and protocol == "anthropic":
            text, calls = "", [(turn.schema or "", structured)]
        elif structured is not None:
            text = json.dumps(structured) if isinstance(structured, dict) else str(structured)
        elif turn.tools:
            text, calls = self.agent(turn)
        else:
            text = self.reply(turn.system, turn.user)
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        truncated = isinstance(cap, int) and not calls and structured is None and count_tokens(text) > cap
        if truncated:  # as a real server does: the answer stops at max_tokens
            text = " ".join(text.split()[:cap])
        seen = turn.user + "".join(
            m.get("text", "") + json.dumps(m.get("calls", m.get("results"))) for m in turn.history
        )
        tokens_in = count_tokens(turn.system) + count_tokens(seen)
        tokens_out = count_tokens(text) + sum(count_tokens(json.dumps(args)) for _, args in calls)
        prefix = count_tokens(turn.system)
        marked = protocol == "openai" or any(
            isinstance(b, dict) and b.get("cache_control") for b in body.get("system") or () if not isinstance(b, str)
        )
        cacheable = self.prompt_cache and marked and prefix and prefix >= self.cache_min_tokens
        key = json.dumps([protocol, body.get("model"), body.get("tools"), turn.system])
        read = written = 0
        with self._lock:
            self.requests.append(Received(protocol, body, headers))
            self.input_tokens += tokens_in
            self.output_tokens += tokens_out
            if cacheable and key in self._cached_prefixes:
                read = prefix
            elif cacheable:
                self._cached_prefixes.add(key)
                written = prefix if protocol == "anthropic" else 0  # OpenAI's writes are not reported
            self.cache_read_tokens += read
            self.cache_write_tokens += written
        ids = [f"call_{n}_{i}" for i in range(len(calls))]
        if protocol == "openai":
            message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
            if calls:
                message["tool_calls"] = [
                    {"id": i, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                    for i, (name, args) in zip(ids, calls, strict=True)
                ]
            payload: dict[str, Any] = {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", ""),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls" if calls else "length" if truncated else "stop",
                        "message": message,
                    }
                ],
                "usage": {
                    "prompt_tokens": tokens_in,
                    "completion_tokens": tokens_out,
                    "total_tokens": tokens_in + tokens_out,
                    "prompt_tokens_details": {"cached_tokens": read},
                },
            }
        else:
            content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not calls else []
            content += [
                {"type": "tool_use", "id": i, "name": name, "input": args}
                for i, (name, args) in zip(ids, calls, strict=True)
            ]
            payload = {
                "id": f"msg_{n}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", ""),
                "content": content,
                "stop_reason": "tool_use" if calls else "max_tokens" if truncated else "end_turn",
                "stop_sequence": None,
                "usage": {
                    "input_tokens": tokens_in - read - written,
                    "cache_creation_input_tokens": written,
                    "cache_read_input_tokens": read,
                    "output_tokens": tokens_out,
                },
            }
        return 200, json.dumps(payload).encode(), {"content-type": "application/json"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0].rstrip("/")
                if server.props and server.slots and path == "/props":
                    return self._send(
                        200, json.dumps({"total_slots": server.slots}).encode(), {"content-type": "application/json"}
                    )
                self._send(404, b'{"error": {"message": "not found"}}', {"content-type": "application/json"})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/chat/completions"):
                    protocol = "openai"
                elif path.endswith("/messages"):
                    protocol = "anthropic"
                else:
                    return self._send(404, b'{"error": {"message": "not found"}}', {"content-type": "application/json"})
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._send(
                        400, b'{"error": {"message": "invalid JSON"}}', {"content-type": "application/json"}
                    )
                status, payload, headers = server._answer(
                    protocol, body, {k.lower(): v for k, v in self.headers.items()}
                )
                self._send(status, payload, headers)

            def _send(self, status: int, payload: bytes, headers: dict[str, str]) -> None:
                """A fault's own content-length, longer than its body, is a server that dies mid-reply."""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "content-length" not in {k.lower() for k in headers}:
                    self.send_header("content-length", str(len(payload)))
                elif int(headers.get("content-length", headers.get("Content-Length", 0))) != len(payload):
                    self.close_connection = True
                self.end_headers()
                self.wfile.write(payload)

        return Handler


@pytest.fixture
def upskill_model_server() -> Iterator[LoopbackServer]:
    """A :class:`LoopbackServer` with the default model, agent and judge, for the test's duration."""
    with LoopbackServer() as server:
        yield server
