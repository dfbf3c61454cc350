"""Backends. Each module implements :class:`base.Provider` for one wire protocol or runtime."""

from __future__ import annotations

from ..config import ModelSpec
from .base import Completion, Provider, ProviderError


def make_provider(spec: ModelSpec, *, timeout: float) -> Provider:
    if spec.provider == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(spec, timeout=timeout)
    if spec.provider == "openai":
        from .openai import OpenAIProvider

        return OpenAIProvider(spec, timeout=timeout)
    from .local import LocalProvider

    return LocalProvider(spec, timeout=timeout)


__all__ = ["Completion", "Provider", "ProviderError", "make_provider"]
