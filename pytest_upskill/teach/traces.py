"""What ``generate --from PATH`` reads: an agent's trace as plain text for the teacher, cut to a
stated budget.

Formats, recognised by their content (not their name):

* Claude Code transcripts: JSON Lines, one event per line, ``{"type": "user" | "assistant",
  "message": {"role", "content": text or blocks}}`` with ``text``, ``tool_use`` and ``tool_result``
  blocks;
* OpenAI-style messages: a JSON list of ``{"role", "content", "tool_calls"}`` (or an object with
  ``messages``), ``tool`` messages for the results;
* upskill / fast-agent history: ``{"messages": [{"role", "content": [blocks], "tool_calls": {id:
  {"params": {"name", "arguments"}}}, "tool_results": {id: {"content": [blocks]}}}]}``;
* anything else (Markdown, a text log) as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_upskill.errors import TraceError

DEFAULT_CHARS = 60_000  # about 15,000 tokens of trace in the teacher's prompt


def _text(content: Any) -> str:
    """Text of a content field: a string, or blocks (text, tool_use, tool_result, fast-agent's)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list):
        return str(content)
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict):
            kind = block.get("type")
            if kind == "tool_use":
                parts.append(f"[tool call {block.get('name')}: {json.dumps(block.get('input'), ensure_ascii=False)}]")
            elif kind == "tool_result":
                parts.append(f"[tool result: {_text(block.get('content'))}]")
            elif "text" in block:
                parts.append(str(block["text"]))
            elif kind in ("thinking", "redacted_thinking", "image"):
                continue
            else:
                parts.append(json.dumps(block, ensure_ascii=False))
    return "\n".join(p for p in parts if p)


def _message(message: dict[str, Any]) -> str:
    role = str(message.get("role") or message.get("type") or "message").upper()
    lines = [_text(message.get("content"))]
    calls = message.get("tool_calls")
    if isinstance(calls, list):  # OpenAI
        for call in calls:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            lines.append(f"[tool call {function.get('name')}: {function.get('arguments')}]")
    elif isinstance(calls, dict):  # fast-agent: {id: {"method": "tools/call", "params": {"name", "arguments"}}}
        for call in calls.values():
            params = call.get("params", {}) if isinstance(call, dict) else {}
            lines.append(f"[tool call {params.get('name')}: {json.dumps(params.get('arguments'), ensure_ascii=False)}]")
    results = message.get("tool_results")
    if isinstance(results, dict):
        for result in results.values():
            lines.append(f"[tool result: {_text(result.get('content') if isinstance(result, dict) else result)}]")
    body = "\n".join(line for line in lines if line)
    return f"{role}: {body}" if body else ""


def _messages(items: list[Any]) -> str:
    return "\n\n".join(filter(None, (_message(m) for m in items if isinstance(m, dict))))


def read_trace(path: Path) -> tuple[str, str]:
    """The trace as text, and the format it was read as."""
    try:
        raw = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise TraceError(f"--from {path}: cannot be read: {exc.strerror or exc}") from None
    stripped = raw.strip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("messages"), list):
            fast_agent = any(
                isinstance(m, dict) and ("tool_results" in m or isinstance(m.get("tool_calls"), dict))
                for m in data["messages"]
            )
            return _messages(data["messages"]), "fast-agent history" if fast_agent else "messages JSON"
        if isinstance(data, list):
            return _messages(data), "messages JSON"
        events: list[dict[str, Any]] = []
        for line in stripped.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                events = []
                break
            if isinstance(event, dict):
                events.append(event)
        if events:
            turns = [
                {**e["message"], "role": e["message"].get("role", e.get("type"))}
                for e in events
                if e.get("type") in ("user", "assistant") and isinstance(e.get("message"), dict)
            ]
            return _messages(turns), "Claude Code transcript"
    return raw, "text"


def cut(text: str, budget: int) -> tuple[str, int]:
    """``text`` within ``budget`` characters: its beginning (the task) and its end (what worked),
    with a marker where the middle was cut; and how many characters were cut."""
    if len(text) <= budget:
        return text, 0
    marker = "\n\n[... {n:,} characters of the trace cut here ...]\n\n"
    room = max(0, budget - len(marker.format(n=len(text))))
    head = room * 2 // 5
    tail = room - head
    removed = len(text) - head - tail
    return text[:head] + marker.format(n=removed) + text[len(text) - tail :], removed
