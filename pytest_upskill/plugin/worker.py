"""The worker role of an xdist run: it runs the items the controller sends it, starting the trials
of those already queued for it so that they are in flight together, and hands the controller what
its item reports do not carry (cache problems, how its limiters moved, SKILL.md files it did not
collect) through xdist's ``workeroutput``."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_upskill.plugin.collect import TrialItem
from pytest_upskill.plugin.session import UpskillRun


class Worker:
    """Registered as a plugin on an xdist worker; pytest calls its hooks."""

    def __init__(self, run: UpskillRun):
        self.run = run
        self._interactor: Any = None  # xdist's WorkerInteractor: the item it runs, the next one, its queue
        # a remote worker (--tx socket=/ssh=, in a folder of its own) keeps the cache entries it
        # writes, for the controller's cache; a local one writes to the controller's cache itself
        if run.config.workerinput.get("upskill_cache_root") != str(run.cache.root):  # type: ignore[attr-defined]
            run.cache.written = []

    def prefetch(self, session: pytest.Session) -> None:
        """Submit the trials of the items xdist has for this worker, in their order: the one it
        runs now and the next one (xdist has already taken both off the queue), then those still
        queued (``load`` never takes an item back, so none is sent twice). The model's requests
        then go out in the order the items report, and each item reports when its answer is in."""
        if self._interactor is None:
            self._interactor = _xdist_interactor(self.run.config)
            if self._interactor is None:
                return
        interactor = self._interactor
        with interactor.torun.lock() as pending:
            queued = list(pending)
        for index in (getattr(interactor, "item_index", None), getattr(interactor, "nextitem_index", None), *queued):
            item = session.items[index] if isinstance(index, int) else None
            if isinstance(item, TrialItem) and not (self.run.looks is not None and self.run.looks.defers(item.trial)):
                self.run.runner.submit(item.trial)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        run = self.run
        run.runner.close()
        output = run.config.workeroutput  # type: ignore[attr-defined]
        output["upskill_cache_problems"] = [f"{p.path}: {p.reason}" for p in run.cache.problems]
        output["upskill_throttling"] = run.runner.throttling()
        output["upskill_unseen"] = run.unseen.files
        output["upskill_cache_entries"] = run.cache.written or []


def _xdist_interactor(config: pytest.Config) -> Any:
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor" and hasattr(plugin, "torun"):
            return plugin
    return None
