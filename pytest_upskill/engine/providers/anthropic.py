"""Anthropic Messages API through the official async SDK; tools through Anthropic tool use."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from pytest_upskill.engine.providers.base import (
    BAD_RESPONSE,
    Completion,
    bounded_http_client,
    map_sdk_error,
    server_slots,
    token_count,
)
from pytest_upskill.errors import ProviderError
from pytest_upskill.models import ModelSpec
from pytest_upskill.types import Request, ToolCall


def messages(request: Request) -> list[dict[str, Any]]:
    """The user message, then the conversation so far: ``tool_use`` blocks in the assistant's
    turns, ``tool_result`` blocks in a user turn after each, a user's own turn as text."""
    out: list[dict[str, Any]] = [{"role": "user", "content": request.user}]
    for message in request.history:
        if message.role == "assistant":
            content: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
            if not content and not message.tool_calls:  # the API takes no empty turn
                content = [{"type": "text", "text": "(no answer)"}]
            for call in message.tool_calls:
                try:
                    arguments = call.arguments()
                except ValueError:
                    arguments = {}
                content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
            out.append({"role": "assistant", "content": content})
        elif message.role == "user":
            out.append({"role": "user", "content": message.text})
        else:
            out.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": r.call_id, "content": r.content, "is_error": r.is_error}
                        for r in message.results
                    ],
                }
            )
    return out


def tool_params(request: Request) -> dict[str, Any]:
    """Tools offered; structured output (``request.output``) is a tool the model is made to call."""
    tools = [*request.tools, request.output] if request.output is not None else list(request.tools)
    if not tools:
        return {}
    params: dict[str, Any] = {
        "tools": [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]
    }
    choice = request.output.name if request.output is not None else request.tool_choice
    if choice:
        params["tool_choice"] = {"type": "tool", "name": choice}
    return params


def system_param(request: Request, prompt_cache: bool) -> str | list[dict[str, Any]]:
    """The system prompt; with ``prompt_cache``, one text block marked ``cache_control`` (the same in
    both arms): the tools and the system prompt, with the skill in it, are then one cached prefix,
    which Anthropic bills at a tenth of the input price when it is read again (where it is long
    enough to be cached at all: about 1,024 tokens or more, by model)."""
    if not prompt_cache or not request.system:
        return request.system
    return [{"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}]


class AnthropicProvider:
    def __init__(self, spec: ModelSpec, *, timeout: float, prompt_cache: bool = True):
        """The runner retries (and adapts its concurrency to 429s), so the SDK does not."""
        self.spec = spec
        self.prompt_cache = prompt_cache
        self.client = anthropic.AsyncAnthropic(
            api_key=spec.api_key() or "unused",
            base_url=spec.base_url,
            timeout=timeout,
            max_retries=0,
            http_client=bounded_http_client(anthropic, spec.name),
        )

    async def complete(self, request: Request) -> Completion:
        extra = {"temperature": request.temperature} if request.temperature is not None else None
        try:
            message = await self.client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                system=system_param(request, self.prompt_cache),  # type: ignore[arg-type]  # text or blocks
                messages=messages(request),  # type: ignore[arg-type]  # plain dicts of the wire format
                extra_body=extra,
                **tool_params(request),
            )
        except (anthropic.AnthropicError, ValueError) as exc:
            raise map_sdk_error(anthropic, exc, self.spec.name) from None
        if not isinstance(message, anthropic.types.Message) or not isinstance(message.content, list):
            raise ProviderError(BAD_RESPONSE, f"{self.spec.name}: the response is not a message")
        text = "".join(
            getattr(block, "text", "") or "" for block in message.content if getattr(block, "type", "") == "text"
        )
        calls = tuple(
            ToolCall(block.id, block.name, json.dumps(block.input, sort_keys=True))
            for block in message.content
            if isinstance(block, anthropic.types.ToolUseBlock)
        )
        if request.output is not None:  # the answer is the forced call's input, as JSON text
            chosen = [c for c in calls if c.name == request.output.name]
            text, calls = (chosen[0].arguments_json if chosen else text), ()
        if message.usage is None or (
            not text and not calls and message.stop_reason not in ("end_turn", "max_tokens", "stop_sequence")
        ):
            raise ProviderError(
                BAD_RESPONSE, f"{self.spec.name}: response has no text content (stop_reason={message.stop_reason!r})"
            )
        usage = getattr(message, "usage", None)
        name = self.spec.name
        # Anthropic's input_tokens are those after the last cache mark: the prompt is all three
        fresh, written, read = (
            token_count(getattr(usage, field, None), f"usage.{field}", name)
            for field in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        return Completion(
            text,
            fresh + written + read,
            token_count(getattr(usage, "output_tokens", None), "usage.output_tokens", name),
            tool_calls=calls,
            truncated=message.stop_reason == "max_tokens",
            cache_read_tokens=read,
            cache_write_tokens=written,
        )

    async def slots(self) -> int | None:
        """Requests the server serves at once, where a self-hosted server says (see server_slots)."""
        return await server_slots(anthropic, self.client, self.spec.base_url) if self.spec.base_url else None

    async def aclose(self) -> None:
        await self.client.close()
