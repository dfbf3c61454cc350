"""Keep secrets out of everything the plugin writes: outcomes, the cache, reports, logs.

The secrets are the values of the environment variables the providers read (the SDKs' own and
every model's ``api_key_env``) and of any variable whose name says it holds a credential. A
server that echoes the key in an error body, or a model that repeats it, is caught here before
the text reaches an outcome or the cache.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from pytest_upskill.types import Request

PROVIDER_KEY_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "OPENAI_ADMIN_KEY",
    "AZURE_OPENAI_API_KEY",
)
_CREDENTIAL_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
MASK = "[REDACTED]"
MIN_LENGTH = 8  # shorter values ("1", "true") would mask ordinary words


def secret_values(extra_vars: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    env: Mapping[str, str] = os.environ if environ is None else environ
    names = set(PROVIDER_KEY_VARS) | set(extra_vars) | {n for n in env if _CREDENTIAL_NAME.search(n)}
    values = {env[n].strip() for n in names if env.get(n) and len(env[n].strip()) >= MIN_LENGTH}
    return sorted(values, key=len, reverse=True)  # the longest first, so a key containing another is masked whole


class Redactor:
    """Masks the secrets in text, after decoding: what is matched is the text as it is stored and
    shown (a reply, a message, a path the model named), not an encoding of it."""

    def __init__(self, secrets: Iterable[str]):
        self.secrets = [s for s in secrets if s]
        self._pattern = re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def json_text(self, text: str) -> str:
        """JSON text (a tool call's arguments) with the secrets masked in what it decodes to: a key
        spelled with ``\\uXXXX`` escapes is caught too. Text that is not JSON is masked as text."""
        if self._pattern is None or not text:
            return text
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return self(text)
        masked = self.value(value)
        return json.dumps(masked, ensure_ascii=False) if masked != value else self(text)

    def request(self, request: Request) -> Request:
        """A request with the secrets masked in all it sends: the system prompt, the user message,
        the conversation (answers, tool calls' arguments, tool results)."""
        if self._pattern is None:
            return request
        history = tuple(
            replace(
                m,
                text=self(m.text),
                tool_calls=tuple(replace(c, arguments_json=self.json_text(c.arguments_json)) for c in m.tool_calls),
                results=tuple(replace(r, content=self(r.content)) for r in m.results),
            )
            for m in request.history
        )
        masked = replace(request, system=self(request.system), user=self(request.user), history=history)
        return masked if masked != request else request

    def value(self, value: Any) -> Any:
        """Every string in a decoded JSON value (keys included) masked."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self(str(k)): self.value(v) for k, v in value.items()}
        return value
