"""Anthropic Messages API through the official async SDK; tools through Anthropic tool use."""

from __future__ import annotations

import json

import anthropic

from ..config import ModelSpec
from ..core import Request, ToolCall
from .base import BAD_RESPONSE, Completion, ProviderError, bounded_http_client, map_sdk_error, server_slots, token_count


def messages(request: Request) -> list[dict]:
    """The user message, then the conversation so far: ``tool_use`` blocks in the assistant's
    turns, ``tool_result`` blocks in a user turn after each."""
    out: list[dict] = [{"role": "user", "content": request.user}]
    for message in request.history:
        if message.role == "assistant":
            content: list[dict] = [{"type": "text", "text": message.text}] if message.text else []
            for call in message.tool_calls:
                try:
                    arguments = call.arguments()
                except ValueError:
                    arguments = {}
                content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": arguments})
            out.append({"role": "assistant", "content": content})
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


def tool_params(request: Request) -> dict:
    """Tools offered; structured output (``request.output``) is a tool the model is made to call."""
    tools = [*request.tools, request.output] if request.output is not None else list(request.tools)
    if not tools:
        return {}
    params: dict = {
        "tools": [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]
    }
    choice = request.output.name if request.output is not None else request.tool_choice
    if choice:
        params["tool_choice"] = {"type": "tool", "name": choice}
    return params


class AnthropicProvider:
    def __init__(self, spec: ModelSpec, *, timeout: float):
        """The runner retries (and adapts its concurrency to 429s), so the SDK does not."""
        self.spec = spec
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
                system=request.system,
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
        return Completion(
            text,
            token_count(getattr(usage, "input_tokens", None), "usage.input_tokens", self.spec.name),
            token_count(getattr(usage, "output_tokens", None), "usage.output_tokens", self.spec.name),
            tool_calls=calls,
            truncated=message.stop_reason == "max_tokens",
        )

    async def slots(self) -> int | None:
        """Requests the server serves at once, where a self-hosted server says (see server_slots)."""
        return await server_slots(anthropic, self.client, self.spec.base_url) if self.spec.base_url else None

    async def aclose(self) -> None:
        await self.client.close()
