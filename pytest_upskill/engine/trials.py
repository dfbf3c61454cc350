"""From a loaded skill and its cases to trials: one per case × model × arm × run, or a skip that
says why a case cannot run here (its validator needs what this machine lacks, the model cannot
call tools). Nothing here knows about pytest: the plugin turns each into an item.

A trial is one of two variants: a :class:`PlainTrial` (one completion, scored by the case's
checks) or a :class:`WorkspaceTrial` (a conversation with tools, then its checks and validator).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pytest_upskill.engine.agent import AgentPlan, SkillFiles, is_workspace_case, plan_for, trigger_plan
from pytest_upskill.engine.arms import ARMS, Offers, control_sample, names_skill, placebo
from pytest_upskill.engine.catalogs import Catalogs, Offering
from pytest_upskill.engine.nodeids import item_name
from pytest_upskill.engine.prompt import build_request, catalog_request
from pytest_upskill.models import ModelSpec
from pytest_upskill.scoring.checks import CheckRegistry, CheckResult
from pytest_upskill.scoring.scorer import Validation
from pytest_upskill.scoring.validators import ValidatorRegistry
from pytest_upskill.skills.previous import Previous, Status
from pytest_upskill.skills.skill_md import Case, Skill
from pytest_upskill.types import Arm, Injection, Request


@dataclass(frozen=True)
class Graded:
    """A case's expectations, what success looks like, the task, and the judge that grades them."""

    judge: ModelSpec
    task: str
    expectations: tuple[str, ...]
    expected_output: str | None = None


@dataclass(frozen=True, kw_only=True)
class _Trial:
    """What every trial has: who and what it is (the key), the request, and the case's checks."""

    skill: str
    case: str
    model: str  # the model name as the user gave it
    arm: str
    run: int
    spec: ModelSpec
    request: Request
    checks: dict[str, Any] = field(
        default_factory=dict, compare=False, repr=False
    )  # built-in checks, prepared: run in a check worker
    score: Callable[[str], CheckResult] | None = field(default=None, compare=False, repr=False)  # a conftest's checks
    note: str | None = field(default=None, compare=False, repr=False)  # how it runs where that differs from the case
    # with_skill: the skill's status at --upskill-against (changed, same, new)
    against: str | None = field(default=None, compare=False, repr=False)
    cache_salt: str | None = field(default=None, compare=False, repr=False)  # ArmDef.cache_salt
    # the positive control: passes when the model loads the skill
    names_skill: bool = field(default=False, compare=False, repr=False)
    # a trigger case: passes when the model loads the skill from the catalog exactly when it should
    should_trigger: bool | None = field(default=None, compare=False, repr=False)
    # a case with expectations (evals.json): each graded by the judge against the answer
    graded: Graded | None = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return self.skill, self.case, self.model, self.arm, self.run


@dataclass(frozen=True, kw_only=True)
class PlainTrial(_Trial):
    """One completion, scored by the case's checks."""

    def first_request(self) -> Request:
        return self.request


@dataclass(frozen=True, kw_only=True)
class WorkspaceTrial(_Trial):
    """The tool loop (agent.py), in a fresh workspace where the case has files to work on; then the
    checks, and the validator where the case has one."""

    agent: AgentPlan = field(compare=False, repr=False)
    validation: Validation | None = field(default=None, compare=False, repr=False)

    def first_request(self) -> Request:
        """The first turn offers the tools: when it is cached, so is the conversation."""
        return self.agent.first_request(self.request)


