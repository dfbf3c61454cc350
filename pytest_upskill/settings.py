"""Every setting of the plugin, in one table: each row declares its command-line option and its ini
option (``pytest_addoption`` is generated from it), its check, and its line in ``docs/options.md``
(``python -m pytest_upskill.settings > docs/options.md``; a test keeps the file current).

:meth:`Settings.read` parses the table once into a frozen object: from pytest's config
(:meth:`Settings.from_config`), or from plain values without pytest (:meth:`Settings.from_values`,
what a command or :func:`pytest_upskill.measure` builds). A bad value is a usage error that names
the option and what it must be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pytest_upskill.errors import SettingError
from pytest_upskill.skills.discovery import AGENT_FOLDERS
from pytest_upskill.types import CacheMode, Family, Injection, SpecMode, Switch

Kind = Literal[
    "text", "names", "lines", "int", "runs", "number", "seconds", "choice", "switch", "flag", "path", "paths"
]


@dataclass(frozen=True)
class Setting:
    """One row of the table."""

    key: str  # upskill_KEY in the ini file, --upskill-KEY on the command line
    help: str  # the option's --help text and its line in docs/options.md
    kind: Kind = "text"
    default: str | tuple[str, ...] = ""  # as the ini file writes it ("" for none); a tuple for a list
    option: bool = True  # has a command-line option
    ini: bool = True  # has an ini option
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    least: tuple[Callable[[float], bool], str] | None = None  # a number's test, and what it must be in words
    minimum: int = 1  # a whole number's least value
    fold_case: bool = False  # a choice read without case or surrounding space
    doc_default: str | None = None  # the docs' default where it is not the ini's
    ini_help: str | None = None

    @property
    def name(self) -> str:
        return f"upskill_{self.key}"

    @property
    def flag(self) -> str:
        return f"--upskill-{self.key.replace('_', '-')}"


_SECONDS_ABOVE_0 = (lambda x: x > 0, "a number of seconds above 0")
_SECONDS = (lambda x: x >= 0, "a number of seconds, 0 or more")

SETTINGS: tuple[Setting, ...] = (
    # --------------------------------------------------------------------------------- what runs
    Setting(
        "models",
        "comma-separated models to test (repeatable): built-in aliases (haiku, sonnet, opus, gpt-5.5, ...), "
        "[tool.upskill.models.NAME] aliases, or PROVIDER:MODEL[@BASE_URL]. Default: ini upskill_models.",
        "names",
        metavar="NAMES",
        doc_default="none",
        ini_help="models to test when --upskill-models is not given",
    ),
    Setting(
        "runs",
        "trials per case, model and arm (default 1); auto: one, then more only where they can decide a verdict, "
        "up to --upskill-max-runs (each look read at a wider interval, so that stopping early keeps the error rates)",
        "runs",
        "1",
        metavar="N|auto",
    ),
    Setting("max_runs", "--upskill-runs auto: runs per case at most (default 4)", "int", "4", metavar="N"),
    Setting(
        "injection",
        "how the with-skill arm gets the skill: system (in the system prompt, default) or progressive "
        "(name and description only, plus a read_skill tool; activation is reported)",
        "choice",
        "system",
        choices=tuple(Injection),
        ini_help="system or progressive",
    ),
    Setting(
        "spec",
        "a SKILL.md that breaks the Agent Skills spec (a description over 1,024 characters, an unknown field): "
        "error (a collection error, default) or warn (tested anyway, the finding noted in the summary and reports)",
        "choice",
        "error",
        choices=tuple(SpecMode),
        ini_help="error or warn, as --upskill-spec",
    ),
    Setting("max_turns", "requests per workspace trial at most (default 10)", "int", "10", metavar="N"),
    Setting("judge_model", "the model that grades llm_judge validators", metavar="NAME"),
    Setting(
        "system_prompt",
        "scaffolding system prompt shared by both arms",
        option=False,
        doc_default="the plugin's own ([trials](trials.md))",
    ),
    Setting(
        "skill_folders",
        "hidden folders where agents keep skills, collected although pytest skips hidden folders",
        "lines",
        AGENT_FOLDERS,
        option=False,
        doc_default="the agents' folders (.claude/skills, ...)",
    ),
    Setting("changed_since", "keep only skills whose folder changed since this git ref", ini=False, metavar="REF"),
    Setting(
        "against",
        "the pull request's check as one experiment: run the skills as they were at this git ref (or in this "
        "folder) as a third arm, previous, on the same cases, and judge the paired change (--upskill-max-regression, "
        "--upskill-min-improvement)",
        ini=False,
        metavar="REF",
    ),
    Setting(
        "catalog",
        "trigger cases: the skills offered beside the one under test, by name and description, as agents offer "
        "them: every SKILL.md under this folder (default: every skill of the paths pytest collects)",
        "path",
        metavar="DIR",
    ),
    Setting(
        "controls",
        "validity controls: an A/A arm (the skill again, on a sample of cases), a placebo arm (a neutral text of "
        "the skill's length) and, under progressive disclosure, a positive control (a request that names the skill)",
        "flag",
        ini=False,
    ),
    Setting(
        "shard",
        "run only the K-th of N shares of the suite (a skill × model is never split); merge the shards' "
        "reports with pytest-upskill merge",
        ini=False,
        metavar="K/N",
    ),
    Setting(
        "merge",
        "run nothing: merge these --upskill-report files of a suite's shards (repeat), then report, gate and "
        "exit as one run would",
        "paths",
        ini=False,
        metavar="REPORT",
    ),
    Setting("plan", "print trials, requests, tokens and cost per model; send nothing", "flag", ini=False),
    # ------------------------------------------------------------------------------- requests
    Setting(
        "concurrency",
        "requests in flight per model and process; halved on 429s, then recovers (default 8)",
        "int",
        "8",
        metavar="N",
    ),
    Setting(
        "timeout", "seconds per request attempt (default 120)", "seconds", "120", metavar="S", least=_SECONDS_ABOVE_0
    ),
    Setting("retries", "retries of a failed request (default 4)", "int", "4", metavar="N", minimum=0),
    Setting(
        "backoff",
        "seconds before the first retry; doubles each retry, with jitter (Retry-After wins)",
        "seconds",
        "0.5",
        option=False,
        least=_SECONDS,
    ),
    Setting(
        "max_errors",
        "unscored trials (errors) the run tolerates: a count (5) or a fraction (0.05, 5%%); default 0",
        default="0",
        metavar="N|FRACTION",
        ini_help="unscored trials the run tolerates: a count or a fraction",
    ),
    Setting(
        "check_timeout",
        "time limit of each check and validator, and of a sandboxed run of model output (default 30)",
        "seconds",
        "30",
        metavar="S",
        least=_SECONDS_ABOVE_0,
    ),
    Setting(
        "max_cost",
        "stop sending requests once the estimated spend passes this",
        "number",
        metavar="USD",
        least=(lambda x: x >= 0, "an amount in USD, 0 or more"),
        ini_help="spending limit in USD",
    ),
    Setting(
        "cache",
        "rw: read and write the response cache (default); off; replay: never call a model",
        "choice",
        "rw",
        choices=tuple(CacheMode),
        ini_help="response cache mode: rw, off or replay",
    ),
    Setting(
        "cache_dir",
        "response cache folder (default: ROOTDIR/.upskill-cache)",
        "path",
        metavar="DIR",
        doc_default="`.upskill-cache`",
        ini_help="response cache folder, relative to the rootdir",
    ),
    Setting(
        "prompt_cache",
        "auto: mark the system prompt cacheable at providers that sell a cached prefix (Anthropic; "
        "OpenAI caches by itself) (default); off: send no cache marks",
        "switch",
        "auto",
        choices=tuple(Switch),
        ini_help="provider prompt caching: auto or off",
    ),
    Setting(
        "prefix_reuse",
        "auto: an in-process model evaluates each prompt prefix (scaffold and skill) once and restores it "
        "for every trial (default); off: every prompt from scratch",
        "switch",
        "auto",
        choices=tuple(Switch),
        ini_help="in-process models: prefix reuse, auto or off",
    ),
    Setting(
        "progress",
        "seconds between progress lines during a run (trials done per model, time left); 0: none",
        "seconds",
        "30",
        option=False,
        least=_SECONDS,
    ),
    # ---------------------------------------------------------------------------------- gates
    Setting(
        "min_lift",
        "gate: lowest acceptable lift, e.g. 0.1; judged on its 95%% interval",
        "number",
        metavar="X",
    ),
    Setting(
        "min_pass_rate",
        "gate: lowest acceptable with-skill pass rate; judged on its 95%% interval",
        "number",
        metavar="X",
    ),
    Setting(
        "max_token_increase",
        "gate: highest acceptable relative token increase of the skill, e.g. 0.5, per trial of the paired "
        "cases; judged on its value (a point estimate, no interval)",
        "number",
        metavar="X",
    ),
    Setting(
        "min_trigger_recall",
        "gate: lowest acceptable share of a skill's should-trigger cases in which the model loads it from the "
        "catalog, e.g. 0.8; judged on its 95%% interval",
        "number",
        metavar="X",
    ),
    Setting(
        "max_false_trigger",
        "gate: highest acceptable share of a skill's should-not-trigger cases (near misses) in which the model "
        "loads it, e.g. 0.2; judged on its 95%% interval",
        "number",
        metavar="X",
    ),
    Setting(
        "strict",
        "gates: an INCONCLUSIVE verdict fails (the default; kept for the command lines that name it)",
        "flag",
        ini=False,
        doc_default="on",
    ),
    Setting(
        "lenient",
        "gates: decide an INCONCLUSIVE verdict on the point estimate (passes a useless skill up to 40%% of "
        "the time at 10 cases: see docs/ci.md, error rates)",
        "flag",
        ini=False,
        doc_default="off",
    ),
    Setting(
        "family",
        "many gates: holm holds every PASS at a family-wise 2.5%% across the run's lift and pass-rate gates "
        "(default none: exit status 0 claims every gate at once)",
        "choice",
        "none",
        choices=tuple(Family),
        fold_case=True,
        ini_help="many gates: none or holm",
    ),
    Setting(
        "effect",
        "planning: the true margin above a threshold to size cases for, at 80%% power (default 0.2)",
        "number",
        metavar="X",
        least=(lambda x: 0 < x < 1, "a fraction above 0 and below 1 (0.2 for 20 points)"),
        doc_default="0.2",
    ),
    Setting(
        "compare",
        "the pull request's check: compare the with-skill pass rate, case by case, with an earlier --upskill-report",
        "path",
        ini=False,
        metavar="OLD.json",
    ),
    Setting(
        "max_regression",
        "the margin δ of a change of the with-skill pass rate: --upskill-against passes a changed skill only where "
        "its 95%% interval shows it no worse than -X (non-inferiority; default 0.1); --upskill-compare fails where "
        "a drop of more than X is shown (default 0)",
        "number",
        metavar="X",
        least=(lambda x: 0 <= x < 1, "a fraction from 0 up to 1 (0.05 for 5 points)"),
        doc_default="0.1 (against), 0 (compare)",
    ),
    Setting(
        "min_improvement",
        "--upskill-against and --upskill-compare: the pull request claims an improvement of at least X; fail "
        "unless its 95%% interval shows it",
        "number",
        metavar="X",
        least=(lambda x: -1 < x < 1, "a fraction between -1 and 1 (0.1 for 10 points)"),
    ),
    # ---------------------------------------------------------------------------------- outputs
    Setting("report", "write the JSON report here", "path", ini=False, metavar="PATH"),
    Setting(
        "html",
        "write a self-contained HTML report here: rates with intervals, verdicts, both arms' answers per case",
        "path",
        ini=False,
        metavar="PATH",
    ),
    Setting("markdown", "write a Markdown summary for a pull request", "path", ini=False, metavar="PATH"),
    Setting(
        "history",
        "add this run's report to a history folder (time, git commit, models, settings); "
        "see it with: pytest-upskill runs DIR",
        "path",
        metavar="DIR",
        ini_help="history folder, as --upskill-history (relative to the rootdir)",
    ),
    # ---------------------------------------------------------------------------------- the teacher
    Setting(
        "teacher",
        "the teacher model of 'pytest-upskill generate' and 'cases'",
        option=False,
        doc_default="sonnet",
    ),
)
BY_NAME = {s.name: s for s in SETTINGS}


def add_options(parser: Any) -> None:
    """Declare every setting with pytest (``parser`` is pytest's :class:`pytest.Parser`)."""
    group = parser.getgroup("upskill", "regression-test agent skills (pytest-upskill)")
    for s in SETTINGS:
        if s.option:
            extra: dict[str, Any] = {"dest": s.name, "help": s.help}
            if s.kind == "flag":
                extra.update(action="store_true", default=False)
            elif s.kind in ("names", "paths"):
                extra.update(action="append", default=[] if s.kind == "paths" else None, metavar=s.metavar)
            else:
                extra.update(default=None, metavar=s.metavar)
                if s.choices:
                    extra.update(choices=s.choices, metavar=None)
                elif s.kind == "int":
                    extra["type"] = int
                elif s.kind in ("number", "seconds"):
                    extra["type"] = float
            group.addoption(s.flag, **extra)
        if s.ini:
            text = s.ini_help or s.help.replace("%%", "%")
            if s.kind == "names":
                parser.addini(s.name, text, type="args", default=[])
            elif s.kind == "lines":
                parser.addini(s.name, text, type="linelist", default=list(s.default))
            else:
                parser.addini(s.name, text, default=s.default)


def options_table() -> str:
    """docs/options.md: every setting, its option, its ini name, its default and what it does."""
    lines = [
        "# Options",
        "",
        "Every setting of the plugin: a command-line option, an ini option (in `[tool.pytest.ini_options]` of",
        "`pyproject.toml`, or `pytest.ini`), or both; the command line wins. Generated from the table in",
        "`pytest_upskill/settings.py` (`python -m pytest_upskill.settings > docs/options.md`). Back to the",
        "[README](../README.md).",
        "",
        "| option | ini | default | |",
        "|---|---|---|---|",
    ]
    for s in SETTINGS:
        shown = "\\|".join(s.choices) if s.choices else s.metavar  # a | inside a Markdown table is \|
        option = f"`{s.flag}{' ' + shown if shown else ''}`" if s.option else ""
        ini = f"`{s.name}`" if s.ini else ""
        default = s.doc_default if s.doc_default is not None else s.default
        text = s.help.replace("%%", "%").replace("|", "\\|")
        lines.append(f"| {option} | {ini} | {default} | {text} |")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------- parsed once


def _number(s: Setting, raw: Any) -> float | None:
    if raw in (None, ""):
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        number = math.nan
    test, words = s.least or (lambda x: True, "a finite number (a fraction: 0.2 for 20%)")
    if not math.isfinite(number) or not test(number):
        raise SettingError(f"{s.flag} / {s.name} must be {words}, not {raw!r}")
    return number


def _parse(s: Setting, raw: Any) -> Any:
    if s.kind in ("number", "seconds"):
        number = _number(s, raw)
        if number is None and s.kind == "seconds":
            words = s.least[1] if s.least else "a number"
            raise SettingError(f"{s.flag} / {s.name} must be {words}, not empty")
        return number
    if s.kind == "runs" and str(raw).strip().lower() == "auto":
        return "auto"
    if s.kind in ("int", "runs"):
        try:
            number = int(raw)
        except (TypeError, ValueError):
            whole = "a whole number" + (" or auto" if s.kind == "runs" else "")
            raise SettingError(f"{s.name} must be {whole}, not {raw!r}") from None
        if number < s.minimum:
            raise SettingError(f"{s.name} must be at least {s.minimum}, not {number}")
        return number
    if s.kind == "switch":
        value = str(raw).strip().lower()
        if value not in s.choices:
            raise SettingError(f"{s.flag} / {s.name} must be auto or off, not {value!r}")
        return value
    if s.kind == "choice":
        value = str(raw).strip().lower() if s.fold_case else raw
        if value not in s.choices:
            raise SettingError(f"{s.name} must be one of {', '.join(s.choices)}, not {value!r}")
        return value
    if s.kind == "flag":
        return bool(raw)
    if s.kind in ("names", "lines", "paths"):
        return tuple(raw or ())
    return raw or None  # text and path: None when not given


@dataclass(frozen=True)
class Settings:
    """Every setting, parsed and checked once. Paths are as given (relative to where pytest was
    started, or to the rootdir for an ini value: the run resolves them)."""

    models: tuple[str, ...]
    runs: int  # under auto: --upskill-max-runs, the runs collected (the looks skip those not needed)
    auto_runs: bool
    max_runs: int
    injection: Injection
    spec: SpecMode
    max_turns: int
    judge_model: str | None
    system_prompt: str | None
    skill_folders: tuple[str, ...]
    changed_since: str | None
    against: str | None
    catalog: str | None
    controls: bool
    shard: str | None
    merge: tuple[str, ...]
    plan: bool
    concurrency: int
    timeout: float
    retries: int
    backoff: float
    max_errors: str
    check_timeout: float
    max_cost: float | None
    cache: CacheMode
    cache_dir: str | None
    prompt_cache: Switch
    prefix_reuse: Switch
    progress: float
    min_lift: float | None
    min_pass_rate: float | None
    max_token_increase: float | None
    min_trigger_recall: float | None
    max_false_trigger: float | None
    strict: bool
    lenient: bool
    family: Family
    effect: float | None
    compare: str | None
    max_regression: float | None
    min_improvement: float | None
    report: str | None
    html: str | None
    markdown: str | None
    history: str | None
    history_from_ini: bool
    teacher: str | None

    @classmethod
    def read(cls, option: Callable[[str], Any], ini: Callable[[str], Any]) -> Settings:
        """Each setting from ``option(name)`` (None: not given) else ``ini(name)``, parsed and checked;
        :class:`SettingError` names the first bad one."""
        values: dict[str, Any] = {}
        for s in SETTINGS:
            given = option(s.name) if s.option else None
            if given in (None, [], ()) and s.ini:
                given = ini(s.name)
            values[s.key] = _parse(s, given)
        if values["strict"] and values["lenient"]:
            raise SettingError("--upskill-strict and --upskill-lenient contradict each other: give one")
        values["injection"] = Injection(values["injection"])
        values["spec"] = SpecMode(values["spec"])
        values["cache"] = CacheMode(values["cache"])
        values["family"] = Family(values["family"])
        values["prompt_cache"] = Switch(values["prompt_cache"])
        values["prefix_reuse"] = Switch(values["prefix_reuse"])
        values["auto_runs"] = values["runs"] == "auto"
        if values["auto_runs"]:
            values["runs"] = values["max_runs"]
        values["history_from_ini"] = bool(values["history"]) and not (option("upskill_history") or None)
        return cls(**values)

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        """From pytest's config: a bad value is pytest's usage error."""
        import pytest

        try:
            return cls.read(lambda name: config.getoption(name, None), config.getini)
        except SettingError as exc:
            raise pytest.UsageError(str(exc)) from None

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None = None) -> Settings:
        """Without pytest: ``values`` by ini name (``{"upskill_runs": 3}``), the rest their defaults."""
        given = dict(values or {})
        unknown = set(given) - set(BY_NAME)
        if unknown:
            raise SettingError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(BY_NAME)}")

        def default(name: str) -> Any:
            s = BY_NAME[name]
            if isinstance(s.default, tuple):
                return list(s.default)
            return [] if s.kind in ("names", "paths") else s.default

        return cls.read(lambda name: given.get(name), default)


if __name__ == "__main__":
    print(options_table(), end="")
