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

from pytest_upskill.models import split_names
from pytest_upskill.plugin import hookspecs as hooks
from pytest_upskill.plugin.collect import TrialDetail, pytest_collect_file, pytest_ignore_collect  # noqa: F401  (hooks of this plugin)
from pytest_upskill.plugin.controller import Controller
from pytest_upskill.plugin.session import RUN, UpskillRun, resolve_models
from pytest_upskill.plugin.worker import Worker
from pytest_upskill.render.terminal import ExitLine, TerminalSummary
from pytest_upskill.results.shards import read_shards, select_shard
from pytest_upskill.settings import Settings, add_options


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)  # every option and ini setting, from the table in settings.py


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """--upskill-plan sends nothing: plan in this process, where the items are, not in xdist workers."""
    if config.getoption("upskill_plan", False):
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
    settings = Settings.from_config(config)  # every setting, read and checked once
    names = split_names(list(settings.models))
    judge_name = settings.judge_model
    check = not (config.getoption("collectonly") or settings.plan)  # neither sends a request
    shards = read_shards(config, settings.merge)
    if shards is not None:  # nothing is sent: the models are the shards', for their labels and prices
        names, judge_name, check = shards.models, None, False
    specs = resolve_models(config, names, check)
    judge = resolve_models(config, [judge_name], check)[0] if judge_name else None
    run = config.stash[RUN] = UpskillRun(config, settings, specs, judge, shards)
    config.pluginmanager.register(TrialDetail(), "upskill-trial-detail")
    if run.is_worker:
        run.role = Worker(run)
        config.pluginmanager.register(run.role, "upskill-worker")
        return
    controller = run.role = Controller(run)
    config.pluginmanager.register(controller, "upskill-controller")
    config.pluginmanager.register(TerminalSummary(controller), "upskill-terminal")
    config.pluginmanager.register(ExitLine(controller), "upskill-exit-line")


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is not None:
        for at_ref in [run.against, *run.closing]:
            if at_ref is not None:
                at_ref.close()  # the skills written out of a git ref (--upskill-against, --upskill-changed-since)
