"""OpenAI chat completions through the official async SDK; also any OpenAI-compatible server
(llama.cpp, vLLM, Ollama) given a base URL. Tools through function calling."""

from __future__ import annotations

from typing import Any

import openai

from pytest_upskill.engine.providers.base import (
    BAD_RESPONSE,
    BAD_USAGE,
    Completion,
    bounded_http_client,
    map_sdk_error,
    server_slots,
    token_count,
)
from pytest_upskill.errors import ProviderError
from pytest_upskill.models import ModelSpec
from pytest_upskill.types import Request, Tool, ToolCall


def messages(request: Request) -> list[dict[str, Any]]:
    """System and user message, then the conversation: ``tool_calls`` on the assistant's turns,
    one ``tool`` message per result, a user's turn as a ``user`` message."""
    out: list[dict[str, Any]] = [
        {"role": "system", "content": request.system},
        {"role": "user", "content": request.user},
    ]
    for message in request.history:
        if message.role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": message.text or None}
            if message.tool_calls:
                turn["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments_json}}
                    for c in message.tool_calls
                ]
            out.append(turn)
        elif message.role == "user":
            out.append({"role": "user", "content": message.text})
        else:
            out.extend({"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in message.results)
    return out


def tool_params(request: Request) -> dict[str, Any]:
    if not request.tools:
        return {}
    params: dict[str, Any] = {
        "tools": [
            {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
            for t in request.tools
        ]
    }
    if request.tool_choice:
        params["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice}}
    return params


def response_format(output: Tool) -> dict[str, Any]:
    """The ``response_format`` that asks for one JSON object of ``output``'s schema."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": output.name,
            "description": output.description,
            "schema": output.parameters,
            "strict": True,
        },
    }


class OpenAIProvider:
    def __init__(self, spec: ModelSpec, *, timeout: float):
        """The runner retries (and adapts its concurrency to 429s), so the SDK does not."""
        self.spec = spec
        self.client = openai.AsyncOpenAI(
            api_key=spec.api_key() or "unused",
            base_url=spec.base_url,
            timeout=timeout,
            max_retries=0,
            http_client=bounded_http_client(openai, spec.name),
        )

    async def complete(self, request: Request) -> Completion:
        params: dict[str, Any] = tool_params(request)
        if request.output is not None:  # structured output: OpenAI's JSON schema (strict where the schema allows)
            params["response_format"] = response_format(request.output)
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.seed is not None:
            params["seed"] = request.seed
        # OpenAI's own API wants max_completion_tokens; compatible servers know max_tokens.
        params["max_completion_tokens" if self.spec.base_url is None else "max_tokens"] = request.max_tokens
        try:
            response = await self.client.chat.completions.create(
                model=request.model,
                messages=messages(request),  # type: ignore[arg-type]  # plain dicts of the wire format
                **params,
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise map_sdk_error(openai, exc, self.spec.name) from None
        choices = getattr(response, "choices", None)
        message = choices[0].message if choices else None
        content = message.content if message else None
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments or "{}")
            for c in (getattr(message, "tool_calls", None) or ())
            if getattr(c, "function", None) is not None
        )
        if not isinstance(content, str) and not calls:
            raise ProviderError(BAD_RESPONSE, f"{self.spec.name}: the response has no message content")
        usage = response.usage
        name = self.spec.name
        prompt = token_count(getattr(usage, "prompt_tokens", None), "usage.prompt_tokens", name)
        # OpenAI caches a long prompt's prefix by itself; prompt_tokens count the cached ones too
        details = getattr(usage, "prompt_tokens_details", None)
        cached = token_count(getattr(details, "cached_tokens", None), "usage.prompt_tokens_details.cached_tokens", name)
        if cached > prompt:
            raise ProviderError(
                BAD_USAGE, f"{name}: the response says {cached:,} prompt tokens were cached of {prompt:,} in all"
            )
        return Completion(
            content or "",
            prompt,
            token_count(getattr(usage, "completion_tokens", None), "usage.completion_tokens", name),
            tool_calls=calls,
            truncated=getattr(choices[0] if choices else None, "finish_reason", None) == "length",
            cache_read_tokens=cached,
        )

    async def slots(self) -> int | None:
        """Requests the server serves at once, where a self-hosted server says (see server_slots)."""
        return await server_slots(openai, self.client, self.spec.base_url) if self.spec.base_url else None

    async def aclose(self) -> None:
        await self.client.close()
