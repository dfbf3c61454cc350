"""The one small interface every backend implements, and the error kinds the runner understands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..prompt import Request

# Error kinds, as counted in the summary.
RATE_LIMIT, SERVER, TIMEOUT, CONNECTION, BAD_RESPONSE, AUTH, BAD_REQUEST = (
    "rate_limit", "server_error", "timeout", "connection", "bad_response", "auth", "bad_request",
)


@dataclass(frozen=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int


class ProviderError(Exception):
    """A request that produced no scorable reply. ``kind`` is one of the constants above."""

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)


class Provider(Protocol):
    async def complete(self, request: Request) -> Completion: ...

    async def aclose(self) -> None: ...


def map_sdk_error(sdk, exc: Exception, model: str) -> ProviderError:
    """Translate an ``anthropic``/``openai`` SDK exception (same hierarchy) into a ProviderError."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(TIMEOUT, f"{model}: request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError(CONNECTION, f"{model}: cannot connect: {exc.__cause__ or exc}")
    if isinstance(exc, sdk.APIResponseValidationError):
        return ProviderError(BAD_RESPONSE, f"{model}: malformed response: {exc}")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        kind = RATE_LIMIT if status == 429 else SERVER if status >= 500 else AUTH if status in (401, 403) else BAD_REQUEST
        hint = {AUTH: " (check the API key variable)", BAD_REQUEST: " (check the model name and parameters)"}.get(kind, "")
        return ProviderError(kind, f"{model}: HTTP {status}{hint}: {_short(exc.message)}")
    return ProviderError(BAD_RESPONSE, f"{model}: {type(exc).__name__}: {_short(str(exc))}")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."
