"""The JSON report (``--upskill-report``) as one typed model: the controller builds it, the JSON
file is its dump, and the readers (``--upskill-compare``, the Markdown summary, the terminal's
reliability lines) read its attributes instead of string keys. Reading an earlier report goes
through the same model: every field has a default, so an older or partial file still compares,
and what is malformed is named (preflight.compared_report).

Fields that a section may leave out (``agent``, ``activation``, ``budget``, ...) are written only
where set: the file is ``model_dump(exclude_unset=True)``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

REPORT_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer report's additions are kept, not refused


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class AgentStats(_Model):
    trials: int
    turns: int
    tool_calls: int
    mean_turns: float
    mean_tool_calls: float


class Activation(_Model):
    loaded: int
    offered: int
    rate: float | None


class Tokens(_Model):
    input_tokens: int
    output_tokens: int


class PairedCounts(_Model):
    passed: int = 0
    scored: int = 0


class ArmReport(_Model):
    """One arm's trials (all of them) and its pass rate over the cases scored in both arms."""

    passed: int = Field(default=0, ge=0)
    failed: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    total: int = Field(default=0, ge=0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    hit_max_tokens: int = 0
    error_kinds: dict[str, int] = {}
    agent: AgentStats | None = None
    activation: Activation | None = None
    judge_tokens: Tokens | None = None
    pass_rate: float | None = None
    paired: PairedCounts = PairedCounts()

    def tokens_per_trial(self) -> float | None:
        return (self.input_tokens + self.output_tokens) / self.total if self.total else None


class CaseWhy(_Model):
    case: str
    why: str


class CaseRuns(_Model):
    """A case's runs per arm: passed, failed, or None (not scored)."""

    case: str
    baseline: list[bool | None] = []
    with_skill: list[bool | None] = []


class TokenDelta(_Model):
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_relative: float | None = None
    output_tokens_relative: float | None = None


class ResultReport(_Model):
    """One skill × model."""

    skill: str
    model: str
    baseline: ArmReport = ArmReport()
    with_skill: ArmReport = ArmReport()
    paired_cases: int = 0
    unpaired_cases: list[CaseWhy] = []
    lift: float | None = None
    lift_ci: tuple[float, float] | None = None
    activation_rate: float | None = None
    token_delta: TokenDelta = TokenDelta()
    uninformative_cases: list[CaseWhy] = []
    cases: list[CaseRuns] = []

    _lift = field_validator("lift")(_finite)

    @field_validator("lift_ci")
    @classmethod
    def _interval(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not (all(math.isfinite(v) for v in value) and value[0] <= value[1]):
            raise ValueError("must be [low, high]: two finite numbers, low first")
        return value


class FindingReport(_Model):
    figure: str
    verdict: str
    value: float | None
    interval: list[float] | None
    threshold: float
    fails: bool
    cases: int
    cases_needed: int | None
    decided_on: str


class VerdictReport(_Model):
    skill: str
    model: str
    verdict: str
    fails: bool
    findings: list[FindingReport]


class RegressionReport(_Model):
    skill: str
    model: str
    kind: str  # "lift", "flip", "tokens"
    case: str | None
    message: str


class BudgetReport(_Model):
    limit: float
    spent: float
    not_sent: int


class ErrorLimitReport(_Model):
    unscored: int
    allowed: int
    exceeded: bool


class Report(_Model):
    version: int = REPORT_VERSION
    statistics: dict[str, Any] = {}
    trials: int = 0
    errors: int = 0
    cached: int = 0
    errors_by_model: dict[str, dict[str, int]] = {}
    results: list[ResultReport]
    missing: list[str] = []
    throttling: dict[str, dict[str, Any]] = {}
    cache_problems: list[str] = []
    budget: BudgetReport | None = None
    verdicts: list[VerdictReport] = []
    regressions: list[RegressionReport] = []
    error_limit: ErrorLimitReport | None = None

    def to_json(self) -> dict[str, Any]:
        """The file's content: the sections that were set, in this order."""
        return self.model_dump(mode="json", exclude_unset=True)
