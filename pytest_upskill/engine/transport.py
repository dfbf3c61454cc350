"""Transport: one request to a model and its completion, from the cache, from an identical
request in flight, or from the model, within the model's bound on requests in flight, the budget
and the deadlines, retried on the errors worth retrying. It returns a completion or raises a
:class:`~pytest_upskill.types.TrialError` that carries its kind; it knows nothing of checks or
trials (runner.py dispatches them, scoring/scorer.py judges what came back).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from typing import Any

from pytest_upskill.engine.budget import OVER_BUDGET, Budget
from pytest_upskill.engine.cache import ResponseCache, cache_key
from pytest_upskill.engine.limiter import ModelLimiter
from pytest_upskill.engine.providers import Completion, Provider, make_provider
from pytest_upskill.engine.providers.base import BAD_RESPONSE, CONNECTION, DROPPED, TIMEOUT
from pytest_upskill.engine.redact import Redactor
from pytest_upskill.errors import ProviderError, TrialError
from pytest_upskill.models import ModelSpec
from pytest_upskill.types import CacheMode, ErrorKind, Request, ToolCall

MAX_BACKOFF_S = 30.0  # the longest pause between two attempts of our own choosing
MAX_RETRY_AFTER_S = 120.0  # a server asking for a longer pause is given up on
DEAD_AFTER = 3  # trials in a row that could not connect: the model's remaining trials are not sent


@dataclass
class Spent:
    """The model's own seconds for a trial's requests (a cached answer's as when it was made),
    counted also when a request fails."""

    seconds: float = 0.0


class Transport:
    """Every request of a process goes through here, on the runner's loop."""

    def __init__(
        self,
        *,
        concurrency: int,
        timeout: float,
        retries: int,
        backoff: float,
        cache: ResponseCache | None,
        cache_mode: str,
        budget: Budget | None,
        redact: Redactor,
        prompt_cache: bool = True,
        prefix_reuse: bool = True,
    ):
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.cache: ResponseCache | None = cache
        self.cache_mode = cache_mode if cache is not None else CacheMode.OFF
        self.budget = budget
        self.redact = redact
        self.prompt_cache, self.prefix_reuse = prompt_cache, prefix_reuse
        self.limiters: dict[str, ModelLimiter] = {}  # model name -> its limiter (created in the loop)
        self._inflight: dict[str, asyncio.Future[Completion | None]] = {}  # cache key -> the completion being fetched
        self._providers: dict[ModelSpec, Provider] = {}

    def throttling(self) -> dict[str, dict[str, Any]]:
        """Per model whose bound on requests in flight moved: 429s met, answers that queued on the
        server, the slots the server reported, and how low the bound went."""
        return {name: limiter.summary() for name, limiter in self.limiters.items() if limiter.adapted()}

    async def aclose(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing is best effort
                pass
        self._providers.clear()

    async def complete(
        self, spec: ModelSpec, name: str, request: Request, run: int, spent: Spent, salt: str | None = None
    ) -> tuple[Completion, bool]:
        """The completion of ``request`` for run ``run``, and whether it came from the cache; raises
        TrialError (kind and message) when there is none. The request is masked first: a secret in
        a skill, a case, a ``--from`` trace or a tool result is never sent (nor part of a cache key).
        ``salt`` keys an arm whose requests equal another's apart from it (the A/A control)."""
        request = self.redact.request(request)
        caching = self.cache is not None and self.cache_mode != CacheMode.OFF
        key = cache_key(spec, request, run, salt) if caching else None
        completion = self.cache.get(key) if self.cache is not None and key else None
        if completion is None and key and key in self._inflight:  # the same request is on its way: share its answer
            completion = await asyncio.shield(self._inflight[key])
            if completion is None and self.cache is not None:  # it failed: this trial makes its own attempt
                completion = self.cache.get(key)
        if completion is not None:
            spent.seconds = round(spent.seconds + (completion.seconds or 0.0), 4)  # the model's time when it was made
            return completion, True
        if self.cache is not None and self.cache_mode == CacheMode.REPLAY:
            raise TrialError(
                ErrorKind.NOT_CACHED,
                f"{name}: no cached response in {self.cache.root} and --upskill-cache replay never calls a model; "
                "record it with --upskill-cache rw (the default)",
            )
        shared = None
        if key:
            shared = self._inflight[key] = asyncio.get_running_loop().create_future()
        completion = None
        try:
            completion = await self._call(spec, name, request, spent)
            if key and self.cache is not None:
                self.cache.put(key, completion)
        finally:
            if shared is not None and key:
                self._inflight.pop(key, None)
                shared.set_result(completion)
        return completion, False

    async def _call(self, spec: ModelSpec, name: str, request: Request, spent: Spent) -> Completion:
        """The request, retried on the errors worth retrying, within the model's bound on requests
        in flight; on failure, the last error (with the attempts it took).

        Every attempt has a deadline (``timeout`` plus a margin, over the SDK's own timeout) and
        the pauses are bounded, so a trial always ends."""
        limiter = self._limiter(spec, name)
        try:
            error: ProviderError
            for attempt in range(self.retries + 1):
                completion, failed, seconds = await self._attempt(spec, name, request, limiter)
                spent.seconds += seconds
                if failed is None and completion is not None:
                    limiter.dead_streak = 0
                    return completion
                assert failed is not None  # _attempt returns a completion or an error
                error = failed
                message = str(error)
                if error.kind == TIMEOUT and spec.provider == "local":  # it would take as long again: not retried
                    message += (
                        "; an in-process model takes as long every time, so it is not retried: raise "
                        "--upskill-timeout (or generate's --timeout), or lower the case's max_tokens"
                    )
                    break
                if not error.retryable or attempt == self.retries:
                    break
                pause = (
                    error.retry_after
                    if error.retry_after is not None
                    else min(MAX_BACKOFF_S, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                )
                if pause > MAX_RETRY_AFTER_S:
                    message += f" (the server asked to wait {pause:.0f} s; not retried)"
                    break
                await asyncio.sleep(pause)
            if not error.sent:
                raise TrialError(error.kind, message)
            if attempt:
                message += f" (after {attempt + 1} attempts)"
            if error.kind == CONNECTION:
                limiter.dead_streak += 1
                limiter.last_connection_error = str(error)
            elif error.kind != TIMEOUT:  # it answered, or took the request before the connection broke: it is up
                limiter.dead_streak = 0
            raise TrialError(error.kind, message)
        finally:
            spent.seconds = round(spent.seconds, 4)

    def _provider(self, spec: ModelSpec) -> Provider:
        provider = self._providers.get(spec)
        if provider is None:
            # A self-hosted server queues what it cannot serve yet: the runner keeps the time
            # limit itself (see _answer), and the SDK's own only bounds the longest possible wait.
            timeout = self.timeout * self.concurrency + 5 if spec.self_hosted else self.timeout
            provider = self._providers[spec] = make_provider(
                spec, timeout=timeout, prompt_cache=self.prompt_cache, prefix_reuse=self.prefix_reuse
            )
        return provider

    def _limiter(self, spec: ModelSpec, name: str) -> ModelLimiter:
        """The model's limiter: at most what the provider can serve at once (its ``capacity``: one
        for an in-process model); the first request to a self-hosted server asks it how many
        requests it serves at once (llama.cpp's server says); until it has answered, requests
        queue in the limiter, in the order they came."""
        limiter = self.limiters.get(name)
        if limiter is None:
            capacity = getattr(self._provider(spec), "capacity", None) or self.concurrency
            limiter = self.limiters[name] = ModelLimiter(min(self.concurrency, capacity), self_hosted=spec.self_hosted)
            limiter.asking = asyncio.ensure_future(self._ask_slots(spec, limiter))
        return limiter

    async def _ask_slots(self, spec: ModelSpec, limiter: ModelLimiter) -> None:
        slots = None
        try:
            ask = getattr(self._provider(spec), "slots", None)
            slots = await asyncio.wait_for(ask(), 10) if ask is not None else None
        except Exception:  # a server that cannot say is paced by its answers
            pass
        finally:
            limiter.open(slots)

    async def _attempt(
        self, spec: ModelSpec, name: str, request: Request, limiter: ModelLimiter
    ) -> tuple[Completion | None, ProviderError | None, float]:
        """One request once the model's limiter lets it go; returns the seconds it took (the
        model's own, not the wait for a slot: a local model reports its generation time)."""
        epoch = await limiter.acquire()
        sent_with = limiter.in_flight
        completion, error = None, None
        start = time.perf_counter()
        if limiter.dead_streak >= DEAD_AFTER:  # checked here, when the slot is free: the trials queued behind learn it
            limiter.release(epoch, CONNECTION)
            return (
                None,
                ProviderError(
                    CONNECTION,
                    sent=False,
                    message=(
                        f"{name}: not sent: {limiter.dead_streak} trials in a row could not connect "
                        f"({limiter.last_connection_error}); is the server up and the base URL right?"
                    ),
                ),
                0.0,
            )
        reservation = self.budget.reserve(spec, request) if self.budget else 0.0
        try:
            if reservation is None:
                limit = self.budget.limit if self.budget else 0.0
                return (
                    None,
                    ProviderError(
                        OVER_BUDGET,
                        f"{name}: not sent: the estimated spend passed --upskill-max-cost ${limit:g}",
                        sent=False,
                    ),
                    0.0,
                )
            try:
                completion = await self._answer(self._provider(spec).complete(request), name, limiter, sent_with)
            except ProviderError as exc:
                error = exc
            except Exception as exc:  # an SDK or runtime failure we did not foresee is still only this trial's error
                error = ProviderError(BAD_RESPONSE, f"{name}: {type(exc).__name__}: {exc}")
            seconds = time.perf_counter() - start
            if completion is not None:
                seconds = completion.seconds if completion.seconds is not None else seconds
                calls = tuple(
                    ToolCall(c.id, c.name, self.redact.json_text(c.arguments_json)) for c in completion.tool_calls
                )
                completion = replace(completion, text=self.redact(completion.text), tool_calls=calls, seconds=seconds)
            return completion, error, seconds
        finally:
            seconds_in_flight = time.perf_counter() - start
            if error is None or error.kind not in (TIMEOUT, CONNECTION, DROPPED):  # the server answered
                limiter.last_answer = asyncio.get_running_loop().time()
            limiter.release(
                epoch,
                error.kind if error else None,
                seconds_in_flight,
                sent_with,
                completion.output_tokens if completion else 0,
            )
            if self.budget and reservation is not None:
                self.budget.settle(reservation, spec, completion or Completion("", 0, 0))

    async def _answer(
        self, call: Awaitable[Completion], name: str, limiter: ModelLimiter, sent_with: int
    ) -> Completion:
        """Await ``call`` under the time limit. A hosted API serves requests side by side: each gets
        ``timeout`` (plus a margin over the SDK's own). A self-hosted server may queue ours behind
        each other, and time spent waiting behind our own requests is not the server failing: an
        attempt times out when the server has answered nothing at all for ``timeout`` seconds, or
        when it has waited ``timeout`` for itself and for each request that was ahead of it."""
        task: asyncio.Future[Completion] = asyncio.ensure_future(call)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            if not limiter.self_hosted:
                done, _ = await asyncio.wait({task}, timeout=self.timeout + 5)
                if not done:
                    raise ProviderError(TIMEOUT, f"{name}: no answer within {self.timeout + 5:g} s")
                return task.result()
            longest = sent + self.timeout * sent_with
            while True:
                silent_until = max(sent, limiter.last_answer or sent) + self.timeout
                remaining = min(longest, silent_until) - loop.time()
                if remaining <= 0:
                    break
                done, _ = await asyncio.wait({task}, timeout=remaining)
                if done:
                    return task.result()
            waited = loop.time() - sent
            if sent_with == 1:
                why = f"within {self.timeout:g} s (--upskill-timeout)"
            elif silent_until <= longest:
                why = (
                    f"within {waited:.0f} s, and no answer to any other request "
                    f"for {self.timeout:g} s (--upskill-timeout)"
                )
            else:
                why = (
                    f"within {waited:.0f} s: {self.timeout:g} s (--upskill-timeout) "
                    f"for it and for each of the {sent_with - 1} sent before it"
                )
            raise ProviderError(TIMEOUT, f"{name}: no answer {why}")
        finally:
            if not task.done():
                task.cancel()
