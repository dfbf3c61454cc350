"""The JSON report (``--upskill-report``) as one typed model: the controller builds it, the JSON
file is its dump, and every reader (``--upskill-compare``, ``--upskill-history`` and
``pytest-upskill runs``, the HTML report, the Markdown summary, the terminal) reads it back through
the same model. Every field but a result's skill and model has a default, so an older or partial
file still reads, and what is malformed is named (preflight.compared_report).

Fields that a section may leave out (``agent``, ``activation``, ``budget``, ...) are written only
where set: the file is ``model_dump(exclude_unset=True)``.

The schema is versioned (``schema_version``) and published as JSON Schema, generated from these
classes: ``python -m pytest_upskill.results.report > pytest_upskill/results/report.schema.json`` (a test
checks that the file is current). Version history:

1. the first report (the field was called ``version``);
2. each trial's answer, failing check messages and tool calls (``results[].cases[].trials``),
   the run (``run``: time, git commit and branch, models, settings), pass-rate intervals and
   cost per arm.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 2
ANSWER_CHARS = 4000  # an answer is kept up to this many characters (answer_chars says how long it was)


MAX_NUMBER = 10**15  # larger than any count or cost a run can reach; a report from another job may hold anything
MAX_REPORT_BYTES = 512 << 20  # of a report read back (a shard, a history file, --upskill-compare's)


def _check_numbers(value: Any, signed: bool) -> None:
    """Every number in a field's value (lists, tuples, dict values) finite and of a size a run can
    reach; an integer not below 0 unless ``signed``. A report from another job is untrusted input:
    ``10**400`` tokens, ``1e308`` intervals or ``-5000`` tokens are refused here, not met at the end
    of a paid run as an OverflowError or a negative cost."""
    if isinstance(value, bool) or value is None or isinstance(value, str | BaseModel):
        return
    if isinstance(value, int):
        if abs(value) > MAX_NUMBER or (value < 0 and not signed):
            raise ValueError(f"{value} is not a count a run can reach" if value >= 0 else "must not be negative")
    elif isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_NUMBER:
            raise ValueError("must be a finite number of a size a run can reach")
    elif isinstance(value, list | tuple):
        for item in value:
            _check_numbers(item, signed)
    elif isinstance(value, dict):
        for item in value.values():
            _check_numbers(item, signed)


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer report's additions are kept, not refused
    _signed: ClassVar[bool] = False  # whether its integers may be negative (a difference)

    @field_validator("*", mode="after")
    @classmethod
    def _numbers(cls, value: Any) -> Any:
        _check_numbers(value, cls._signed)
        return value


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


class PromptCache(_Model):
    """The part of an arm's input tokens the provider served from its prompt cache (or an
    in-process model restored from its kept prefix) and the part it wrote to it."""

    read_tokens: int = Field(default=0, ge=0)
    write_tokens: int = Field(default=0, ge=0)
    read_share: float | None = Field(default=None, description="read_tokens / input_tokens")


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
    prompt_cache: PromptCache | None = Field(
        default=None, description="of input_tokens (the whole prompts), the cached part; absent: none"
    )
    pass_rate: float | None = Field(default=None, description="the mean of the paired cases' pass rates")
    pass_rate_ci: tuple[float, float] | None = Field(
        default=None, description="95% continuity-corrected Wilson interval of pass_rate, over the paired cases"
    )
    cost: float | None = Field(default=None, description="USD spent on the arm's trials, from the alias's prices")
    paired: PairedCounts = PairedCounts()

    def tokens_per_trial(self) -> float | None:
        return (self.input_tokens + self.output_tokens) / self.total if self.total else None


class CaseWhy(_Model):
    case: str
    why: str


class Expectation(_Model):
    """One expectation of an evals.json case, as the judge graded it (skill-creator's fields)."""

    text: str
    passed: bool
    evidence: str = ""


class TrialReport(_Model):
    """One trial: what the model answered and why it passed or failed (masked like everything else)."""

    arm: str = Field(
        description="baseline, with_skill, previous (--upskill-against), a control: placebo, aa_control, "
        "positive_control (--upskill-controls), or a trigger case's: trigger, previous_trigger"
    )
    run: int = 0
    passed: bool | None = Field(default=None, description="None: not scored (an error, see error_kind)")
    error_kind: str | None = None
    answer: str = Field(default="", description=f"the model's (last) answer, its first {ANSWER_CHARS} characters")
    answer_chars: int = Field(default=0, description="the answer's whole length, in characters")
    message: str = Field(default="", description="the checks that failed, or the error")
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    hit_max_tokens: bool | None = None  # (whether it came from the cache is left out: that never changes a result)
    tool_calls: int | None = None
    judge_input_tokens: int | None = None
    judge_output_tokens: int | None = None
    turns: int | None = Field(default=None, description="workspace trials: requests made")
    calls: list[str] | None = Field(default=None, description="workspace trials: the tool calls, in order")
    written: list[str] | None = Field(default=None, description="workspace trials: the files the model wrote")
    skill_loaded: bool | None = None
    note: str | None = None
    against: str | None = Field(default=None, description="with_skill: changed, same, new or unreadable at REF")
    should_trigger: bool | None = Field(default=None, description="a trigger case: whether the skill should load")
    loaded: list[str] | None = Field(
        default=None, description="the listed skills the model called read_skill for, in order"
    )
    expectations: list[Expectation] | None = Field(
        default=None, description="evals.json: the judge's grade of each expectation (skill-creator's grading format)"
    )


class CaseRuns(_Model):
    """A case's runs per arm: passed, failed, or None (not scored), and each trial's detail."""

    case: str
    baseline: list[bool | None] = []
    with_skill: list[bool | None] = []
    previous: list[bool | None] | None = None
    placebo: list[bool | None] | None = None
    aa_control: list[bool | None] | None = None
    positive_control: list[bool | None] | None = None
    trigger: list[bool | None] | None = None
    previous_trigger: list[bool | None] | None = None
    should_trigger: bool | None = None
    trials: list[TrialReport] = []


class TokenDelta(_Model):
    _signed = True
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_relative: float | None = None
    output_tokens_relative: float | None = None


class Comparison(_Model):
    """With skill against another arm of the same run, on the cases both scored (paired)."""

    _signed = True
    cases: int = Field(ge=0)
    with_skill: float = Field(description="the with-skill pass rate on these cases")
    other: float = Field(description="the other arm's pass rate on these cases")
    difference: float = Field(description="with_skill - other")
    ci: tuple[float, float] = Field(description="the difference's interval (95%; 99% for the A/A control)")

    @field_validator("with_skill", "other", "difference")
    @classmethod
    def _rate(cls, value: float) -> float:
        if not -1 <= value <= 1:
            raise ValueError("must be a rate or a difference of rates, from -1 to 1")
        return value

    @field_validator("ci")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not value[0] <= value[1]:
            raise ValueError("must be [low, high], low first")
        return value

    @classmethod
    def of(cls, paired: Any, z: float) -> Comparison:
        lo, hi = paired.lift_ci(z)
        return cls(
            cases=paired.n,
            with_skill=float(paired.p_skill),
            other=float(paired.p_baseline),
            difference=float(paired.lift),
            ci=(lo, hi),
        )


class TriggerReport(_Model):
    """A skill's trigger cases among the catalog: how often the model loads it when it should
    (recall, over the should-trigger cases) and when it should not (false triggers, over the near
    misses), each the mean of the cases' rates with its 95% interval."""

    should_trigger: int = Field(ge=0, description="should-trigger cases scored")
    should_not_trigger: int = Field(ge=0, description="should-not-trigger cases (near misses) scored")
    recall: float | None = None
    recall_ci: tuple[float, float] | None = None
    false_trigger: float | None = None
    false_trigger_ci: tuple[float, float] | None = None
    routed_elsewhere: int = Field(default=0, ge=0, description="should-trigger trials that loaded another skill")
    recall_change: Comparison | None = Field(
        default=None, description="--upskill-against: recall now - with the catalog's descriptions at REF, paired"
    )
    near_miss_change: Comparison | None = Field(
        default=None, description="--upskill-against: right decisions on near misses now - at REF, paired"
    )


class ResultReport(_Model):
    """One skill × model."""

    skill: str
    model: str
    baseline: ArmReport = ArmReport()
    with_skill: ArmReport = ArmReport()
    previous: ArmReport | None = Field(default=None, description="--upskill-against: the skill as it was at REF")
    placebo: ArmReport | None = Field(default=None, description="--upskill-controls: a neutral text of its length")
    aa_control: ArmReport | None = Field(default=None, description="--upskill-controls: the skill again (A/A)")
    positive_control: ArmReport | None = Field(
        default=None, description="--upskill-controls, progressive: requests that name the skill; passed = loaded"
    )
    against: str | None = Field(default=None, description="--upskill-against: changed, same, new or unreadable")
    change: Comparison | None = Field(default=None, description="with skill - previous, paired")
    over_placebo: Comparison | None = Field(default=None, description="with skill - placebo, paired")
    aa_difference: Comparison | None = Field(default=None, description="with skill - A/A control, paired")
    trigger: ArmReport | None = Field(default=None, description="trigger cases: passed = the right decision")
    triggering: TriggerReport | None = Field(default=None, description="trigger cases: recall and false triggers")
    previous_trigger: ArmReport | None = Field(
        default=None, description="--upskill-against: trigger cases with the catalog's descriptions at REF"
    )
    paired_cases: int = 0
    unpaired_cases: list[CaseWhy] = []
    lift: float | None = None
    lift_ci: tuple[float, float] | None = None
    activation_rate: float | None = None
    token_delta: TokenDelta = TokenDelta()
    uninformative_cases: list[CaseWhy] = []
    thresholds: dict[str, float] | None = Field(
        default=None, description="the skill's own gate thresholds (skill_meta.json), where it has any"
    )
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
    p_value: float | None = None  # one-sided p of "at most the threshold" (lift and pass-rate gates)
    held_back: int = 0  # --upskill-family holm: PASS on its own, held back in a family of this many gates


class VerdictReport(_Model):
    skill: str
    model: str
    verdict: str = Field(description="PASS, FAIL, INCONCLUSIVE, or NOT EVALUATED (a gate set, every trial skipped)")
    fails: bool
    findings: list[FindingReport]
    why: str | None = Field(default=None, description="NOT EVALUATED: why nothing could be measured")


class SkippedReport(_Model):
    """A skill × model of which no trial ran: every one was skipped (no cases, no tool calling, ...)."""

    skill: str
    model: str
    trials: int = Field(ge=0, description="the trials (or cases) skipped")
    reasons: list[str] = []
    thresholds: dict[str, float] | None = None


class RegressionReport(_Model):
    skill: str
    model: str
    kind: str  # "change", "lift", "improvement", "flip", "tokens"
    case: str | None
    message: str
    fails: bool = True  # a flip is listed for the reviewer and never fails the run


class BudgetReport(_Model):
    limit: float
    spent: float
    not_sent: int


class ErrorLimitReport(_Model):
    unscored: int
    allowed: int
    exceeded: bool


class RunInfo(_Model):
    """When and on what the run ran, and the settings that make two runs comparable."""

    time: str = Field(description="when the run ended, ISO 8601 in UTC")
    commit: str | None = Field(default=None, description="the git commit of the project, when in a repository")
    branch: str | None = None
    models: list[str] = []
    model_versions: dict[str, str] = Field(
        default={}, description="each model as named -> the provider:model it resolved to (the version it ran)"
    )
    settings: dict[str, Any] = Field(default={}, description="runs per case, gates, cache mode, and the like")
    plugin_version: str = ""


class AgainstReport(_Model):
    """--upskill-against: what the previous arm was, and the skills it had that the working tree has not."""

    ref: str
    deleted: list[str] = Field(default=[], description="skill folders at REF with no SKILL.md now (rootdir-relative)")


class Report(_Model):
    """What a run measured, per skill × model, and what its gates decided."""

    schema_version: int = SCHEMA_VERSION
    run: RunInfo | None = None
    statistics: dict[str, Any] = {}
    trials: int = 0
    errors: int = 0
    cached: int = 0
    errors_by_model: dict[str, dict[str, int]] = {}
    results: list[ResultReport]
    skipped: list[SkippedReport] = Field(
        default=[], description="skill × model pairs of which every trial was skipped, with why"
    )
    missing: list[str] = []
    throttling: dict[str, dict[str, Any]] = {}
    cache_problems: list[str] = []
    budget: BudgetReport | None = None
    verdicts: list[VerdictReport] = []
    regressions: list[RegressionReport] = []
    against: AgainstReport | None = None
    error_limit: ErrorLimitReport | None = None

    @model_validator(mode="before")
    @classmethod
    def _first_version(cls, data: Any) -> Any:
        """A report of schema 1 called its version ``version``."""
        if isinstance(data, dict) and "schema_version" not in data and "version" in data:
            data = {k: v for k, v in data.items() if k != "version"}
            data["schema_version"] = 1
        return data

    def to_json_text(self) -> str:
        """The file: the sections that were set, in this order (pydantic's own serializer, several
        times faster than json.dumps on a report with every trial's answer)."""
        return self.model_dump_json(indent=2, exclude_unset=True) + "\n"


def first_problem(exc: ValidationError, top: str | None = "the top level") -> str:
    """The first thing pydantic found wrong, where it is: ``results[0].lift: Value error, ...``; a
    problem of the whole document is placed at ``top`` (None: the message alone)."""
    error = exc.errors()[0]
    at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".") or top
    return f"{at}: {error['msg']}" if at else str(error["msg"])


def read_report(path: Path) -> Report:
    """A report file written by another run (a shard, a history file, ``--upskill-compare``'s),
    read as untrusted input: at most MAX_REPORT_BYTES, parsed by pydantic's own JSON parser (whose
    nesting limit makes ``[[[[...`` a validation error, not a RecursionError), every field checked.
    OSError when it cannot be read; ValueError (pydantic's ValidationError) when it is not a report."""
    with open(path, "rb") as f:
        data = f.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise ValueError(f"larger than {MAX_REPORT_BYTES >> 20} MB: not a report this plugin writes")
    return Report.model_validate_json(data)


def json_schema() -> dict[str, Any]:
    """The report's JSON Schema, as published in report.schema.json."""
    schema = Report.model_json_schema(mode="serialization")
    schema["$id"] = f"urn:pytest-upskill:report:{SCHEMA_VERSION}"
    schema["title"] = "pytest-upskill report"
    return schema


if __name__ == "__main__":
    import json

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
