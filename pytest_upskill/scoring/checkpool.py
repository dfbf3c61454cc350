"""Confined worker processes for the built-in checks and data-file validators.

A built-in check or validator reads model output: a regular expression or a JSON Schema
``pattern`` can backtrack for hours on it, a YAML file can expand to gigabytes, a schema's ``$ref``
could reach for the network. None of that runs in the pytest process. A :class:`CheckPool` keeps a
few worker processes, each started through :mod:`pytest_upskill.scoring._confine` like every sandboxed
program (no network namespace, Landlock, a memory limit, no write anywhere but an empty folder of
its own, an environment without the parent's secrets), and sends them one job at a time:

* a job is a function of ours and its arguments, pickled by the parent (the worker trusts the
  parent, never the other way round): the worker answers with one line of JSON, the
  :class:`CheckResult` or the exception the function raised, its message bounded;
* the parent waits at most the check time limit (``--upskill-check-timeout``) and otherwise kills
  the worker (its process group and PID namespace: nothing it started survives) and starts another
  for the next job; a worker that met its memory limit is replaced too;
* jobs wait for a free worker, not for one another: a slow check holds one worker, never the
  event loop.

    python -I -m pytest_upskill.scoring.checkpool      # a worker, as the pool starts it (jobs on stdin)
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import shutil
import signal
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_upskill.errors import CheckCrashed, CheckRaised, CheckTimeout
from pytest_upskill.scoring.checks import CheckResult, as_result
from pytest_upskill.scoring.sandbox import Limits, child_env, launcher
from pytest_upskill.types import cores_per_process

MESSAGE_LIMIT = 4_000  # characters of a result's message, or of a raised exception's, that come back
WORKER_LIMITS = Limits(memory_mb=2048, file_mb=1)  # of each worker (its time limit is the job's, kept by the pool)
_HEADER = struct.Struct(">Q")


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process, home: str):
        self.process, self.home = process, home
        assert process.stdin and process.stdout and process.stderr  # started with three pipes
        self.stdin, self.stdout, self.stderr_pipe = process.stdin, process.stdout, process.stderr
        self.stderr = b""

    @classmethod
    async def start(cls, limits: Limits) -> _Worker:
        home = tempfile.mkdtemp(prefix="upskill-check-")
        policy = {
            "workspace": home,
            "memory_mb": limits.memory_mb,
            "cpu_s": None,
            "file_mb": limits.file_mb,
            "writable": [],
            "seconds": None,
        }
        process = await asyncio.create_subprocess_exec(
            *launcher(policy, [sys.executable, "-I", "-m", __name__]),
            cwd=home,
            env=child_env(Path(home), Path(home), Path(home)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=4 * MESSAGE_LIMIT + 1024,
        )
        return cls(process, home)

    async def call(self, job: bytes) -> dict[str, Any]:
        self.stdin.write(_HEADER.pack(len(job)) + job)
        await self.stdin.drain()
        line = await self.stdout.readline()
        if not line:
            raise CheckCrashed(await self._ended())
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def _ended(self) -> str:
        """Why the worker ended: its status and the last of its stderr."""
        try:
            self.stderr = await asyncio.wait_for(self.stderr_pipe.read(), 5)
        except TimeoutError:
            pass
        code = await self.process.wait()
        tail = self.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return f"ended its worker process (exit status {code})" + (": " + " | ".join(tail) if tail else "")

    def kill(self) -> None:
        self.stdin.close()  # the pipe's transport closes with it (not later, from a closed loop)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the launcher and the worker; the PID namespace takes the rest
        except ProcessLookupError:
            pass
        shutil.rmtree(self.home, ignore_errors=True)

    async def reap(self) -> None:
        """Kill the worker and wait until its process and pipes are closed (before the loop closes)."""
        if not self.stdin.is_closing():
            self.kill()
        try:
            await asyncio.wait_for(asyncio.gather(self.process.wait(), self.stdout.read(), self.stderr_pipe.read()), 5)
        except (TimeoutError, OSError, ValueError):
            pass


class CheckPool:
    """At most ``size`` confined workers, started when first needed; :meth:`run` sends one job."""

    def __init__(self, size: int | None = None, limits: Limits = WORKER_LIMITS):
        # at least two in one process (a slow check holds one, never all); an xdist worker its share of the cores
        fewest = 1 if os.environ.get("PYTEST_XDIST_WORKER_COUNT") else 2
        self.size = size or max(fewest, cores_per_process())
        self.limits = limits
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._killed: list[_Worker] = []  # reaped by close()
        self._slots: asyncio.Semaphore | None = None  # created in the loop that runs the jobs

    async def run(self, timeout: float, function: Callable[..., Any], *args: Any) -> CheckResult:
        """``function(*args)`` in a worker, as a CheckResult; CheckTimeout after ``timeout`` seconds,
        CheckRaised when it raised, CheckCrashed when it ended the worker."""
        job = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            worker = self._idle.pop() if self._idle else await _Worker.start(self.limits)
            self._busy.add(worker)
            keep = False
            try:
                answer = await asyncio.wait_for(worker.call(job), timeout)
                keep = "memory" not in answer
            except TimeoutError:
                raise CheckTimeout from None
            finally:
                self._busy.discard(worker)
                if keep:
                    self._idle.append(worker)
                else:
                    worker.kill()
                    self._killed.append(worker)
        if "raised" in answer:
            raise CheckRaised(answer["raised"], answer.get("message", ""))
        if "memory" in answer:
            raise CheckCrashed(f"stopped at the memory limit of a check worker ({self.limits.memory_mb} MB)")
        return CheckResult(answer["passed"] is True, str(answer.get("message", "")))

    async def close(self) -> None:
        workers, self._idle, self._killed = [*self._idle, *self._busy, *self._killed], [], []
        self._busy.clear()
        await asyncio.gather(*(worker.reap() for worker in workers))


# ------------------------------------------------------------------------------- the worker


def _bounded(text: str) -> str:
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 20] + " … (cut)"


def _answer(function: Callable[..., Any], args: tuple[Any, ...]) -> dict[str, Any]:
    try:
        result = as_result(function(*args))
    except MemoryError:
        return {"memory": True}
    except RecursionError:
        return {"raised": "RecursionError", "message": "nested too deeply"}
    except Exception as exc:  # noqa: BLE001 - the job's own failure, reported to the parent
        return {"raised": type(exc).__name__, "message": _bounded(str(exc))}
    return {"passed": result.passed, "message": _bounded(result.message)}


def serve() -> None:
    """Answer jobs from stdin until it closes."""
    import jsonschema  # noqa: F401 - imported once, before the first job
    import yaml  # noqa: F401

    from pytest_upskill.scoring import validators  # noqa: F401

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        job = stdin.read(_HEADER.unpack(header)[0])
        try:
            function, args = pickle.loads(job)
        except Exception as exc:  # noqa: BLE001 - a job naming what this worker cannot import
            answer = {"raised": type(exc).__name__, "message": _bounded(str(exc))}
        else:
            answer = _answer(function, args)
        try:
            line = json.dumps(answer, ensure_ascii=True)
        except MemoryError:
            line = '{"memory": true}'
        stdout.write(line.encode() + b"\n")
        stdout.flush()
        if "memory" in answer:
            return  # the parent starts a fresh worker


if __name__ == "__main__":
    serve()
