"""The package's layering (issue 15, part 3): no import cycles, a leaf module of shared types that
imports nothing of the package, providers that know nothing of SKILL.md, one exception root."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest_upskill
from pytest_upskill import models as config
from pytest_upskill import types as core
from pytest_upskill.engine.providers import base
from pytest_upskill.plugin import preflight
from pytest_upskill.scoring import sandbox, validators
from pytest_upskill.skills import skill_md as skill

PACKAGE = Path(pytest_upskill.__file__).parent


def _imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at any level (function-level imports too)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(("pytest_upskill", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base_parts = parts[: len(parts) - node.level + 1] if node.level else []
                target = ".".join(base_parts + ([node.module] if node.module else []))
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_package_has_no_import_cycle():
    graph = _imports()
    assert len(graph) > 20 and graph["pytest_upskill.plugin"]  # the walk found the package and its imports
    list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError naming the cycle


def test_shared_types_are_a_leaf_and_providers_know_nothing_of_skills():
    graph = _imports()
    assert graph["pytest_upskill.types"] == set()
    for provider in (
        "pytest_upskill.engine.providers.base",
        "pytest_upskill.engine.providers.openai",
        "pytest_upskill.engine.providers.anthropic",
        "pytest_upskill.engine.providers.local",
    ):
        assert not _reachable(graph, provider) & {"pytest_upskill.skills.skill_md", "pytest_upskill.engine.prompt"}, (
            provider
        )
    assert base.Completion is core.Completion and validators.Tool is core.Tool


def test_every_error_of_the_plugin_has_one_root_in_one_module():
    import inspect

    from pytest_upskill import errors

    tree = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    assert len(tree) >= 16 and all(issubclass(error, errors.UpskillError) for error in tree)
    for name in ("GenerateError", "MergeError", "TraceError"):  # the three that escaped the root before
        assert issubclass(getattr(errors, name), errors.UpskillError)
    assert all(error.__name__ in errors.__doc__ for error in tree)  # the docstring draws the whole tree
    # no module but errors.py defines a public exception class
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and path.name != "errors.py":
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not bases & {"Exception", "ValueError", "UpskillError", "TrialError"}, (path, node.name)
    assert skill.SkillFileError is errors.SkillFileError and config.ConfigError is errors.ConfigError
    assert issubclass(preflight.PreflightError, ValueError) and issubclass(sandbox.WorkspaceError, ValueError)
    assert (
        base.ProviderError(core.ErrorKind.TIMEOUT, "m").kind == "timeout"
        and type(base.ProviderError("timeout", "m").kind) is str
    )


def test_the_public_names_are_curated_and_pinned():
    """What a user may import from ``pytest_upskill`` (the README's examples use only these)."""
    assert sorted(pytest_upskill.__all__) == sorted(
        [
            "Check",
            "CheckResult",
            "ConfigError",
            "MeasureError",
            "Report",
            "SkillFileError",
            "UpskillError",
            "measure",
            "sandbox",
            "__version__",
        ]
    )
    for name in pytest_upskill.__all__:
        assert getattr(pytest_upskill, name) is not None
    assert pytest_upskill.sandbox.run and pytest_upskill.sandbox.Workspace and pytest_upskill.sandbox.Limits
