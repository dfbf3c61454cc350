"""One home for settings: a table declares every option and ini setting, pytest's options and the
docs' table are generated from it, and it is parsed once into a frozen object that needs no pytest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_upskill import settings as settings_module
from pytest_upskill.settings import SETTINGS, SettingError, Settings, add_options, options_table
from pytest_upskill.types import CacheMode, Family, Injection, Switch

DOCS = Path(__file__).parents[2] / "docs" / "options.md"


class RecordingParser:
    """Stands in for pytest.Parser: records what add_options declares."""

    def __init__(self) -> None:
        self.options: dict[str, dict] = {}
        self.inis: dict[str, dict] = {}

    def getgroup(self, name: str, description: str = "") -> RecordingParser:
        return self

    def addoption(self, flag: str, **kwargs) -> None:
        self.options[flag] = kwargs

    def addini(self, name: str, help: str, **kwargs) -> None:
        self.inis[name] = kwargs


def test_every_option_and_ini_setting_comes_from_the_table():
    parser = RecordingParser()
    add_options(parser)
    assert set(parser.options) == {s.flag for s in SETTINGS if s.option}
    assert set(parser.inis) == {s.name for s in SETTINGS if s.ini}
    assert all(parser.options[s.flag]["dest"] == s.name for s in SETTINGS if s.option)
    assert parser.options["--upskill-cache"]["choices"] == tuple(CacheMode)
    derived = {"history_from_ini", "auto_runs"}  # read from the table's settings, not rows of their own
    assert {f.name for f in dataclasses.fields(Settings)} == {s.key for s in SETTINGS} | derived


def test_the_docs_options_table_is_generated_from_the_table():
    """Regenerate with: python -m pytest_upskill.settings > docs/options.md"""
    assert DOCS.read_text(encoding="utf-8") == options_table()
    assert all(f"`{s.name}`" in options_table() for s in SETTINGS if s.ini)


def test_settings_are_parsed_once_into_a_frozen_object_without_pytest():
    found = Settings.from_values({"upskill_runs": "3", "upskill_cache": "replay", "upskill_min_lift": "0.1"})
    assert (found.runs, found.cache, found.min_lift, found.timeout) == (3, CacheMode.REPLAY, 0.1, 120.0)
    assert (found.injection, found.family, found.prompt_cache) == (Injection.SYSTEM, Family.NONE, Switch.AUTO)
    assert found.skill_folders and found.models == () and found.max_cost is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.runs = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"upskill_runs": "0"}, "upskill_runs must be at least 1, not 0"),
        ({"upskill_runs": "many"}, "upskill_runs must be a whole number or auto, not 'many'"),
        (
            {"upskill_timeout": "-1"},
            "--upskill-timeout / upskill_timeout must be a number of seconds above 0, not '-1'",
        ),
        ({"upskill_min_lift": "nan"}, "--upskill-min-lift / upskill_min_lift must be a finite number"),
        ({"upskill_cache": "sometimes"}, "upskill_cache must be one of rw, off, replay, not 'sometimes'"),
        ({"upskill_family": "bonferroni"}, "upskill_family must be one of none, holm, not 'bonferroni'"),
        ({"upskill_prefix_reuse": "on"}, "--upskill-prefix-reuse / upskill_prefix_reuse must be auto or off, not 'on'"),
        ({"upskill_strict": True, "upskill_lenient": True}, "--upskill-strict and --upskill-lenient contradict"),
        ({"upskill_colour": "red"}, "unknown setting(s) ['upskill_colour']"),
    ],
)
def test_a_bad_value_names_the_setting_and_what_it_must_be(values, message):
    with pytest.raises(SettingError) as caught:
        Settings.from_values(values)
    assert message in str(caught.value)


def test_the_plugins_addoption_is_the_table():
    import inspect

    from pytest_upskill import plugin

    assert len(inspect.getsource(plugin.pytest_addoption).splitlines()) <= 3
    assert settings_module.BY_NAME["upskill_min_lift"].flag == "--upskill-min-lift"
