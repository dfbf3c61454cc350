"""The xdist scheduler of a run with ``-n`` (xdist's ``load`` distribution, its default).

xdist's own ``load`` scheduler hands each worker a quarter of its share and refills it in small
chunks as items finish: a worker then has only a few trials queued, so only a few requests in
flight, and ``-n 2`` ran slower than one process (benchmarks/README.md). ``worksteal`` hands out
whole shares but takes queued items back from a worker that may already have sent their
requests, and the same paid request then goes out twice.

This one cuts the collection into one contiguous share per worker, the items of a skill × model
next to each other, so a skill × model is split only where two shares meet (at most one split per
worker): a worker keeps its prompt prefixes (the in-process model evaluates a skill's once) and
its model's limiter. Each worker gets its whole share at once, so it starts all its trials
together (worker.py), and nothing is ever taken back. Only a crashed worker's unfinished items
are handed to the worker xdist starts in its place (their answers, where they came, are in the
response cache). Every item runs exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdist.scheduler import LoadScheduling

from pytest_upskill.engine.nodeids import group_of
from pytest_upskill.plugin.session import RUN


def shares(collection: Sequence[str], indices: Sequence[int], workers: int, whole: bool = False) -> list[list[int]]:
    """``indices`` (into ``collection``) cut into ``workers`` contiguous shares of sizes that differ
    by at most one, after putting each skill × model's items together (in the order first seen).
    With ``whole`` (--upskill-runs auto, whose looks read a skill × model's every trial) no skill ×
    model is split: each share takes whole ones until it holds its part of the items."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index in indices:
        groups.setdefault(group_of(collection[index]), []).append(index)
    if whole:
        cut: list[list[int]] = [[] for _ in range(workers)]
        target, k = len(indices) / workers, 0
        for group in groups.values():
            if k < workers - 1 and cut[k] and len(cut[k]) + len(group) / 2 > target:
                k += 1
            cut[k].extend(group)
        return cut
    order = [index for group in groups.values() for index in group]
    size, extra = divmod(len(order), workers)
    cut, start = [], 0
    for k in range(workers):
        end = start + size + (k < extra)
        cut.append(order[start:end])
        start = end
    return cut


class UpskillScheduling(LoadScheduling):  # type: ignore[misc]  # xdist ships no types
    """xdist's ``load`` bookkeeping (collections, crashes, completion), with the whole share of each
    worker sent at once (see the module's text)."""

    collection: list[str] | None
    pending: list[int]

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is None:
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = next(iter(self.node2collection.values()))
            self.pending[:] = range(len(self.collection))
        self._hand_out()

    def check_schedule(self, node: Any, duration: float = 0) -> None:
        """Called as items finish and after a crash: only the items of a crashed worker are still
        pending, and they go to a worker that has been given nothing yet (xdist's replacement)."""
        self._hand_out()

    def _hand_out(self) -> None:
        fresh = [node for node in self.nodes if not node.shutting_down and not self.node2pending[node]]
        if not fresh:
            return
        assert self.collection is not None
        whole = bool(self.config.stash[RUN].settings.auto_runs)
        for node, share in zip(fresh, shares(self.collection, self.pending, len(fresh), whole), strict=True):
            if share:
                self.node2pending[node].extend(share)
                node.send_runtest_some(share)
            node.shutdown()  # runs what it was sent, then stops
        self.pending[:] = []
