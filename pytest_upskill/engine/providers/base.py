"""The one small interface every backend implements, and the error kinds the runner understands."""

from __future__ import annotations

import email.utils
import sys
import time
import zlib
from typing import Any, Protocol

from pytest_upskill.errors import ProviderError
from pytest_upskill.types import MAX_TOKENS, Completion, ErrorKind, Request, ToolCall, clean_text

__all__ = [
    "Completion",
    "Provider",
    "ProviderError",
    "Request",
    "ToolCall",
    "clean_text",
    "bounded_http_client",
    "map_sdk_error",
    "retry_after",
    "server_slots",
    "token_count",
]

# Error kinds, as counted in the summary (the members of ErrorKind a provider can end with).
RATE_LIMIT, SERVER, TIMEOUT, CONNECTION, DROPPED = (
    ErrorKind.RATE_LIMIT,
    ErrorKind.SERVER,
    ErrorKind.TIMEOUT,
    ErrorKind.CONNECTION,
    ErrorKind.DROPPED,
)
BAD_RESPONSE, AUTH, BAD_REQUEST, BAD_USAGE, TOO_LARGE = (
    ErrorKind.BAD_RESPONSE,
    ErrorKind.AUTH,
    ErrorKind.BAD_REQUEST,
    ErrorKind.BAD_USAGE,
    ErrorKind.TOO_LARGE,
)
# The HTTP stack's errors for a connection that was made and then lost: the server is up (it took
# the request), so these never count toward the dead-model cut-off as "cannot connect" does.
_DROPPED_ERRORS = frozenset({"ReadError", "RemoteProtocolError"})
MAX_RESPONSE_BYTES = (
    16 << 20
)  # a reply, tool calls with whole files included, is kilobytes; more is a broken (or hostile) server


def token_count(value: object, field: str, model: str) -> int:
    """A usage figure from a response: a whole number from 0 to MAX_TOKENS (absent counts as 0)."""
    if value is None:
        return 0
    if type(value) is not int or not 0 <= value <= MAX_TOKENS:
        raise ProviderError(
            BAD_USAGE,
            f"{model}: the response's {field} is {str(value)[:40]!r}, not a token count "
            f"(a whole number from 0 to {MAX_TOKENS:,})",
        )
    return value


def bounded_http_client(sdk: Any, model: str) -> Any:
    """The SDK's own default HTTP client (``sdk.DefaultAsyncHttpxClient``) on a transport that reads
    at most MAX_RESPONSE_BYTES of a response body, compressed or not, and raises a ProviderError
    (kind ``response_too_large``) beyond: a hostile server's endless or bomb body never fills memory."""
    client_class = sdk.DefaultAsyncHttpxClient
    http: Any = sys.modules[
        next(c for c in client_class.__mro__ if c.__name__ == "AsyncClient").__module__.split(".")[0]
    ]

    def too_large(what: str) -> ProviderError:
        return ProviderError(
            TOO_LARGE, f"{model}: the response {what} is larger than {MAX_RESPONSE_BYTES:,} bytes; not read further"
        )

    class BoundedTransport(http.AsyncHTTPTransport):  # type: ignore[misc]  # the SDK's httpx, typed Any here
        async def handle_async_request(self, request: Any) -> Any:
            request.headers["accept-encoding"] = "gzip, deflate"  # the encodings decoded here, under the same limit
            response = await super().handle_async_request(request)
            try:
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
                    raise too_large("body")
                body: bytes | bytearray = bytearray()
                async for chunk in response.stream:
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise too_large("body")
            finally:
                await response.aclose()
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("identity", ""):
                if encoding not in ("gzip", "deflate", "x-gzip"):
                    raise ProviderError(
                        BAD_RESPONSE, f"{model}: the response is encoded as {encoding[:40]!r}, which was not asked for"
                    )
                decoder = zlib.decompressobj(wbits=47 if encoding != "deflate" else 15)  # 47: gzip or zlib header
                try:
                    body = decoder.decompress(bytes(body), MAX_RESPONSE_BYTES + 1)
                except zlib.error as exc:
                    raise ProviderError(
                        BAD_RESPONSE, f"{model}: the response body does not decompress ({exc})"
                    ) from None
                if len(body) > MAX_RESPONSE_BYTES or decoder.unconsumed_tail:
                    raise too_large("body, decompressed,")
            headers = [
                (k, v)
                for k, v in response.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
            return http.Response(
                response.status_code,
                headers=headers,
                content=bytes(body),
                extensions=response.extensions,
                request=request,
            )

    return client_class(transport=BoundedTransport())


async def server_slots(sdk: Any, client: Any, base_url: str) -> int | None:
    """How many requests a self-hosted server serves at once, where it says so: llama.cpp's server
    answers ``GET /props`` with ``total_slots`` and ``GET /slots`` with one entry per slot. None
    when it does not say (vLLM, Ollama, a proxy): the runner then paces it by its answers."""
    root = base_url.rstrip("/").removesuffix("/v1")
    for path in ("/props", "/slots"):
        try:
            data = await client.get(root + path, cast_to=object, options={"timeout": 2.0})
        except sdk.APIStatusError:  # it answered, but not this: try the other question
            continue
        except Exception:  # no answer at all: do not wait for a second question
            return None
        value = data.get("total_slots") if isinstance(data, dict) else len(data) if isinstance(data, list) else None
        if type(value) is int and 1 <= value <= 4096:
            return value
    return None


class Provider(Protocol):
    async def complete(self, request: Request) -> Completion: ...

    async def aclose(self) -> None: ...


def map_sdk_error(sdk: Any, exc: Exception, model: str) -> ProviderError:
    """Translate an ``anthropic``/``openai`` SDK exception (same hierarchy), or the ValueError the
    SDKs raise on a body that is not JSON, into a ProviderError."""
    if isinstance(exc, ValueError):  # json.JSONDecodeError, pydantic's ValidationError
        return ProviderError(BAD_RESPONSE, f"{model}: the response body is not a valid reply ({_short(str(exc), 80)})")
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError(TIMEOUT, f"{model}: request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        if type(exc.__cause__).__name__ in _DROPPED_ERRORS:
            return ProviderError(
                DROPPED, f"{model}: the connection was lost before the whole reply arrived: {exc.__cause__}"
            )
        return ProviderError(CONNECTION, f"{model}: cannot connect: {exc.__cause__ or exc}")
    if isinstance(exc, sdk.APIResponseValidationError):
        return ProviderError(BAD_RESPONSE, f"{model}: malformed response: {exc}")
    if isinstance(exc, sdk.APIStatusError):
        status = exc.status_code
        kind = (
            RATE_LIMIT if status == 429 else SERVER if status >= 500 else AUTH if status in (401, 403) else BAD_REQUEST
        )
        hint = {AUTH: " (check the API key variable)", BAD_REQUEST: " (check the model name and parameters)"}.get(
            kind, ""
        )
        return ProviderError(
            kind, f"{model}: HTTP {status}{hint}: {_short(_server_message(exc))}", retry_after(exc.response.headers)
        )
    return ProviderError(BAD_RESPONSE, f"{model}: {type(exc).__name__}: {_short(str(exc))}")


def _server_message(exc: Any) -> str:
    """The server's own words: ``{"error": {"message": ...}}`` in both APIs, else the SDK's text."""
    body = getattr(exc, "body", None)
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else exc.message


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    try:
        if headers.get("retry-after-ms") is not None:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None
