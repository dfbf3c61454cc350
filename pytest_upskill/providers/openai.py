"""OpenAI chat completions through the official async SDK; also any OpenAI-compatible server
(llama.cpp, vLLM, Ollama) given a base URL."""

from __future__ import annotations

import openai

from ..config import ModelSpec
from ..prompt import Request
from .base import BAD_RESPONSE, Completion, ProviderError, map_sdk_error


class OpenAIProvider:
    def __init__(self, spec: ModelSpec, *, timeout: float):
        """The runner retries (and adapts its concurrency to 429s), so the SDK does not."""
        self.spec = spec
        self.client = openai.AsyncOpenAI(
            api_key=spec.api_key() or "unused", base_url=spec.base_url, timeout=timeout, max_retries=0
        )

    async def complete(self, request: Request) -> Completion:
        params: dict = {}
        if request.temperature is not None:
            params["temperature"] = request.temperature
        if request.seed is not None:
            params["seed"] = request.seed
        # OpenAI's own API wants max_completion_tokens; compatible servers know max_tokens.
        params["max_completion_tokens" if self.spec.base_url is None else "max_tokens"] = request.max_tokens
        try:
            response = await self.client.chat.completions.create(
                model=request.model,
                messages=[{"role": "system", "content": request.system}, {"role": "user", "content": request.user}],
                **params,
            )
        except (openai.OpenAIError, ValueError) as exc:
            raise map_sdk_error(openai, exc, self.spec.name) from None
        choices = getattr(response, "choices", None)
        content = choices[0].message.content if choices and choices[0].message else None
        if not isinstance(content, str):
            raise ProviderError(BAD_RESPONSE, f"{self.spec.name}: the response has no message content")
        usage = response.usage
        return Completion(content, (usage.prompt_tokens or 0) if usage else 0, (usage.completion_tokens or 0) if usage else 0)

    async def aclose(self) -> None:
        await self.client.close()
