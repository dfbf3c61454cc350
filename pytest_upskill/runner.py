"""Execute trials: one asyncio loop in a background thread per process, a bound on requests in
flight, a deadline per trial, and an :class:`Outcome` for every trial, whatever happens.

pytest runs items one after another; the runner lets a process *submit* the trials it will run
next so that they are in flight together, while each item only waits for its own outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from .budget import OVER_BUDGET, Budget
from .cache import ResponseCache, cache_key
from .checks import CheckResult
from .config import ModelSpec
from .prompt import Request
from .providers import Completion, Provider, ProviderError, make_provider
from .providers.base import BAD_RESPONSE, TIMEOUT

CHECK_ERROR = "check_error"
CACHE_MISS = "not_cached"


@dataclass(frozen=True)
class Trial:
    skill: str
    case: str
    model: str  # the model name as the user gave it
    arm: str
    run: int
    spec: ModelSpec
    request: Request
    score: Callable[[str], CheckResult] = field(compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return self.skill, self.case, self.model, self.arm, self.run


@dataclass
class Outcome:
    """What one trial produced. ``passed`` is None when the trial could not be scored (an error)."""

    skill: str
    case: str
    model: str
    arm: str
    run: int
    passed: bool | None = None
    message: str = ""
    output: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0
    error_kind: str | None = None
    cached: bool = False

    @property
    def is_error(self) -> bool:
        return self.passed is None

    def to_dict(self) -> dict:
        return asdict(self)


class Runner:
    def __init__(
        self, *, concurrency: int = 8, timeout: float = 120.0, retries: int = 2,
        cache: ResponseCache | None = None, cache_mode: str = "off", budget: Budget | None = None,
    ):
        """``cache_mode``: ``rw`` reads and writes ``cache``, ``replay`` only reads it and never
        calls a model, ``off`` ignores it."""
        self.concurrency, self.timeout, self.retries = concurrency, timeout, retries
        self.cache, self.cache_mode = (cache, cache_mode) if cache is not None else (None, "off")
        self.budget = budget
        self._inflight: dict[str, asyncio.Future] = {}  # cache key -> the completion being fetched
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._providers: dict[ModelSpec, Provider] = {}
        self._futures: dict[tuple, concurrent.futures.Future[Outcome]] = {}
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- public, called from pytest's thread

    def submit(self, trial: Trial) -> concurrent.futures.Future[Outcome]:
        """Start ``trial`` unless it is already started; return its future."""
        with self._lock:
            future = self._futures.get(trial.key)
            if future is None:
                loop = self._ensure_loop()
                future = asyncio.run_coroutine_threadsafe(self._run(trial), loop)
                self._futures[trial.key] = future
            return future

    def outcome(self, trial: Trial) -> Outcome:
        future = self.submit(trial)
        try:
            return future.result()
        finally:
            with self._lock:
                self._futures.pop(trial.key, None)

    def close(self) -> None:
        if self._loop is None:
            return
        for future in list(self._futures.values()):
            future.cancel()
        asyncio.run_coroutine_threadsafe(self._aclose(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        self._loop = None

    # ---------------------------------------------------------------- inside the loop

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="upskill-runner", daemon=True)
            self._thread.start()
        return self._loop

    def _provider(self, spec: ModelSpec) -> Provider:
        provider = self._providers.get(spec)
        if provider is None:
            provider = self._providers[spec] = make_provider(spec, timeout=self.timeout, retries=self.retries)
        return provider

    async def _aclose(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing is best effort
                pass
        self._providers.clear()

    async def _run(self, trial: Trial) -> Outcome:
        outcome = Outcome(trial.skill, trial.case, trial.model, trial.arm, trial.run)
        key = cache_key(trial.spec, trial.request, trial.run) if self.cache_mode != "off" else None
        completion = self.cache.get(key) if key else None
        if completion is None and key and key in self._inflight:  # the same request is on its way: share its answer
            completion = await asyncio.shield(self._inflight[key])
            if completion is None:  # it failed: this trial makes its own attempt
                completion = self.cache.get(key)
        if completion is not None:
            outcome.cached = True
        elif self.cache_mode == "replay":
            outcome.error_kind = CACHE_MISS
            outcome.message = (
                f"{trial.model}: no cached response in {self.cache.root} and --upskill-cache replay never calls a model; "
                "record it with --upskill-cache rw (the default)"
            )
            return outcome
        else:
            shared = None
            if key:
                shared = self._inflight[key] = asyncio.get_running_loop().create_future()
            try:
                completion = await self._call(trial, outcome)
                if completion is not None and key:
                    self.cache.put(key, completion)
            finally:
                if shared is not None:
                    self._inflight.pop(key, None)
                    shared.set_result(completion)
        if completion is None:
            return outcome
        outcome.output = completion.text
        outcome.input_tokens, outcome.output_tokens = completion.input_tokens, completion.output_tokens
        try:
            result = trial.score(outcome.output)
        except Exception as exc:
            outcome.error_kind, outcome.message = CHECK_ERROR, f"a check raised {type(exc).__name__}: {exc}"
        else:
            outcome.passed, outcome.message = result.passed, result.message
        return outcome

    async def _call(self, trial: Trial, outcome: Outcome) -> Completion | None:
        """One request to the model, within the concurrency bound and a deadline; on failure the
        outcome gets the error and None is returned."""
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        async with self._semaphore:
            reservation = self.budget.reserve(trial.spec, trial.request) if self.budget else 0.0
            if reservation is None:
                outcome.error_kind = OVER_BUDGET
                outcome.message = f"{trial.model}: not sent: the estimated spend passed --upskill-max-cost ${self.budget.limit:g}"
                return None
            start = time.perf_counter()
            # The SDK retries inside; this deadline bounds all its attempts and back-offs together.
            deadline = self.timeout * (self.retries + 1) + 30
            completion = None
            try:
                completion = await asyncio.wait_for(self._provider(trial.spec).complete(trial.request), deadline)
                return completion
            except ProviderError as exc:
                outcome.error_kind, outcome.message = exc.kind, str(exc)
            except asyncio.TimeoutError:
                outcome.error_kind, outcome.message = TIMEOUT, f"{trial.model}: no answer within {deadline:.0f} s"
            except Exception as exc:  # an SDK or runtime failure we did not foresee is still only this trial's error
                outcome.error_kind, outcome.message = BAD_RESPONSE, f"{trial.model}: {type(exc).__name__}: {exc}"
            finally:
                outcome.latency_s = round(time.perf_counter() - start, 4)
                if self.budget:
                    tokens = (completion.input_tokens, completion.output_tokens) if completion else (0, 0)
                    self.budget.settle(reservation, trial.spec, *tokens)
        return None
