"""The constrained tool protocol of a local model without native tool calling, as pure functions."""

from __future__ import annotations

import json

from pytest_upskill.engine.agent import READ_SKILL, WRITE_FILE
from pytest_upskill.engine.providers.local import constrained_messages, constrained_schema, read_constrained
from pytest_upskill.types import Message, Request, ToolCall, ToolResult


def request(**more) -> Request:
    return Request(
        system="S", user="U", model="m", temperature=0, max_tokens=64, tools=(READ_SKILL, WRITE_FILE), **more
    )


def test_a_turn_is_a_call_of_one_tool_under_its_schema_or_the_answer():
    choices = constrained_schema(request())["oneOf"]
    assert [c["properties"].get("tool", {}).get("const") for c in choices] == ["read_skill", "write_file", None]
    assert choices[1]["properties"]["arguments"]["required"] == ["path", "content"]
    forced = constrained_schema(request(tool_choice="read_skill"))
    assert forced["properties"]["tool"] == {"const": "read_skill"}  # a forced tool: that call only


def test_what_the_model_wrote_is_read_as_a_call_or_the_answer():
    assert read_constrained('{"tool": "read_skill", "arguments": {"name": "a"}}', "call_0") == (
        "",
        (ToolCall("call_0_0", "read_skill", '{"name": "a"}'),),
    )
    assert read_constrained('{"answer": "done"}', "call_0") == ("done", ())
    assert read_constrained('{"answer": "cut at max_to', "call_0") == ('{"answer": "cut at max_to', ())


def test_earlier_turns_are_shown_as_the_json_written_and_results_as_user_turns():
    call = ToolCall("c0", "read_skill", '{"name": "a"}')
    history = (
        Message("assistant", "", (call,)),
        Message("tool", results=(ToolResult("c0", "read_skill", "the body"),)),
        Message("user", "Go ahead."),
    )
    messages = constrained_messages(request(history=history))
    assert messages[0]["role"] == "system" and "Tools:\n- read_skill:" in messages[0]["content"]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user", "user"]
    assert json.loads(messages[2]["content"]) == {"tool": "read_skill", "arguments": {"name": "a"}}
    assert messages[3]["content"] == "Result of read_skill:\nthe body"
