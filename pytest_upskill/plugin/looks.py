"""``--upskill-runs auto`` in a pytest session: the items of runs 2, 3, ... wait for the look before
them (results/sequential.py decides). The first item of run k of a skill × model to be set up makes
look k - 1: it waits for the outcomes of run k - 1 of that skill × model (in flight together), and
either stops it (every later item of it is skipped, saying why) or starts run k of its cases,
together. Under xdist the scheduler keeps a skill × model on one worker, so
each worker looks at its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pytest_upskill.engine.runner import Runner
from pytest_upskill.engine.trials import Trial
from pytest_upskill.results.aggregate import Result
from pytest_upskill.results.sequential import RERUN_ARMS, Rules, has_question, open_questions
from pytest_upskill.types import Outcome

NOT_NEEDED_PROPERTY = "upskill_not_needed"  # on a trial item skipped by a look: its skill, model and why


@dataclass(frozen=True)
class Decision:
    cases: frozenset[str]  # the cases that run at this run
    why: str = ""  # why the others do not


class Looks:
    """The looks of one process: every trial collected (by skill × model and run), the decisions
    made, and the outcomes its items have taken."""

    def __init__(self, runner: Runner, rules: Rules, budget_left: Callable[[], bool] | None = None):
        self.runner = runner
        self.rules = rules
        self.budget_left = budget_left  # whether any budget is left (None: no --upskill-max-cost)
        self._trials: dict[tuple[str, str], dict[int, list[Trial]]] = {}
        self._thresholds: dict[tuple[str, str], dict[str, float]] = {}
        self._decisions: dict[tuple[str, str, int], Decision] = {}
        self._done: dict[tuple[str, str, str, str, int], Outcome] = {}  # the outcomes items have taken

    def add(self, trial: Trial, thresholds: dict[str, float]) -> None:
        key = (trial.skill, trial.model)
        self._trials.setdefault(key, {}).setdefault(trial.run, []).append(trial)
        self._thresholds[key] = thresholds

    def record(self, trial: Trial, outcome: Outcome) -> None:
        """An item took its trial's outcome (the runner forgets it then): keep it for the looks."""
        self._done[trial.key] = outcome

    def _outcome(self, trial: Trial) -> Outcome:
        done = self._done.get(trial.key)
        return done if done is not None else self.runner.submit(trial).result()

    @staticmethod
    def defers(trial: Trial) -> bool:
        """Whether the trial waits for a look (not submitted ahead with the rest)."""
        return trial.run > 1

    def skip_reason(self, trial: Trial) -> str | None:
        """None where this trial runs; else why it is not needed."""
        if trial.run <= 1:
            return None
        decision = self._decide((trial.skill, trial.model), trial.run)
        if trial.case in decision.cases and trial.arm in RERUN_ARMS:
            return None
        return decision.why or f"upskill: run {trial.run} not needed: the controls run once"

    def _decide(self, key: tuple[str, str], run: int) -> Decision:
        found = self._decisions.get((*key, run))
        if found is not None:
            return found
        by_run = self._trials.get(key, {})
        if run == 1:
            decision = Decision(frozenset(t.case for t in by_run.get(1, [])))
        else:
            before = self._decide(key, run - 1)
            if not before.cases:
                decision = before
            else:
                decision = self._look(key, run)
        self._decisions[(*key, run)] = decision
        return decision

    def _look(self, key: tuple[str, str], run: int) -> Decision:
        """Look after run ``run - 1``: stop, or start run ``run`` of every case (the arms a verdict reads)."""
        result = Result(*key)
        by_run = self._trials.get(key, {})
        for k in range(1, run):
            chosen = self._decisions[(*key, k)].cases
            for trial in by_run.get(k, []):
                if trial.case in chosen and (k == 1 or trial.arm in RERUN_ARMS):
                    result.add(self._outcome(trial), self._thresholds.get(key))
        skill, model = key
        done = run - 1
        if not has_question(result, self.rules):
            return Decision(frozenset(), f"upskill: run {run} not needed: {skill} × {model} has nothing to decide")
        if not open_questions(result, self.rules):
            return Decision(frozenset(), f"upskill: run {run} not needed: {skill} × {model} was decided after {done}")
        if self.budget_left is not None and not self.budget_left():
            return Decision(frozenset(), f"upskill: run {run} not sent: --upskill-max-cost is spent")
        cases = set(result.cases)  # every case: choosing them by their outcomes would bias the verdict
        for trial in by_run.get(run, []):  # together, so that they are in flight at once
            if trial.case in cases and trial.arm in RERUN_ARMS:
                self.runner.submit(trial)
        return Decision(frozenset(cases), f"upskill: run {run} not needed: the controls run once")


def not_needed(item: pytest.Item, trial: Trial, why: str) -> None:
    """Skip a trial a look did not need, saying so on its report (the controller counts them)."""
    about = {"skill": trial.skill, "model": trial.model, "why": why}
    item.user_properties.append((NOT_NEEDED_PROPERTY, json.dumps(about, sort_keys=True)))
    pytest.skip(why)
