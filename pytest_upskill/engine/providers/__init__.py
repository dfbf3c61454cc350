"""Backends. Each module implements :class:`base.Provider` for one wire protocol or runtime."""

from __future__ import annotations

import functools

from pytest_upskill.engine.providers.base import Completion, Provider
from pytest_upskill.errors import ProviderError
from pytest_upskill.models import ModelSpec


def make_provider(spec: ModelSpec, *, timeout: float, prompt_cache: bool = True, prefix_reuse: bool = True) -> Provider:
    """``prompt_cache``: mark the prompt's shared prefix cacheable where the API has marks
    (Anthropic). ``prefix_reuse``: an in-process model keeps each evaluated prefix (local.py)."""
    if spec.provider == "anthropic":
        from pytest_upskill.engine.providers.anthropic import AnthropicProvider

        return AnthropicProvider(spec, timeout=timeout, prompt_cache=prompt_cache)
    if spec.provider == "openai":
        from pytest_upskill.engine.providers.openai import OpenAIProvider

        return OpenAIProvider(spec, timeout=timeout)
    from pytest_upskill.engine.providers.local_process import LocalProvider

    return LocalProvider(spec, timeout=timeout, prefix_reuse=prefix_reuse)


def check_available(spec: ModelSpec) -> None:
    """ConfigError saying what to install when ``spec`` cannot run here (a local model's runtime
    or file); the API providers need only their key, which config checks."""
    if spec.provider == "local":
        from pytest_upskill.engine.providers.local import check_available as local_check

        local_check(spec)


@functools.cache  # asked for every case; a local model's answer reads its GGUF
def why_no_tools(spec: ModelSpec) -> str | None:
    """Why ``spec`` cannot take part in workspace trials (native tool calls), or None when it can.
    The APIs and OpenAI-compatible servers can (a server that cannot answers with an error)."""
    if spec.provider != "local":
        return None
    from pytest_upskill.engine.providers.local import why_no_tools as local_reason

    return local_reason(spec)


def tool_protocol(spec: ModelSpec) -> str | None:
    """How ``spec`` calls tools where it is not native tool calling (a local model whose chat
    template has none: the constrained protocol), in words; None for native tool calling."""
    if spec.provider != "local":
        return None
    from pytest_upskill.engine.providers.local import tool_protocol as local_protocol

    return local_protocol(spec)


__all__ = [
    "Completion",
    "Provider",
    "ProviderError",
    "check_available",
    "make_provider",
    "tool_protocol",
    "why_no_tools",
]
