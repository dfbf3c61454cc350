"""What a run will cost before it runs (``--upskill-plan``), and a spending limit while it runs
(``--upskill-max-cost``).

Estimates: a request's input is its characters / 4 tokens, its output at most ``max_tokens``
(an upper bound); cost uses the model's prices per million tokens, so models without prices
count as free and a limit cannot stop them. While running, a request reserves its estimated cost
when it is sent and settles at the tokens the provider reported; once the spend (settled plus
reserved) passes the limit, no new request is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_upskill.models import ModelSpec, Prices
from pytest_upskill.results.aggregate import Result, cost
from pytest_upskill.results.report import BudgetReport
from pytest_upskill.types import Completion, ErrorKind, Request

OVER_BUDGET = ErrorKind.OVER_BUDGET  # the error kind of a trial not sent because of the limit


def estimated_input_tokens(request: Request) -> int:
    """Characters / 4 of everything sent: prompts, tool schemas and, in a workspace trial, the
    conversation so far (each turn resends it). ``--upskill-plan`` sees only the first turn."""
    chars = (
        len(request.system)
        + len(request.user)
        + sum(len(t.description) + len(t.parameters_json) for t in (*request.tools, *filter(None, [request.output])))
    )
    chars += sum(
        len(m.text) + sum(len(c.arguments_json) for c in m.tool_calls) + sum(len(r.content) for r in m.results)
        for m in request.history
    )
    return max(1, chars // 4)


def price(
    spec: ModelSpec, input_tokens: float, output_tokens: float, cache_read: int = 0, cache_write: int = 0
) -> float:
    return spec.prices.cost(input_tokens, output_tokens, cache_read, cache_write)


def has_prices(spec: ModelSpec) -> bool:
    return spec.prices.known


@dataclass
class ModelPlan:
    model: str
    trials: int = 0
    requests: int = 0  # trials whose response is not in the cache
    input_tokens: int = 0
    max_output_tokens: int = 0
    cost: float | None = None

    def add(self, spec: ModelSpec, request: Request, cached: bool) -> None:
        self.trials += 1
        if has_prices(spec) and self.cost is None:
            self.cost = 0.0  # priced, if nothing to send
        if cached:
            return
        self.requests += 1
        tokens_in = estimated_input_tokens(request)
        self.input_tokens += tokens_in
        self.max_output_tokens += request.max_tokens
        if has_prices(spec):
            self.cost = (self.cost or 0.0) + price(spec, tokens_in, request.max_tokens)


def plan_lines(plans: list[ModelPlan]) -> list[str]:
    lines = [
        f"{'model':<40} {'trials':>7} {'requests':>9} {'est. input tok':>15} {'max output tok':>15} {'est. cost':>10}"
    ]
    for p in plans:
        cost = f"${p.cost:.4f}" if p.cost is not None else "no price"
        lines.append(
            f"{p.model:<40} {p.trials:>7} {p.requests:>9} {p.input_tokens:>15,} {p.max_output_tokens:>15,} {cost:>10}"
        )
    total = sum(p.cost or 0 for p in plans)
    lines.append(
        f"nothing was sent; requests exclude trials already in the cache; at most ${total:.4f} for the priced models"
    )
    return lines


class Budget:
    """Spending limit in USD. Used only from the runner's event loop thread."""

    def __init__(self, limit: float):
        self.limit = limit
        self.settled = 0.0
        self.reserved = 0.0

    @property
    def spent(self) -> float:
        return self.settled + self.reserved

    def reserve(self, spec: ModelSpec, request: Request) -> float | None:
        """The reservation, or None when the limit is already passed: do not send."""
        if self.spent >= self.limit and has_prices(spec):
            return None
        amount = price(spec, estimated_input_tokens(request), request.max_tokens)
        self.reserved += amount
        return amount

    def settle(self, reservation: float, spec: ModelSpec, completion: Completion) -> None:
        self.reserved -= reservation
        self.settled += price(
            spec,
            completion.input_tokens,
            completion.output_tokens,
            completion.cache_read_tokens,
            completion.cache_write_tokens,
        )


def budget_summary(results: list[Result], prices: dict[str, Prices], limit: float) -> BudgetReport:
    """The report's budget section, from the trials themselves so that it adds up under xdist."""
    return BudgetReport(
        limit=limit,
        spent=sum(cost(r, prices.get(r.model, Prices())) or 0.0 for r in results),
        not_sent=sum(r.baseline.error_kinds[OVER_BUDGET] + r.with_skill.error_kinds[OVER_BUDGET] for r in results),
    )
