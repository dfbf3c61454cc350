"""pytest wiring only: the options, and which roles this process plays.

- every process: :class:`~pytest_upskill.plugin.session.UpskillRun` (settings, models, cache, runner) and
  collection (collect.py: skill_meta.json files become trial items);
- the controller (the only process without xdist): :class:`~pytest_upskill.plugin.controller.Controller`
  (ledger, aggregation, reports, exit status) and the terminal (terminal.py: header, plan, summary);
- an xdist worker: :class:`~pytest_upskill.plugin.worker.Worker` (starts its queued trials, hands back
  what its reports do not carry).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_upskill.engine.cache import MODES
from pytest_upskill.engine.prompt import INJECTIONS
from pytest_upskill.models import split_names
from pytest_upskill.plugin import hookspecs as hooks
from pytest_upskill.plugin.collect import TrialDetail, pytest_collect_file, pytest_ignore_collect  # noqa: F401  (hooks of this plugin)
from pytest_upskill.plugin.controller import Controller
from pytest_upskill.plugin.session import RUN, UpskillRun, resolve_models
from pytest_upskill.plugin.worker import Worker
from pytest_upskill.render.terminal import ExitLine, TerminalSummary
from pytest_upskill.results.gates import FAMILIES
from pytest_upskill.results.shards import read_shards, select_shard
from pytest_upskill.skills.discovery import AGENT_FOLDERS
from pytest_upskill.skills.skill_md import SPEC_MODES


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


SWITCH = ("auto", "off")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("upskill", "regression-test agent skills (pytest-upskill)")
    group.addoption(
        "--upskill-models",
        action="append",
        default=None,
        metavar="NAMES",
        help="comma-separated models to test (repeatable): built-in aliases (haiku, sonnet, opus, gpt-5.5, ...), "
        "[tool.upskill.models.NAME] aliases, or PROVIDER:MODEL[@BASE_URL]. Default: ini upskill_models.",
    )
    group.addoption(
        "--upskill-runs", type=int, default=None, metavar="N", help="trials per case, model and arm (default 1)"
    )
    group.addoption(
        "--upskill-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="requests in flight per model and process; halved on 429s, then recovers (default 8)",
    )
    group.addoption(
        "--upskill-timeout", type=float, default=None, metavar="S", help="seconds per request attempt (default 120)"
    )
    group.addoption(
        "--upskill-retries", type=int, default=None, metavar="N", help="retries of a failed request (default 4)"
    )
    group.addoption(
        "--upskill-max-errors",
        default=None,
        metavar="N|FRACTION",
        help="unscored trials (errors) the run tolerates: a count (5) or a fraction (0.05, 5%%); default 0",
    )
    group.addoption(
        "--upskill-check-timeout",
        type=float,
        default=None,
        metavar="S",
        help="time limit of each check and validator, and of a sandboxed run of model output (default 30)",
    )
    group.addoption("--upskill-report", default=None, metavar="PATH", help="write the JSON report here")
    group.addoption(
        "--upskill-html",
        default=None,
        metavar="PATH",
        help="write a self-contained HTML report here: rates with intervals, verdicts, both arms' answers per case",
    )
    group.addoption(
        "--upskill-history",
        default=None,
        metavar="DIR",
        help="add this run's report to a history folder (time, git commit, models, settings); "
        "see it with: pytest-upskill runs DIR",
    )
    parser.addini("upskill_history", "history folder, as --upskill-history (relative to the rootdir)", default="")

    def choice(key: str, choices: tuple[str, ...], text: str, ini_text: str, default: str) -> None:
        """``--upskill-KEY MODE`` (one of ``choices``) and the ini option ``upskill_KEY``."""
        option = f"--upskill-{key.replace('_', '-')}"
        group.addoption(option, dest=f"upskill_{key}", default=None, choices=choices, help=text)
        parser.addini(f"upskill_{key}", ini_text, default=default)

    choice(
        "spec",
        SPEC_MODES,
        "a SKILL.md that breaks the Agent Skills spec (a description over 1,024 characters, an unknown field): "
        "error (a collection error, default) or warn (tested anyway, the finding noted in the summary and reports)",
        "error or warn, as --upskill-spec",
        "error",
    )
    group.addoption(
        "--upskill-injection",
        default=None,
        choices=INJECTIONS,
        help="how the with-skill arm gets the skill: system (in the system prompt, default) or progressive "
        "(name and description only, plus a read_skill tool; activation is reported)",
    )
    group.addoption(
        "--upskill-max-turns",
        type=int,
        default=None,
        metavar="N",
        help="requests per workspace trial at most (default 10)",
    )
    group.addoption(
        "--upskill-judge-model", default=None, metavar="NAME", help="the model that grades llm_judge validators"
    )
    parser.addini("upskill_injection", "system or progressive", default="system")
    parser.addini("upskill_max_turns", "requests per workspace trial at most", default="10")
    parser.addini("upskill_judge_model", "the model that grades llm_judge validators", default="")
    parser.addini("upskill_models", "models to test when --upskill-models is not given", type="args", default=[])
    parser.addini("upskill_teacher", "the teacher model of 'pytest-upskill generate' and 'cases'", default="")
    parser.addini("upskill_runs", "trials per case, model and arm", default="1")
    parser.addini("upskill_concurrency", "requests in flight per model and process", default="8")
    parser.addini("upskill_timeout", "seconds per request attempt", default="120")
    parser.addini("upskill_retries", "retries of a failed request", default="4")
    parser.addini(
        "upskill_backoff",
        "seconds before the first retry; doubles each retry, with jitter (Retry-After wins)",
        default="0.5",
    )
    parser.addini("upskill_max_errors", "unscored trials the run tolerates: a count or a fraction", default="0")
    parser.addini(
        "upskill_check_timeout", "time limit of each check, validator or sandboxed run, seconds", default="30"
    )
    parser.addini("upskill_system_prompt", "scaffolding system prompt shared by both arms", default="")
    parser.addini(
        "upskill_progress",
        "seconds between progress lines during a run (trials done per model, time left); 0: none",
        default="30",
    )
    parser.addini(
        "upskill_skill_folders",
        "hidden folders where agents keep skills, collected although pytest skips hidden folders",
        type="linelist",
        default=list(AGENT_FOLDERS),
    )
    group.addoption(
        "--upskill-cache",
        default=None,
        choices=MODES,
        help="rw: read and write the response cache (default); off; replay: never call a model",
    )
    group.addoption(
        "--upskill-cache-dir",
        default=None,
        metavar="DIR",
        help="response cache folder (default: ROOTDIR/.upskill-cache)",
    )
    parser.addini("upskill_cache", "response cache mode: rw, off or replay", default="rw")
    choice(
        "prompt_cache",
        SWITCH,
        "auto: mark the system prompt cacheable at providers that sell a cached prefix (Anthropic; "
        "OpenAI caches by itself) (default); off: send no cache marks",
        "provider prompt caching: auto or off",
        "auto",
    )
    choice(
        "prefix_reuse",
        SWITCH,
        "auto: an in-process model evaluates each prompt prefix (scaffold and skill) once and restores it "
        "for every trial (default); off: every prompt from scratch",
        "in-process models: prefix reuse, auto or off",
        "auto",
    )
    parser.addini("upskill_cache_dir", "response cache folder, relative to the rootdir", default="")

    def number(key: str, text: str) -> None:
        """``--upskill-KEY X`` and the ini option ``upskill_KEY``: a number, checked where it is read."""
        option = f"--upskill-{key.replace('_', '-')}"
        group.addoption(option, dest=f"upskill_{key}", type=float, default=None, metavar="X", help=text)
        parser.addini(f"upskill_{key}", text.replace("%%", "%"), default="")

    for key, text in (
        ("min_lift", "lowest acceptable lift, e.g. 0.1; judged on its 95%% interval"),
        ("min_pass_rate", "lowest acceptable with-skill pass rate; judged on its 95%% interval"),
        (
            "max_token_increase",
            "highest acceptable relative token increase of the skill, e.g. 0.5, per trial of the paired cases; "
            "judged on its value (a point estimate, no interval)",
        ),
    ):
        number(key, f"gate: {text}")
    group.addoption(
        "--upskill-strict",
        action="store_true",
        default=False,
        help="gates: an INCONCLUSIVE verdict fails (the default; kept for the command lines that name it)",
    )
    group.addoption(
        "--upskill-lenient",
        action="store_true",
        default=False,
        help="gates: decide an INCONCLUSIVE verdict on the point estimate (passes a useless skill up to 40%% of "
        "the time at 10 cases: see the README's error rates)",
    )
    choice(
        "family",
        FAMILIES,
        "many gates: holm holds every PASS at a family-wise 2.5%% across the run's lift and pass-rate gates "
        "(default none: exit status 0 claims every gate at once)",
        "many gates: none or holm",
        "none",
    )
    group.addoption(
        "--upskill-compare",
        default=None,
        metavar="OLD.json",
        help="the pull request's check: compare the with-skill pass rate, case by case, with an earlier "
        "--upskill-report",
    )
    for key, text in (
        ("effect", "planning: the true margin above a threshold to size cases for, at 80%% power (default 0.2)"),
        (
            "max_regression",
            "--upskill-compare: fail when a drop of the with-skill pass rate of more than X is shown (default 0: "
            "any drop its 95%% interval shows)",
        ),
        (
            "min_improvement",
            "--upskill-compare: the pull request claims an improvement of at least X; fail unless its 95%% "
            "interval shows it",
        ),
    ):
        number(key, text)
    group.addoption(
        "--upskill-changed-since",
        default=None,
        metavar="REF",
        help="keep only skills whose folder changed since this git ref",
    )
    group.addoption(
        "--upskill-markdown", default=None, metavar="PATH", help="write a Markdown summary for a pull request"
    )
    group.addoption(
        "--upskill-plan",
        action="store_true",
        default=False,
        help="print trials, requests, tokens and cost per model; send nothing",
    )
    group.addoption(
        "--upskill-max-cost",
        dest="upskill_max_cost",
        type=float,
        default=None,
        metavar="USD",
        help="stop sending requests once the estimated spend passes this",
    )
    parser.addini("upskill_max_cost", "spending limit in USD", default="")
    group.addoption(
        "--upskill-shard",
        default=None,
        metavar="K/N",
        help="run only the K-th of N shares of the suite (a skill × model is never split); merge the shards' "
        "reports with pytest-upskill merge",
    )
    group.addoption(
        "--upskill-merge",
        action="append",
        default=[],
        metavar="REPORT",
        help="run nothing: merge these --upskill-report files of a suite's shards (repeat), then report, gate and "
        "exit as one run would",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """--upskill-plan sends nothing: plan in this process, where the items are, not in xdist workers."""
    if config.getoption("upskill_plan"):
        config.option.numprocesses, config.option.dist, config.option.tx = None, "no", []


@pytest.hookimpl(trylast=True)  # after -k, -m and --deselect
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--upskill-shard K/N: deselect the items of the other shards."""
    shard = config.stash[RUN].shard
    if shard is not None:
        keep, drop = select_shard(items, *shard)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n`` (xdist's ``load``) hands each worker its whole share at once (scheduler.py); another
    ``--dist`` the user chose is left to xdist."""
    if config.getoption("dist", None) != "load":
        return None
    from pytest_upskill.plugin.scheduler import UpskillScheduling

    return UpskillScheduling(config, log)


def pytest_configure(config: pytest.Config) -> None:
    names = split_names(config.getoption("upskill_models") or config.getini("upskill_models"))
    judge_name = config.getoption("upskill_judge_model") or config.getini("upskill_judge_model")
    check = not (config.getoption("collectonly") or config.getoption("upskill_plan"))  # neither sends a request
    shards = read_shards(config)
    if shards is not None:  # nothing is sent: the models are the shards', for their labels and prices
        names, judge_name, check = shards.models, None, False
    specs = resolve_models(config, names, check)
    judge = resolve_models(config, [judge_name], check)[0] if judge_name else None
    run = config.stash[RUN] = UpskillRun(config, specs, judge, shards)
    config.pluginmanager.register(TrialDetail(), "upskill-trial-detail")
    if run.is_worker:
        run.role = Worker(run)
        config.pluginmanager.register(run.role, "upskill-worker")
        return
    controller = run.role = Controller(run)
    config.pluginmanager.register(controller, "upskill-controller")
    config.pluginmanager.register(TerminalSummary(controller), "upskill-terminal")
    config.pluginmanager.register(ExitLine(controller), "upskill-exit-line")