Trial = PlainTrial | WorkspaceTrial


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a run shares."""

    specs: list[ModelSpec]
    labels: dict[str, str]  # model name -> its node-id label
    runs: int
    scaffold: str
    injection: str
    max_turns: int
    judge: ModelSpec | None
    why_no_tools: Callable[[ModelSpec], str | None]  # why a model cannot call tools, or None
    # how a model calls tools where that is not native tool calling ("tools: constrained ..."), or None
    tool_protocol: Callable[[ModelSpec], str | None] = lambda spec: None
    spec: str = "error"  # --upskill-spec: a SKILL.md that breaks the spec is an error, or tested with a note
    arms: tuple[Arm, ...] = (Arm.BASELINE, Arm.WITH_SKILL)  # the arms this run has (engine/arms.py)
    auto_runs: bool = False  # --upskill-runs auto: ``runs`` is the most; a model at temperature 0 gets one
    against: Callable[[Skill], Previous] | None = None  # --upskill-against: the skill as it was
    catalogs: Catalogs | None = None  # what trigger cases are offered (engine/catalogs.py)


NO_CASES_ITEM = "no-cases"  # the item of a skill whose case list is empty


def is_no_cases(nodeid: str) -> bool:
    """Whether ``nodeid`` is the item of a skill with no case (collect.SkippedCase named NO_CASES_ITEM)."""
    return nodeid.endswith(f"::{NO_CASES_ITEM}")


class Planned(NamedTuple):
    name: str  # the item's name: CASE[LABEL]
    line: int | None  # the case's line in skill_meta.json
    trial: Trial | None
    skip: str | None = None  # the reason, for a case (or a model's share of it) that runs nothing
    model: str | None = None  # a skipped one's model


def skill_trials(
    skill: Skill, cases: list[Case], context: TrialContext, checks: CheckRegistry, validators: ValidatorRegistry
) -> Iterator[Planned]:
    tasks = [c for c in cases if not c.is_trigger]
    if tasks:
        previous = context.against(skill) if context.against is not None else None
        arms = offered_by_arm(skill, context, previous)
        sample = control_sample([c.key for c in tasks])
        against = previous.status if previous is not None else None
        for case in tasks:
            yield from _case_trials(skill, case, context, checks, validators, arms, case.key in sample, against)
    triggers = [c for c in cases if c.is_trigger]
    if triggers:
        yield from _trigger_trials(skill, triggers, context)


def trigger_offerings(skill: Skill, context: TrialContext) -> dict[Arm, Offering]:
    """The catalogs a trigger case of ``skill`` runs among, by arm: now, and at REF where a
    description of it differs (--upskill-against)."""
    assert context.catalogs is not None
    found = {Arm.TRIGGER: context.catalogs.now(skill)}
    if Arm.PREVIOUS_TRIGGER in context.arms:
        then = context.catalogs.then(skill)
        if then is not None:
            found[Arm.PREVIOUS_TRIGGER] = then
    return found


def _trigger_trials(skill: Skill, cases: list[Case], context: TrialContext) -> Iterator[Planned]:
    """Each trigger case among the catalog: does the model load ``skill`` (should_trigger), another
    (routed elsewhere), or none? Only read_skill is offered; no skill is injected."""
    offerings = trigger_offerings(skill, context)
    for case in cases:
        for spec in context.specs:
            label = context.labels[spec.name]
            runs = 1 if context.auto_runs and spec.repeats_answers else context.runs
            no_tools = context.why_no_tools(spec)
            for arm, offering in offerings.items():
                if no_tools:
                    why = f"{no_tools} (a trigger case offers the catalog through the read_skill tool)"
                    yield Planned(item_name(case.key, label, arm), case.line, None, why, spec.name)
                    continue
                request = catalog_request(spec, offering.skills, case, context.scaffold)
                agent = trigger_plan(offering.files, case.max_turns or context.max_turns)
                note = context.tool_protocol(spec)
                for run in range(1, runs + 1):
                    trial = WorkspaceTrial(
                        skill=skill.name,
                        case=case.key,
                        model=spec.name,
                        arm=arm,
                        run=run,
                        spec=spec,
                        request=request,
                        agent=agent,
                        should_trigger=case.should_trigger,
                        note=note,
                    )
                    yield Planned(item_name(case.key, label, arm, run if context.runs > 1 else None), case.line, trial)


class Offered(NamedTuple):
    """What one arm offers in the skill's place: the skill (None: none) and what read_skill serves."""

    skill: Skill | None
    files: SkillFiles | None  # progressive disclosure only


def offered_by_arm(skill: Skill, context: TrialContext, previous: Previous | None = None) -> dict[Arm, Offered]:
    """Each arm of the run that has trials for ``skill``, and what it offers. The previous arm runs
    only where the skill changed since --upskill-against (``previous``); the positive control only
    under progressive disclosure (it measures loading)."""
    progressive = context.injection == Injection.PROGRESSIVE
    found: dict[Arm, Offered] = {}
    served: dict[int, SkillFiles] = {}  # read_skill's files, read once per skill offered (arms share one)
    for arm in context.arms:
        d = ARMS[arm]
        if (d.names_skill and not progressive) or d.trigger:
            continue
        offered: Skill | None
        match d.offers:
            case Offers.NOTHING:
                offered = None
            case Offers.SKILL:
                offered = skill
            case Offers.PREVIOUS:
                if previous is None or previous.status != Status.CHANGED:
                    continue
                offered = previous.skill
            case Offers.PLACEBO:
                offered = placebo(skill)
        files = None
        if progressive and offered is not None:
            if id(offered) not in served:
                served[id(offered)] = (
                    SkillFiles(offered.name, offered.body) if d.offers == Offers.PLACEBO else SkillFiles.load(offered)
                )
            files = served[id(offered)]
        found[arm] = Offered(offered, files)
    return found


