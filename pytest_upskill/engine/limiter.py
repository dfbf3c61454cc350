"""The bound on one model's requests in flight, and how it adapts to what the server can take:
429s, answers that queue on a self-hosted server, what the server says it serves at once.
Requests wait for a slot in the order they came (transport.py asks for one per attempt)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from pytest_upskill.engine.providers.base import RATE_LIMIT, TIMEOUT


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
        self.asking: asyncio.Future[None] | None = None  # the question to the server about its slots
        self.dead_streak = 0  # trials in a row that ended unable to connect
        self.last_connection_error = ""
        self._epoch = 0
        self._successes = 0
        self._waiting: collections.deque[asyncio.Future[None]] = (
            collections.deque()
        )  # FIFO: wake only as many as may go

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

    def summary(self) -> dict[str, Any]:
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
