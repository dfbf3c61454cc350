"""Execute trials: one asyncio loop in a background thread per process, a bound on requests in
flight, a deadline per trial, and an :class:`Outcome` for every trial, whatever happens.

pytest runs items one after another; the runner lets a process *submit* the trials it will run
next so that they are in flight together, while each item only waits for its own outcome.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from .agent import AgentPlan, Toolbox, run_agent
from .budget import OVER_BUDGET, Budget
from .cache import ResponseCache, cache_key
from .checkpool import CheckCrashed, CheckPool, CheckRaised, CheckTimeout
from .checks import CheckResult, score_builtin
from .config import ModelSpec
from .core import ErrorKind, Request, ToolCall
from .providers import Completion, Provider, ProviderError, make_provider
from .providers.base import BAD_RESPONSE, CONNECTION, DROPPED, RATE_LIMIT, TIMEOUT
from .redact import Redactor
from .sandbox import Limits, Workspace, WorkspaceError
from .validators import Context, JudgeError, Validator

CHECK_ERROR, JUDGE_ERROR, CACHE_MISS = ErrorKind.CHECK_ERROR, ErrorKind.JUDGE_ERROR, ErrorKind.NOT_CACHED
MAX_BACKOFF_S = 30.0  # the longest pause between two attempts of our own choosing
MAX_RETRY_AFTER_S = 120.0  # a server asking for a longer pause is given up on
DEAD_AFTER = 3  # trials in a row that could not connect: the model's remaining trials are not sent


@dataclass(frozen=True)
class Validation:
    """A case's validator with its prepared config, and what it validates."""

    validator: Validator | None
    config: object
    output_file: str | None
    task: str
    has_checks: bool = True  # the case's ``expected`` holds checks to score as well


@dataclass(frozen=True)
class Trial:
    skill: str
    case: str
    model: str  # the model name as the user gave it
    arm: str
    run: int
    spec: ModelSpec
    request: Request
    checks: dict = field(
        default_factory=dict, compare=False, repr=False
    )  # built-in checks, prepared: run in a check worker
    score: Callable[[str], CheckResult] | None = field(
        default=None, compare=False, repr=False
    )  # a conftest's checks, in a thread
    agent: AgentPlan | None = field(
        default=None, compare=False, repr=False
    )  # a workspace trial: tools, turn after turn
    validation: Validation | None = field(default=None, compare=False, repr=False)
    judge: ModelSpec | None = field(default=None, compare=False, repr=False)  # llm_judge's model
    note: str | None = field(
        default=None, compare=False, repr=False
    )  # e.g. a files-only case run as a plain trial, and why

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
    # workspace trials (None for a plain completion)
    turns: int | None = None
    tool_calls: int | None = None
    tools_used: str | None = None  # "list_files 1, write_file 2"
    files: str | None = None  # the workspace's files at the end, comma-separated
    skill_loaded: bool | None = None  # progressive disclosure: the model called read_skill for the skill
    judge_input_tokens: int | None = None  # llm_judge's own tokens, apart from the model's
    judge_output_tokens: int | None = None
    hit_max_tokens: bool | None = None  # an answer (of any turn) stopped at max_tokens
    note: str | None = None  # how the trial ran where it differs from the case (see Trial.note)

    @property
    def is_error(self) -> bool:
        return self.passed is None

    def to_dict(self) -> dict:
        """Plain values only (an ErrorKind as its string): they travel to xdist's controller."""
        data = asdict(self)
        data["arm"], data["error_kind"] = str(self.arm), None if self.error_kind is None else str(self.error_kind)
        return data


