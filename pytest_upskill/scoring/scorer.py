"""Scoring: what a trial's answer is worth. The case's checks (built-in ones in a confined check
worker, a conftest's in a thread), its validator (confined, sandboxed, or a conftest's) and the
judge model of llm_judge, all awaited the same way: each returns a :class:`CheckResult` or raises
a :class:`~pytest_upskill.types.TrialError` (``check_error``, ``judge_error``, or the judge
request's own kind) when it could not say, under the check time limit.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pytest_upskill.engine.providers import Completion
from pytest_upskill.engine.transport import Spent, Transport
from pytest_upskill.errors import CheckCrashed, CheckRaised, CheckTimeout, JudgeError, TrialError
from pytest_upskill.models import ModelSpec
from pytest_upskill.scoring.checkpool import CheckPool
from pytest_upskill.scoring.checks import CheckResult, score_builtin, split_confined
from pytest_upskill.scoring.expectations import grade
from pytest_upskill.scoring.sandbox import Limits, Workspace
from pytest_upskill.scoring.validators import Context, Validator
from pytest_upskill.types import ErrorKind, Request


@dataclass(frozen=True)
class Validation:
    """A case's validator with its prepared config, what it validates, and the judge model that
    llm_judge asks."""

    validator: Validator | None
    config: object
    output_file: str | None
    task: str
    has_checks: bool = True  # the case's ``expected`` holds checks to score as well
    judge: ModelSpec | None = None


@dataclass
class JudgeTokens:
    """The judge model's tokens for one trial, counted apart from the model's."""

    input: int = 0
    output: int = 0
    asked: bool = False


class Scorer:
    def __init__(self, transport: Transport, check_timeout: float):
        self.transport = transport
        self.check_timeout = check_timeout
        self._pool: CheckPool | None = None  # confined workers for the built-in checks and validators

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def checks(
        self, builtin: dict[str, Any], custom: Callable[[str], CheckResult] | None, text: str
    ) -> CheckResult:
        """The case's ``expected`` checks on ``text``."""
        results = []
        try:
            inline, confined = split_confined(builtin)
            if inline:
                results.append(score_builtin(inline, text))
            if confined:
                results.append(await self._confined(score_builtin, confined, text))
            if custom is not None:
                results.append(await _within(self.check_timeout, custom, text))
        except (_TooLong, CheckTimeout):
            raise TrialError(
                ErrorKind.CHECK_ERROR,
                f"a check ran longer than the check time limit ({self.check_timeout:g} s, --upskill-check-timeout)",
            ) from None
        except CheckCrashed as exc:
            raise TrialError(ErrorKind.CHECK_ERROR, f"a check {exc}") from None
        except Exception as exc:
            raise TrialError(ErrorKind.CHECK_ERROR, f"a check raised {_raised(exc)}") from None
        failures = [r.message for r in results if not r.passed]
        return CheckResult(not failures, "; ".join(failures))

    async def validate(
        self, validation: Validation, workspace: Workspace, text: str, tokens: JudgeTokens
    ) -> CheckResult:
        """The case's validator on the workspace the model left, ``text`` the model's last answer;
        ``tokens``: the judge's, added up."""
        validator = validation.validator
        assert validator is not None
        judge = validation.judge

        async def ask_judge(system: str, user: str, tools: tuple[Any, ...], tool_choice: str) -> Completion:
            if judge is None:
                raise JudgeError("no judge model: set --upskill-judge-model")
            return await self._judge(judge, tokens, system, user, tools, tool_choice)

        ctx = Context(
            workspace,
            validation.output_file,
            text,
            validation.task,
            validation.config,
            Limits(seconds=self.check_timeout),
            judge=ask_judge,
        )
        try:
            if validator.runs_async:
                result: CheckResult = await validator.validate(ctx)  # type: ignore[misc]  # an async validate (llm_judge)
                return result
            if validator.confined:  # parses model output in-process: a check worker's job
                return await self._confined(validator.validate, replace(ctx, judge=None))
            # the other built-ins run model output through the sandbox, which enforces their limits; a
            # conftest's validator is trusted code and gets the check time limit
            checked: CheckResult = await _within(
                self.check_timeout if validator.custom else None, validator.validate, ctx
            )
            return checked
        except TrialError as exc:  # the judge's request failed
            raise TrialError(exc.kind, f"judge {exc}") from None
        except (_TooLong, CheckTimeout):
            message = (
                f"validator {validator.name!r} ran longer than the check time limit "
                f"({self.check_timeout:g} s, --upskill-check-timeout)"
            )
            raise TrialError(ErrorKind.CHECK_ERROR, message) from None
        except JudgeError as exc:
            raise TrialError(ErrorKind.JUDGE_ERROR, f"{judge.name if judge else 'judge'}: {exc}") from None
        except CheckCrashed as exc:
            raise TrialError(ErrorKind.CHECK_ERROR, f"validator {validator.name!r} {exc}") from None
        except Exception as exc:
            raise TrialError(ErrorKind.CHECK_ERROR, f"validator {validator.name!r} raised {_raised(exc)}") from None

    async def expectations(
        self,
        judge: ModelSpec,
        task: str,
        expectations: tuple[str, ...],
        expected_output: str | None,
        text: str,
        tokens: JudgeTokens,
    ) -> list[dict[str, Any]]:
        """Each expectation graded by ``judge`` against the answer ``text`` (scoring/expectations.py);
        a TrialError (``judge_error``, or the request's) where the judge gives no usable grades."""

        async def ask(system: str, user: str, tools: tuple[Any, ...], tool_choice: str) -> Completion:
            return await self._judge(judge, tokens, system, user, tools, tool_choice)

        try:
            return await grade(ask, task, expectations, expected_output, text)
        except TrialError as exc:  # the judge's request failed
            raise TrialError(exc.kind, f"judge {exc}") from None
        except JudgeError as exc:
            raise TrialError(ErrorKind.JUDGE_ERROR, f"{judge.name}: {exc}") from None

    async def _judge(
        self, spec: ModelSpec, tokens: JudgeTokens, system: str, user: str, tools: tuple[Any, ...], tool_choice: str
    ) -> Completion:
        """One request to the judge model: its own limiter, retries and cache (run 1: the same
        submission gets the same verdict in every run); its tokens counted apart."""
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
        completion, _ = await self.transport.complete(spec, spec.name, request, 1, Spent())
        tokens.asked = True
        tokens.input += completion.input_tokens
        tokens.output += completion.output_tokens
        return completion

    async def _confined(self, function: Callable[..., Any], *args: Any) -> CheckResult:
        """``function(*args)`` (ours, reading model output) in a confined check worker."""
        if self._pool is None:
            self._pool = CheckPool()
        return await self._pool.run(self.check_timeout, function, *args)


def _raised(exc: Exception) -> str:
    """What a check raised, in a message: a worker's exception already names its type."""
    return str(exc) if isinstance(exc, CheckRaised) else f"{type(exc).__name__}: {exc}"


class _TooLong(Exception):
    """A check or validator passed its time limit."""


async def _within(limit: float | None, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a daemon thread; its result, or _TooLong after ``limit`` seconds."""
    work = _in_daemon_thread(function, *args)
    done, _ = await asyncio.wait({work}, timeout=limit)
    if not done:
        raise _TooLong
    return work.result()


def _in_daemon_thread(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """Run ``function`` in a daemon thread: one that never ends (a check stuck in a loop) is left
    behind without holding up the session or the interpreter's exit."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
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
