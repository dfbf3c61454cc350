"""The local model in a process of its own: a native crash costs its trials, never the session.

llama.cpp is native code. Built for a CPU feature the machine advertises but does not allow (AMX
under some hypervisors), it dies with SIGILL at the first prompt; a grammar bug can segfault. In
the pytest process that ended the whole session: no report, no JUnit, nothing of the trials that
had finished. :class:`LocalProvider` runs the model (:class:`.local.InProcessModel`, unchanged: one
llama.cpp thread, the kept prefixes) in a child process started once per model and pytest process:

    python -I -m pytest_upskill.engine.providers.local_process SPEC_JSON PREFIX_REUSE

and exchanges one request and one answer at a time with it, as length-prefixed JSON on its stdin
and stdout (the parent never unpickles what the child says). If the child dies, the request it was
answering, and every later one for that model, is an error of kind ``model_crashed`` that names
the signal and what to do; every other trial, and every report, is kept.

For tests, ``UPSKILL_LOCAL_CRASH_AFTER=N`` makes the child kill itself with SIGILL when asked for
its (N+1)-th answer: the crash above, on any machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
import sys
from dataclasses import asdict
from typing import Any

from pytest_upskill.engine.providers.base import Completion
from pytest_upskill.errors import ProviderError
from pytest_upskill.models import ModelSpec
from pytest_upskill.types import ErrorKind, Message, Request, Tool, ToolCall, ToolResult

_HEADER = struct.Struct(">Q")
CRASH_AFTER_ENV = "UPSKILL_LOCAL_CRASH_AFTER"
MAX_ANSWER_BYTES = 64 << 20  # of one answer from the child


def _what_crashed(name: str, code: int | None) -> str:
    if code is not None and code < 0:
        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        how = f"was killed by {signame}"
    else:
        how = f"exited (status {code})"
    advice = (
        "llama.cpp was built for a CPU feature this machine does not allow (a native build on a VM that "
        "advertises AMX or AVX-512 it refuses): reinstall llama-cpp-python with the portable build the README gives "
        '(CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON")'
        if code == -signal.SIGILL
        else "a crash in llama.cpp (native code, not this plugin): see the model's stderr above; the other models' "
        "trials and every report are kept"
    )
    return f"{name}: the local model's process {how}; its trials are errors. {advice}"


def request_from(data: dict[str, Any]) -> Request:
    """A Request from its JSON (dataclasses.asdict's shape)."""
    tools = tuple(Tool(**t) for t in data.pop("tools"))
    output = data.pop("output")
    history = tuple(
        Message(
            m["role"],
            m["text"],
            tuple(ToolCall(**c) for c in m["tool_calls"]),
            tuple(ToolResult(**r) for r in m["results"]),
        )
        for m in data.pop("history")
    )
    return Request(**data, tools=tools, history=history, output=Tool(**output) if output else None)


class LocalProvider:
    capacity = 1  # a llama.cpp context serves one request at a time: the runner sends one at a time

    def __init__(self, spec: ModelSpec, *, timeout: float, prefix_reuse: bool = True):
        self.spec, self.prefix_reuse = spec, prefix_reuse
        self._process: asyncio.subprocess.Process | None = None
        self._lock: asyncio.Lock | None = None
        self._crashed: str | None = None  # why, once the model's process died: later requests fail at once
        self._answering: asyncio.Task[Completion] | None = None  # the request the process is answering now
        self._stopping = False  # its process was killed at the time limit (not a crash)

    async def complete(self, request: Request) -> Completion:
        if self._lock is None:
            self._lock = asyncio.Lock()
        task = asyncio.ensure_future(self._exchange(request))
        try:
            # shielded: a request is answered or its process stopped, so the next request never reads an
            # answer that was not its own
            return await asyncio.shield(task)
        except asyncio.CancelledError:  # the runner gave up on it (its time limit)
            if self._answering is task and self._process is not None:
                self._stopping = True
                self._process.kill()  # nobody waits for this answer: stop computing it (a new process serves the next)
            else:
                task.cancel()  # still waiting for its turn: never sent
            raise

    async def _exchange(self, request: Request) -> Completion:
        assert self._lock is not None
        async with self._lock:
            if self._crashed is not None:
                raise ProviderError(ErrorKind.MODEL_CRASHED, self._crashed, sent=False)
            self._answering = asyncio.current_task()
            process = await self._started()
            assert process.stdin is not None and process.stdout is not None
            payload = json.dumps(asdict(request)).encode()
            try:
                process.stdin.write(_HEADER.pack(len(payload)) + payload)
                await process.stdin.drain()
                size = _HEADER.unpack(await process.stdout.readexactly(_HEADER.size))[0]
                if size > MAX_ANSWER_BYTES:
                    raise ProviderError(ErrorKind.BAD_RESPONSE, f"{self.spec.name}: an answer of {size:,} bytes")
                answer = json.loads(await process.stdout.readexactly(size))
            except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError):
                code = await process.wait()
                if self._stopping:  # killed here, at the time limit: the next request starts a new process
                    self._stopping, self._process = False, None
                    raise ProviderError(ErrorKind.TIMEOUT, f"{self.spec.name}: stopped at the time limit") from None
                self._crashed = _what_crashed(self.spec.name, code)
                raise ProviderError(ErrorKind.MODEL_CRASHED, self._crashed) from None
            finally:
                self._answering = None
        if "error" in answer:
            raise ProviderError(answer["error"]["kind"], answer["error"]["message"])
        c = answer["completion"]
        return Completion(
            c["text"],
            c["input_tokens"],
            c["output_tokens"],
            c["seconds"],
            tuple(ToolCall(**t) for t in c["tool_calls"]),
            truncated=c["truncated"],
            cache_read_tokens=c["cache_read_tokens"],
            cache_write_tokens=c["cache_write_tokens"],
        )

    async def _started(self) -> asyncio.subprocess.Process:
        if self._process is None:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-I",
                "-m",
                __name__,
                self.spec.model_dump_json(),
                "1" if self.prefix_reuse else "0",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=MAX_ANSWER_BYTES + _HEADER.size,
            )
        return self._process

    async def aclose(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        process.stdin.close()  # the child ends when its input does, once it has answered
        try:
            await asyncio.wait_for(process.wait(), 0 if self._answering is not None else 5)
        except TimeoutError:  # still computing an answer nobody will read: never outlive the session
            process.kill()
            await process.wait()


def serve(spec: ModelSpec, prefix_reuse: bool) -> None:
    """The child: answer requests from stdin until it closes."""
    from pytest_upskill.engine.providers.local import InProcessModel, unload_all

    model = InProcessModel(spec, prefix_reuse=prefix_reuse)
    crash_after = int(os.environ.get(CRASH_AFTER_ENV, "-1"))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write on the answers' pipe
    answered = 0
    while header := stdin.read(_HEADER.size):
        request = request_from(json.loads(stdin.read(_HEADER.unpack(header)[0])))
        if answered == crash_after:
            os.kill(os.getpid(), signal.SIGILL)
        try:
            completion = model._complete(request)
            reply: dict[str, Any] = {"completion": asdict(completion)}
        except ProviderError as exc:
            reply = {"error": {"kind": exc.kind, "message": str(exc)}}
        data = json.dumps(reply).encode()
        stdout.write(_HEADER.pack(len(data)) + data)
        stdout.flush()
        answered += 1
    unload_all()


if __name__ == "__main__":
    signal.signal(signal.SIGILL, signal.SIG_DFL)
    serve(ModelSpec.model_validate_json(sys.argv[1]), sys.argv[2] == "1")