class ModelLimiter:
    """Requests in flight for one model: a bound that adapts to what the server can take.

    At most ``ceiling`` (``--upskill-concurrency``, or fewer where the server says how many it
    serves at once) requests are in flight. A 429, or a request that timed out behind others of
    ours, halves the bound (once per wave: only a request sent under the current bound lowers it
    again). On a self-hosted server (a base URL, or an in-process model) answers that take much
    longer than the quickest one when several were in flight mean they queued on the server: the
    bound goes down to what the server did serve at once, plus one waiting (Vegas's idea; latency
    per output token, so long answers do not look like queueing), and answers a little slower hold
    it. Every ``limit`` answers in a row without any of these raise it by one, up to the ceiling.
    Each model has its own, so a throttled or dead model never holds the slots of another.
    """

    SLOW = 2.0  # an answer this many times slower (per token) than the quickest, sent with others: it queued
    STEADY = 1.5  # slower than this (but not SLOW): the bound holds, neither up nor down
    NOISE_S = 0.5  # a delay shorter than this is noise (a busy machine), not a queue

    def __init__(self, ceiling: int, self_hosted: bool = False):
        self.ceiling = self.limit = self.lowest = self.requested = ceiling
        self.self_hosted = self_hosted
        self.in_flight = 0
        self.throttled = 0  # 429 answers
        self.slowed = 0  # times the bound went down because answers queued on the server
        self.slots: int | None = None  # what the server said it serves at once (llama.cpp's /props)
        self.quickest: float | None = (
            None  # seconds per output token of the quickest answer: the server's pace unqueued
        )
        self.last_answer: float | None = None  # loop time of the server's last answer (any answer, errors too)
        self.opened = False  # nothing is sent before open(): until then every request queues, in order
        self.asking: asyncio.Task | None = None  # the question to the server about its slots
        self.dead_streak = 0  # trials in a row that ended unable to connect
        self.last_connection_error = ""
        self._epoch = 0
        self._successes = 0
        self._waiting: collections.deque[asyncio.Future] = collections.deque()  # FIFO: wake only as many as may go

    def open(self, slots: int | None = None) -> None:
        """Start sending, the requests queued so far first, in the order they came; ``slots``: the
        server said how many requests it serves at once, and no more are ever sent."""
        if slots:
            self.slots = slots
            self.ceiling = self.limit = min(self.ceiling, slots)
            self.lowest = min(self.lowest, self.limit)
        self.opened = True
        self._wake()

    async def acquire(self) -> int:
        if self.opened and self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return self._epoch
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn  # the slot is handed over by release(): in_flight already counts it
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release_slot()
            raise
        return self._epoch

    def _release_slot(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        """Hand free slots to the longest waiting requests."""
        while self.opened and self._waiting and self.in_flight < self.limit:
            turn = self._waiting.popleft()
            if not turn.done():
                self.in_flight += 1
                turn.set_result(None)

    def _lower(self, epoch: int, to: int) -> bool:
        if epoch != self._epoch or to >= self.limit:
            return False
        self.limit = max(1, to)
        self.lowest = min(self.lowest, self.limit)
        self._epoch += 1
        self._successes = 0
        return True

    def release(self, epoch: int, kind: str | None, seconds: float = 0.0, sent_with: int = 1, tokens: int = 0) -> None:
        """A request sent with ``sent_with`` of ours in flight (itself included) ended: ``kind``
        None for an answer of ``tokens`` output tokens after ``seconds``, else its error kind."""
        if kind == RATE_LIMIT:
            self.throttled += 1
            self._successes = 0
            self._lower(epoch, self.limit // 2)
        elif kind == TIMEOUT and sent_with > 1:  # it waited behind others: fewer at once
            self._lower(epoch, self.limit // 2)
        elif kind is None:
            weight = tokens + 16  # 16: a short answer still pays for its prompt
            pace = seconds / weight
            # how much slower than the server's unqueued pace; 1.0 where queueing does not apply
            slower = (
                pace / self.quickest
                if self.self_hosted
                and self.quickest
                and sent_with > 1
                and seconds - self.quickest * weight > self.NOISE_S
                else 1.0
            )
            if slower > self.SLOW:
                served = max(1, int(sent_with / slower))  # what the server did serve at once
                if self._lower(epoch, max(2, served + 1)):
                    self.slowed += 1
            elif self.limit < self.ceiling and slower <= self.STEADY:
                self._successes += 1
                if self._successes >= self.limit:
                    self.limit += 1
                    self._successes = 0
            self.quickest = pace if self.quickest is None else min(self.quickest, pace)
        self._release_slot()

    def summary(self) -> dict:
        return {
            "throttled": self.throttled,
            "slowed": self.slowed,
            "slots": self.slots,
            "lowest_concurrency": self.lowest,
            "concurrency": self.requested,
        }

    def adapted(self) -> bool:
        """Whether the summary should say how the bound moved."""
        return bool(self.throttled or self.slowed or (self.slots is not None and self.slots < self.requested))


class Runner:
    def __init__(
        self,
        *,
        concurrency: int = 8,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 0.5,
        check_timeout: float = 30.0,
        cache: ResponseCache | None = None,
        cache_mode: str = "off",
        budget: Budget | None = None,
        redact: Redactor | None = None,
    ):
        """``concurrency``: requests in flight per model. ``timeout``: seconds per attempt.
        ``retries``: attempts after the first, ``backoff`` seconds apart, doubling, with jitter.
        ``cache_mode``: ``rw`` reads and writes ``cache``, ``replay`` only reads it and never
        calls a model, ``off`` ignores it."""
        self.concurrency, self.timeout, self.retries, self.backoff = concurrency, timeout, retries, backoff
        self.check_timeout = check_timeout
        self.cache, self.cache_mode = (cache, cache_mode) if cache is not None else (None, "off")
        self.budget = budget
        self.redact = redact or Redactor(())
        self.limiters: dict[str, ModelLimiter] = {}  # model name -> its limiter (created in the loop)
        self._inflight: dict[str, asyncio.Future] = {}  # cache key -> the completion being fetched
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._providers: dict[ModelSpec, Provider] = {}
        self._pool: CheckPool | None = None  # confined workers for the built-in checks and validators
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

    def throttling(self) -> dict[str, dict]:
        """Per model whose bound on requests in flight moved: 429s met, answers that queued on the
        server, the slots the server reported, and how low the bound went."""
        return {name: limiter.summary() for name, limiter in self.limiters.items() if limiter.adapted()}

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
            # A self-hosted server queues what it cannot serve yet: the runner keeps the time
            # limit itself (see _answer), and the SDK's own only bounds the longest possible wait.
            timeout = self.timeout * self.concurrency + 5 if spec.self_hosted else self.timeout
            provider = self._providers[spec] = make_provider(spec, timeout=timeout)
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

    async def _aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # closing is best effort
                pass
        self._providers.clear()

    async def _run(self, trial: Trial) -> Outcome:
        outcome = Outcome(trial.skill, trial.case, trial.model, trial.arm, trial.run, note=trial.note)
        try:
            await self._fill(trial, outcome)
        except Exception as exc:  # a bug of ours must still leave this trial exactly one outcome
            outcome.passed, outcome.error_kind = None, BAD_RESPONSE
            outcome.message = f"{trial.model}: internal error while running the trial: {type(exc).__name__}: {exc}"
        outcome.message = self.redact(outcome.message)
        return outcome

    async def _fill(self, trial: Trial, outcome: Outcome) -> None:
        if trial.agent is not None:
            return await self._fill_workspace(trial, outcome)
        completion, outcome.cached = await self._complete(trial.spec, trial.model, trial.request, trial.run, outcome)
        if completion is None:
            return
        outcome.output = completion.text
        outcome.input_tokens, outcome.output_tokens = completion.input_tokens, completion.output_tokens
        outcome.hit_max_tokens = completion.truncated
        result = await self._score(trial, outcome.output, outcome)
        if result is not None:
            outcome.passed, outcome.message = result.passed, result.message

    async def _complete(
        self, spec: ModelSpec, name: str, request: Request, run: int, outcome: Outcome
    ) -> tuple[Completion | None, bool]:
        """One request's completion, from the cache, from an identical request in flight, or from
        the model; (None, False) with the outcome's error set when there is none. The bool: cached."""
        key = cache_key(spec, request, run) if self.cache_mode != "off" else None
        completion = self.cache.get(key) if key else None
        if completion is None and key and key in self._inflight:  # the same request is on its way: share its answer
            completion = await asyncio.shield(self._inflight[key])
            if completion is None:  # it failed: this trial makes its own attempt
                completion = self.cache.get(key)
        if completion is not None:
            outcome.latency_s = round(
                outcome.latency_s + (completion.seconds or 0.0), 4
            )  # the model's time when it was made
            return completion, True
        if self.cache_mode == "replay":
            outcome.error_kind = CACHE_MISS
            outcome.message = (
                f"{name}: no cached response in {self.cache.root} and --upskill-cache replay never calls a model; "
                "record it with --upskill-cache rw (the default)"
            )
            return None, False
        shared = None
        if key:
            shared = self._inflight[key] = asyncio.get_running_loop().create_future()
        try:
            completion = await self._call(spec, name, request, outcome)
            if completion is not None and key:
                self.cache.put(key, completion)
        finally:
            if shared is not None:
                self._inflight.pop(key, None)
                shared.set_result(completion)
        return completion, False

    async def _score(self, trial: Trial, text: str, outcome: Outcome) -> CheckResult | None:
        """The case's ``expected`` checks on ``text``; None with the outcome's error set when a check
        broke. Built-in checks run in a confined worker, a conftest's in a thread; both under the
        check time limit."""
        results = []
        try:
            if trial.checks:
                results.append(await self._confined(score_builtin, trial.checks, text))
            if trial.score is not None:
                results.append(await _within(self.check_timeout, trial.score, text))
        except (_TooLong, CheckTimeout):
            outcome.error_kind = CHECK_ERROR
            outcome.message = (
                f"a check ran longer than the check time limit ({self.check_timeout:g} s, --upskill-check-timeout)"
            )
            return None
        except CheckCrashed as exc:
            outcome.error_kind, outcome.message = CHECK_ERROR, f"a check {exc}"
            return None
        except Exception as exc:
            outcome.error_kind, outcome.message = CHECK_ERROR, f"a check raised {_raised(exc)}"
            return None
        failures = [r.message for r in results if not r.passed]
        return CheckResult(not failures, "; ".join(failures))

    async def _confined(self, function: Callable, *args) -> CheckResult:
        """``function(*args)`` (ours, reading model output) in a confined check worker."""
        if self._pool is None:
            self._pool = CheckPool()
        return await self._pool.run(self.check_timeout, function, *args)

    # ---------------------------------------------------------------- workspace trials

    async def _fill_workspace(self, trial: Trial, outcome: Outcome) -> None:
        """The tool loop in a fresh workspace, then the checks and the validator on what it left."""
        plan, validation = trial.agent, trial.validation
        workspace = Workspace() if plan.uses_files else None
        try:
            for name, text in plan.files:
                workspace.write(name, text)
            toolbox = Toolbox(workspace, plan.skill)
            cached = []

            async def send(request: Request) -> Completion | None:
                completion, hit = await self._complete(trial.spec, trial.model, request, trial.run, outcome)
                cached.append(hit)
                if completion is not None:
                    outcome.hit_max_tokens = bool(outcome.hit_max_tokens) or completion.truncated
                return completion

            run = await run_agent(trial.request, plan, toolbox, send)
            outcome.turns, outcome.cached = len(cached), bool(cached) and all(cached)
            if run is None:
                return
            outcome.output = run.text
            outcome.input_tokens, outcome.output_tokens = run.input_tokens, run.output_tokens
            outcome.tool_calls = len(run.tool_calls)
            outcome.tools_used = (
                ", ".join(f"{n} {run.tool_calls.count(n)}" for n in dict.fromkeys(run.tool_calls)) or None
            )
            if plan.skill is not None:
                outcome.skill_loaded = run.skill_loaded
            if workspace is not None:
                outcome.files = ", ".join(workspace.files()) or None
            stopped = f" (stopped at max_turns = {plan.max_turns})" if run.hit_max_turns else ""
            results = []
            target = run.text
            if validation is not None and validation.output_file:
                try:
                    target = (
                        workspace.read(validation.output_file)
                        if workspace.path(validation.output_file).is_file()
                        else None
                    )
                except WorkspaceError:
                    target = None
                if target is None:  # nothing to check or validate
                    outcome.passed, outcome.message = (
                        False,
                        f"the model did not write {validation.output_file}" + stopped,
                    )
                    return
            if validation is None or validation.has_checks:
                result = await self._score(trial, target, outcome)
                if result is None:
                    return
                results.append(result)
            if validation is not None and validation.validator is not None and workspace is not None:
                result = await self._validate(trial, workspace, run.text, outcome)
                if result is None:
                    return
                results.append(result)
            failed = [r.message for r in results if not r.passed]
            outcome.passed = not failed
            outcome.message = (
                "; ".join(failed) if failed else "; ".join(r.message for r in results if r.message)
            ) + stopped
        finally:
            if workspace is not None:
                await asyncio.to_thread(workspace.cleanup)

    async def _validate(self, trial: Trial, workspace: Workspace, text: str, outcome: Outcome) -> CheckResult | None:
        validation = trial.validation
        validator = validation.validator
        ctx = Context(
            workspace,
            validation.output_file,
            text,
            validation.task,
            validation.config,
            Limits(seconds=self.check_timeout),
            judge=lambda *request: self._judge(trial, outcome, *request),
        )
        try:
            if validator.runs_async:
                return await validator.validate(ctx)
            if validator.confined:  # parses model output in-process: a check worker's job
                return await self._confined(validator.validate, replace(ctx, judge=None))
            # the other built-ins run model output through the sandbox, which enforces their limits; a
            # conftest's validator is trusted code and gets the check time limit
            return await _within(self.check_timeout if validator.custom else None, validator.validate, ctx)
        except (_TooLong, CheckTimeout):
            outcome.error_kind = CHECK_ERROR
            outcome.message = (
                f"validator {validator.name!r} ran longer than the check time limit "
                f"({self.check_timeout:g} s, --upskill-check-timeout)"
            )
        except JudgeError as exc:
            outcome.error_kind, outcome.message = JUDGE_ERROR, f"{trial.judge.name if trial.judge else 'judge'}: {exc}"
        except CheckCrashed as exc:
            outcome.error_kind, outcome.message = CHECK_ERROR, f"validator {validator.name!r} {exc}"
        except Exception as exc:
            outcome.error_kind, outcome.message = CHECK_ERROR, f"validator {validator.name!r} raised {_raised(exc)}"
        return None

    async def _judge(
        self, trial: Trial, outcome: Outcome, system: str, user: str, tools: tuple, tool_choice: str
    ) -> Completion | None:
        """One request to the judge model: its own limiter, retries and cache (run 1: the same
        submission gets the same verdict in every run); its tokens counted apart."""
        spec = trial.judge
        request = Request(
            system=system,
            user=user,
            model=spec.model,
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,
            seed=spec.seed,
            tools=tuple(tools),
            tool_choice=tool_choice,
        )
        own = Outcome(trial.skill, trial.case, spec.name, trial.arm, trial.run)
        completion, _ = await self._complete(spec, spec.name, request, 1, own)
        if completion is None:
            outcome.error_kind, outcome.message = own.error_kind, f"judge {own.message}"
            return None
        outcome.judge_input_tokens = (outcome.judge_input_tokens or 0) + completion.input_tokens
        outcome.judge_output_tokens = (outcome.judge_output_tokens or 0) + completion.output_tokens
        return completion

    async def _call(self, spec: ModelSpec, name: str, request: Request, outcome: Outcome) -> Completion | None:
        """The request, retried on the errors worth retrying, within the model's concurrency
        limit; on failure the outcome gets the last error and None is returned.

        Every attempt has a deadline (``timeout`` plus a margin, over the SDK's own timeout) and
        the pauses are bounded, so a trial always ends."""
        limiter = self._limiter(spec, name)
        try:
            for attempt in range(self.retries + 1):
                completion, error, seconds = await self._attempt(spec, name, request, limiter)
                outcome.latency_s += seconds
                if error is None:
                    limiter.dead_streak = 0
                    return completion
                outcome.error_kind, outcome.message = error.kind, str(error)
                if not error.retryable or attempt == self.retries:
                    break
                pause = (
                    error.retry_after
                    if error.retry_after is not None
                    else min(MAX_BACKOFF_S, self.backoff * 2**attempt) * random.uniform(0.5, 1.0)
                )
                if pause > MAX_RETRY_AFTER_S:
                    outcome.message += f" (the server asked to wait {pause:.0f} s; not retried)"
                    break
                await asyncio.sleep(pause)
            if not error.sent:
                return None
            if attempt:
                outcome.message += f" (after {attempt + 1} attempts)"
            if outcome.error_kind == CONNECTION:
                limiter.dead_streak += 1
                limiter.last_connection_error = str(error)
            elif (
                outcome.error_kind != TIMEOUT
            ):  # it answered, or took the request before the connection broke: it is up
                limiter.dead_streak = 0
            return None
        finally:
            outcome.latency_s = round(outcome.latency_s, 4)

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
                return (
                    None,
                    ProviderError(
                        OVER_BUDGET,
                        f"{name}: not sent: the estimated spend passed --upskill-max-cost ${self.budget.limit:g}",
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
                calls = tuple(ToolCall(c.id, c.name, self.redact(c.arguments_json)) for c in completion.tool_calls)
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
                tokens = (completion.input_tokens, completion.output_tokens) if completion else (0, 0)
                self.budget.settle(reservation, spec, *tokens)

    async def _answer(self, call, name: str, limiter: ModelLimiter, sent_with: int) -> Completion:
        """Await ``call`` under the time limit. A hosted API serves requests side by side: each gets
        ``timeout`` (plus a margin over the SDK's own). A self-hosted server may queue ours behind
        each other, and time spent waiting behind our own requests is not the server failing: an
        attempt times out when the server has answered nothing at all for ``timeout`` seconds, or
        when it has waited ``timeout`` for itself and for each request that was ahead of it."""
        task = asyncio.ensure_future(call)
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


def _raised(exc: Exception) -> str:
    """What a check raised, in a message: a worker's exception already names its type."""
    return str(exc) if isinstance(exc, CheckRaised) else f"{type(exc).__name__}: {exc}"


class _TooLong(Exception):
    """A check or validator passed its time limit."""


async def _within(limit: float | None, function: Callable, *args):
    """``function(*args)`` in a daemon thread; its result, or _TooLong after ``limit`` seconds."""
    work = _in_daemon_thread(function, *args)
    done, _ = await asyncio.wait({work}, timeout=limit)
    if not done:
        raise _TooLong
    return work.result()


def _in_daemon_thread(function: Callable, *args) -> asyncio.Future:
    """Run ``function`` in a daemon thread: one that never ends (a check stuck in a loop) is left
    behind without holding up the session or the interpreter's exit."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, error) -> None:
        if not future.done():
            future.set_exception(error) if error is not None else future.set_result(result)

    def work() -> None:
        result, error = None, None
        try:
            result = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting trial
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the session ended while this check ran
            pass

    threading.Thread(target=work, name="upskill-check", daemon=True).start()
    return future