def _case_trials(
    skill: Skill,
    case: Case,
    context: TrialContext,
    checks: CheckRegistry,
    validators: ValidatorRegistry,
    arms: dict[Arm, Offered],
    sampled: bool,
    against: str | None,
) -> Iterator[Planned]:
    validator = validators.get(case.validator) if case.validator else None
    unavailable = validator.unavailable() if validator else None
    workspace = is_workspace_case(case)
    progressive = context.injection == Injection.PROGRESSIVE
    agentic = workspace or progressive
    # upskill runs a case whose only extra is context.files as a plain completion, the files in the prompt
    files_only = workspace and not case.validator and not case.output_file and not progressive
    validation = (
        Validation(validator, case.prepared_validator, case.output_file, case.input, bool(case.expected), context.judge)
        if workspace
        else None
    )
    builtin, custom = checks.split(case.expected)
    score = functools.partial(checks.score, custom) if custom else None
    graded = None
    if case.expectations and context.judge is not None:
        graded = Graded(context.judge, case.input, tuple(case.expectations), case.expected_output)
    elif case.expectations:
        unavailable = unavailable or (
            "its expectations are graded by a judge model, and none is set: name one with --upskill-judge-model "
            "(until then this case is not evaluated)"
        )
    # the same for every model
    plans = {arm: plan_for(case, context.max_turns, offered.files) for arm, offered in arms.items()}
    for spec in context.specs:
        label = context.labels[spec.name]
        runs = 1 if context.auto_runs and spec.repeats_answers else context.runs
        no_tools = context.why_no_tools(spec) if agentic else None
        skip, note = unavailable, None
        protocol = context.tool_protocol(spec) if agentic else None
        if no_tools and files_only:
            note = f"context.files given in the prompt, as upskill runs such a case, not in a workspace ({no_tools})"
        elif no_tools:
            skip = no_tools
        for arm, offered in arms.items():
            d = ARMS[arm]
            if d.sampled and not sampled:
                continue
            arm_skip = skip
            if skip and skip == no_tools and not workspace:  # only progressive disclosure needs the tools here
                arm_skip = (
                    None
                    if offered.skill is None  # no skill, no read_skill: a plain completion, as in every mode
                    else f"{spec.name}: --upskill-injection progressive offers the skill through the read_skill tool, "
                    "and this model has no native tool calling; test it with --upskill-injection system"
                )
            if arm_skip:  # named as the trials it stands for, so that -k selects it with them
                yield Planned(item_name(case.key, label, arm), case.line, None, arm_skip, spec.name)
                continue
            request = build_request(
                spec,
                offered.skill,
                case,
                context.scaffold,
                context.injection,
                user=functools.partial(names_skill, skill) if d.names_skill else None,
            )  # the same for every run
            agent = None if note else plans[arm]
            trial_note = note or (protocol if agent is not None else None)
            if skill.spec_findings and offered.skill is skill:
                broken = "SKILL.md breaks the Agent Skills spec, tested anyway (--upskill-spec warn): " + "; ".join(
                    skill.spec_findings
                )
                trial_note = f"{trial_note}; {broken}" if trial_note else broken
            for run in range(1, runs + 1):
                common: dict[str, Any] = {
                    "skill": skill.name,
                    "case": case.key,
                    "model": spec.name,
                    "arm": arm,
                    "run": run,
                    "spec": spec,
                    "request": request,
                    "checks": builtin,
                    "score": score,
                    "note": trial_note,
                    "against": against if arm == Arm.WITH_SKILL else None,
                    "cache_salt": d.cache_salt,
                    "names_skill": d.names_skill,
                    "graded": graded,
                }
                trial: Trial = (
                    PlainTrial(**common)
                    if agent is None
                    else WorkspaceTrial(**common, agent=agent, validation=validation)
                )
                yield Planned(item_name(case.key, label, arm, run if context.runs > 1 else None), case.line, trial)
