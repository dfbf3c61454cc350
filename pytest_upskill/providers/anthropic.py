"""Anthropic Messages API through the official async SDK."""

from __future__ import annotations

import anthropic

from ..config import ModelSpec
from ..prompt import Request
from .base import BAD_RESPONSE, Completion, ProviderError, map_sdk_error


class AnthropicProvider:
    def __init__(self, spec: ModelSpec, *, timeout: float):
        """The runner retries (and adapts its concurrency to 429s), so the SDK does not."""
        self.spec = spec
        self.client = anthropic.AsyncAnthropic(
            api_key=spec.api_key() or "unused", base_url=spec.base_url, timeout=timeout, max_retries=0
        )

    async def complete(self, request: Request) -> Completion:
        extra = {"temperature": request.temperature} if request.temperature is not None else None
        try:
            message = await self.client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                system=request.system,
                messages=[{"role": "user", "content": request.user}],
                extra_body=extra,
            )
        except (anthropic.AnthropicError, ValueError) as exc:
            raise map_sdk_error(anthropic, exc, self.spec.name) from None
        if not isinstance(message, anthropic.types.Message) or not isinstance(message.content, list):
            raise ProviderError(BAD_RESPONSE, f"{self.spec.name}: the response is not a message")
        text = "".join(getattr(block, "text", "") or "" for block in message.content if getattr(block, "type", "") == "text")
        if message.usage is None or (not text and message.stop_reason not in ("end_turn", "max_tokens", "stop_sequence")):
            raise ProviderError(BAD_RESPONSE, f"{self.spec.name}: response has no text content (stop_reason={message.stop_reason!r})")
        return Completion(text, message.usage.input_tokens or 0, message.usage.output_tokens or 0)

    async def aclose(self) -> None:
        await self.client.close()
