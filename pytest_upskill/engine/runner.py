"""Dispatch: one asyncio loop in a background thread per process, and an :class:`Outcome` for
every trial, whatever happens. A plain trial is one completion scored by the case's checks; a
workspace trial is the tool loop in a fresh workspace, then its checks and its validator.
The requests go through transport.py; what they bring back is judged by scoring/scorer.py.

pytest runs items one after another; the runner lets a process *submit* the trials it will run
next so that they are in flight together, while each item only waits for its own outcome.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from pytest_upskill.engine.agent import Toolbox, run_agent
from pytest_upskill.engine.budget import Budget
from pytest_upskill.engine.cache import ResponseCache
from pytest_upskill.engine.limiter import ModelLimiter
from pytest_upskill.engine.providers import Completion
from pytest_upskill.engine.redact import Redactor
from pytest_upskill.engine.transport import Spent, Transport
from pytest_upskill.engine.trials import PlainTrial, Trial, WorkspaceTrial
from pytest_upskill.errors import TrialError, WorkspaceError
from pytest_upskill.models import ModelSpec
from pytest_upskill.scoring.checks import CheckResult
from pytest_upskill.scoring.expectations import failed_message
from pytest_upskill.scoring.sandbox import Workspace
from pytest_upskill.scoring.scorer import JudgeTokens, Scorer
from pytest_upskill.types import CacheMode, ErrorKind, Outcome, Request

__all__ = ["ModelLimiter", "Outcome", "Runner"]


def trigger_message(skill: str, should: bool, loaded: list[str], turns: int) -> str:
    """What a trigger trial did, in words: loaded the skill, another (routed elsewhere), or none."""
    others = [name for name in loaded if name != skill]
    after = " after a follow-up turn" if turns > 1 else ""
    if skill in loaded:
        return f"loaded {skill}{after}" + ("" if should else " for a request it should not take (false trigger)")
    if others:
        where = f"loaded {', '.join(others)} instead (routed elsewhere){after}"
        return where if not should else f"{where}; {skill} was not loaded"
    return f"loaded no skill{after}" + ("" if not should else f"; {skill} should have been loaded")


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
        cache_mode: str = CacheMode.OFF,
        budget: Budget | None = None,
        redact: Redactor | None = None,
        prompt_cache: bool = True,
        prefix_reuse: bool = True,
    ):
        """``concurrency``: requests in flight per model. ``timeout``: seconds per attempt.
        ``retries``: attempts after the first, ``backoff`` seconds apart, doubling, with jitter.
        ``cache_mode``: ``rw`` reads and writes ``cache``, ``replay`` only reads it and never
        calls a model, ``off`` ignores it."""
        self.redact = redact or Redactor(())
        self.transport = Transport(
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            cache=cache,
            cache_mode=cache_mode,
            budget=budget,
            redact=self.redact,
            prompt_cache=prompt_cache,
            prefix_reuse=prefix_reuse,
        )
        self.scorer = Scorer(self.transport, check_timeout)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._futures: dict[tuple[str, str, str, str, int], concurrent.futures.Future[Outcome]] = {}
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

    def complete(
        self,
        spec: ModelSpec,
        request: Request,
        run: int = 0,
        waiting: Callable[[float], None] | None = None,
        every: float = 30.0,
    ) -> Completion:
        """One request outside any trial (a teacher's), through the same transport: the cache,
        retries, limiter, budget and redaction; raises TrialError when there is no completion.
        ``waiting(seconds)`` is called every ``every`` seconds while the answer is being written."""
        future = asyncio.run_coroutine_threadsafe(
            self.transport.complete(spec, spec.name, request, run, Spent()), self._ensure_loop()
        )
        started = time.monotonic()
        while True:
            try:
                return future.result(timeout=every if waiting is not None else None)[0]
            except concurrent.futures.TimeoutError:
                assert waiting is not None
                waiting(time.monotonic() - started)

    def throttling(self) -> dict[str, dict[str, Any]]:
        return self.transport.throttling()

    def close(self) -> None:
        if self._loop is None:
            return
        for future in list(self._futures.values()):
            future.cancel()
        asyncio.run_coroutine_threadsafe(self._aclose(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
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

    async def _aclose(self) -> None:
        await self.scorer.aclose()
        await self.transport.aclose()

    async def _run(self, trial: Trial) -> Outcome:
        outcome = Outcome(
            trial.skill,
            trial.case,
            trial.model,
            trial.arm,
            trial.run,
            note=trial.note,
            against=trial.against,
            should_trigger=trial.should_trigger,
        )
        spent = Spent()
        try:
            match trial:
                case WorkspaceTrial():
                    await self._workspace(trial, outcome, spent)
                case PlainTrial():
                    await self._plain(trial, outcome, spent)
        except TrialError as exc:
            outcome.passed, outcome.error_kind, outcome.message = None, exc.kind, str(exc)
        except Exception as exc:  # a bug of ours must still leave this trial exactly one outcome
            outcome.passed, outcome.error_kind = None, ErrorKind.BAD_RESPONSE
            outcome.message = f"{trial.model}: internal error while running the trial: {type(exc).__name__}: {exc}"
        outcome.latency_s = spent.seconds
        return self._masked(outcome)

    def _masked(self, outcome: Outcome) -> Outcome:
        """Every text of the outcome masked, as decoded and stored: the message, the answer, the
        paths the model named (from arguments that may have spelled a key in escapes), the files,
        the judge's evidence for each expectation."""
        for f in fields(outcome):
            value = getattr(outcome, f.name)
            if isinstance(value, str):
                setattr(outcome, f.name, self.redact(value))
            elif isinstance(value, list):
                setattr(outcome, f.name, [self._masked_value(v) for v in value])
        return outcome

    def _masked_value(self, value: Any) -> Any:
        """A list item of an outcome masked: a string, or the strings of a dict (an expectation's grade)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {k: self.redact(v) if isinstance(v, str) else v for k, v in value.items()}
        return value

    async def _plain(self, trial: PlainTrial, outcome: Outcome, spent: Spent) -> None:
        completion, outcome.cached = await self.transport.complete(
            trial.spec, trial.model, trial.request, trial.run, spent, trial.cache_salt
        )
        outcome.output = completion.text
        outcome.input_tokens, outcome.output_tokens = completion.input_tokens, completion.output_tokens
        outcome.cache_read_tokens, outcome.cache_write_tokens = (
            completion.cache_read_tokens,
            completion.cache_write_tokens,
        )
        outcome.hit_max_tokens = completion.truncated
        result = await self.scorer.checks(trial.checks, trial.score, outcome.output)
        outcome.passed, outcome.message = result.passed, result.message
        if trial.graded is not None:
            tokens = JudgeTokens()
            try:
                await self._grade(trial, outcome, outcome.output, tokens)
            finally:
                outcome.judge_input_tokens, outcome.judge_output_tokens = tokens.input, tokens.output

    async def _grade(self, trial: Trial, outcome: Outcome, text: str, tokens: JudgeTokens) -> None:
        """The case's expectations graded by the judge; the trial passes where its checks did and
        every expectation is met."""
        graded = trial.graded
        assert graded is not None
        grades = await self.scorer.expectations(
            graded.judge, graded.task, graded.expectations, graded.expected_output, text, tokens
        )
        outcome.expectations = grades
        failed = failed_message(grades)
        if failed:
            outcome.message = "; ".join(m for m in (outcome.message if not outcome.passed else "", failed) if m)
            outcome.passed = False
        elif outcome.passed:
            outcome.message = f"every expectation met ({len(grades)})"

    async def _workspace(self, trial: WorkspaceTrial, outcome: Outcome, spent: Spent) -> None:
        """The tool loop in a fresh workspace, then the checks and the validator on what it left."""
        plan, validation = trial.agent, trial.validation
        workspace = Workspace() if plan.uses_files else None
        tokens = JudgeTokens()
        try:
            for name, text in plan.files:
                assert workspace is not None
                workspace.write(name, text)
            toolbox = Toolbox(workspace, plan.served, own=trial.skill)
            cached: list[bool] = []

            async def send(request: Request) -> Completion:
                try:
                    completion, hit = await self.transport.complete(
                        trial.spec, trial.model, request, trial.run, spent, trial.cache_salt
                    )
                except TrialError:
                    outcome.turns = len(cached) + 1
                    outcome.cached = False
                    raise
                cached.append(hit)
                outcome.hit_max_tokens = bool(outcome.hit_max_tokens) or completion.truncated
                return completion

            run = await run_agent(trial.request, plan, toolbox, send)
            outcome.turns, outcome.cached = len(cached), bool(cached) and all(cached)
            outcome.output = run.text
            outcome.input_tokens, outcome.output_tokens = run.input_tokens, run.output_tokens
            outcome.cache_read_tokens, outcome.cache_write_tokens = run.cache_read_tokens, run.cache_write_tokens
            outcome.tool_calls = len(run.tool_calls)
            outcome.tools_used = (
                ", ".join(f"{n} {run.tool_calls.count(n)}" for n in dict.fromkeys(run.tool_calls)) or None
            )
            outcome.calls = run.calls or None
            outcome.written = toolbox.written or None
            if plan.served:
                outcome.skill_loaded, outcome.loaded = run.skill_loaded, run.chosen or None
            if workspace is not None:
                outcome.files = ", ".join(workspace.files()) or None
            if trial.should_trigger is not None:  # a trigger case: did it load the skill, among the catalog?
                chose = trial.skill in run.chosen
                outcome.passed = chose == trial.should_trigger
                outcome.message = trigger_message(trial.skill, trial.should_trigger, run.chosen, run.turns)
                return
            if trial.names_skill:  # the positive control: asked for the skill by name, did it load it?
                outcome.passed = run.skill_loaded
                outcome.message = (
                    "loaded the skill it was asked for by name"
                    if run.skill_loaded
                    else "did not load the skill, though the request named it (positive control)"
                )
                return
            stopped = f" (stopped at max_turns = {plan.max_turns})" if run.hit_max_turns else ""
            results: list[CheckResult] = []
            target: str | None = run.text
            if validation is not None and validation.output_file:
                assert workspace is not None
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
            assert target is not None
            if validation is None or validation.has_checks:
                results.append(await self.scorer.checks(trial.checks, trial.score, target))
            if validation is not None and validation.validator is not None and workspace is not None:
                results.append(await self.scorer.validate(validation, workspace, run.text, tokens))
            failed = [r.message for r in results if not r.passed]
            outcome.passed = not failed
            outcome.message = (
                "; ".join(failed) if failed else "; ".join(r.message for r in results if r.message)
            ) + stopped
            if trial.graded is not None:
                await self._grade(trial, outcome, target, tokens)
        finally:
            if tokens.asked:
                outcome.judge_input_tokens, outcome.judge_output_tokens = tokens.input, tokens.output
            if workspace is not None:
                await asyncio.to_thread(workspace.cleanup)
