"""Assertion registry: the checks a case's ``expected`` may name, and how each scores an output.

A check is two functions: ``prepare(value)`` runs at collection time, validates the value written
in ``skill_meta.json`` and returns what ``check(output, prepared)`` receives when the trial is
scored. ``check`` returns ``bool``, ``(bool, message)`` or a :class:`CheckResult`.

Custom checks come from a ``conftest.py`` through the ``pytest_upskill_checks`` hook (see
``plugin/hookspecs.py``); an unknown check name is a collection error, never ignored.

The built-in checks that parse model output or match patterns on it (``regex``, ``is_json``,
``json_schema``) run in a confined worker process under the check time limit
(:mod:`pytest_upskill.scoring.checkpool`): a pattern that backtracks for hours on some output costs one
worker and ``--upskill-check-timeout`` seconds, never the session. ``contains``, ``not_contains``
and ``equals`` only compare strings, in time linear in the output, and parse nothing: they run in
the runner's process (a worker process costs a Python start-up, ~0.3 s of CPU, and a round trip
per check).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    message: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    check: Callable[[str, Any], Any]
    prepare: Callable[[Any], Any] = lambda value: value
    confined: bool = True  # a built-in check that parses or matches patterns: a check worker runs it


def _strings(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise ValueError(f"must be a string or a list of strings, not {json.dumps(value)[:80]}")
    return items


def _contains(output: str, needles: list[str]) -> CheckResult:
    # upskill's scoring, exactly: every string must appear, compared after str.lower().
    lowered = output.lower()
    missing = [s for s in needles if s.lower() not in lowered]
    return CheckResult(not missing, f"missing (case-insensitive): {missing}" if missing else "")


def _not_contains(output: str, needles: list[str]) -> CheckResult:
    lowered = output.lower()
    found = [s for s in needles if s.lower() in lowered]
    return CheckResult(not found, f"must not contain (case-insensitive): {found}" if found else "")


def _prepare_regex(value: Any) -> list[re.Pattern[str]]:
    patterns = []
    for source in _strings(value):
        try:
            patterns.append(re.compile(source, re.MULTILINE))
        except re.error as exc:
            raise ValueError(f"invalid regular expression {source!r}: {exc}") from None
    return patterns


def _regex(output: str, patterns: list[re.Pattern[str]]) -> CheckResult:
    missing = [pattern.pattern for pattern in patterns if not pattern.search(output)]
    return CheckResult(not missing, f"no match for: {missing}" if missing else "")


def _prepare_equals(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _equals(output: str, expected: str) -> CheckResult:
    ok = output.strip() == expected.strip()
    return CheckResult(
        ok, "" if ok else f"expected exactly {expected.strip()[:200]!r} (surrounding whitespace ignored)"
    )


_FENCE = re.compile(r"^\s*```[\w+-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def parse_json_output(output: str) -> Any:
    """The output as JSON: the whole text, or the inside of one fenced block that is the whole text."""
    match = _FENCE.match(output)
    return json.loads(match.group(1) if match else output)


def _prepare_is_json(value: Any) -> bool:
    if value is not True:
        raise ValueError("must be true")
    return True


def _is_json(output: str, _: bool) -> CheckResult:
    try:
        parse_json_output(output)
    except (ValueError, RecursionError) as exc:
        return CheckResult(False, f"output is not JSON: {exc}")
    return CheckResult(True)


def _prepare_schema(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON Schema object")
    import jsonschema  # imported when a case uses it: it costs 40 ms at every start otherwise

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None
    remote = next(_remote_refs(value), None)
    if remote is not None:
        raise ValueError(
            f"$ref {remote!r} points outside the schema, and a check never reaches the network; "
            'copy the definition under "$defs" and refer to it as "#/$defs/NAME"'
        )
    return value


def _remote_refs(schema: Any) -> Iterator[str]:
    """The ``$ref`` values of a schema that name a document by URL (``http:``, ``file:``, ...),
    other than one the schema embeds (an ``$id``) or a JSON Schema meta-schema (known offline).
    A relative ``$ref`` is resolved when the check runs, where retrieval is refused."""
    from urllib.parse import urldefrag, urlsplit

    from jsonschema.validators import SPECIFICATIONS

    nodes: list[Any] = [schema]
    refs: list[str] = []
    ids: set[str] = set()
    while nodes:
        node = nodes.pop()
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            ids.update(urldefrag(node[key]).url for key in ("$id", "id") if isinstance(node.get(key), str))
            nodes.extend(node.values())
        elif isinstance(node, list):
            nodes.extend(node)
    for ref in refs:
        document = urldefrag(ref).url
        if urlsplit(ref).scheme and document not in ids and document not in SPECIFICATIONS:
            yield ref


def _no_retrieval(uri: str) -> Any:
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # an attrs class: mypy misses its fields


def _json_schema(output: str, schema: dict[str, Any]) -> CheckResult:
    try:
        data = parse_json_output(output)
    except (ValueError, RecursionError) as exc:
        return CheckResult(False, f"output is not JSON: {exc}")
    import jsonschema
    import referencing
    from referencing.exceptions import Unresolvable

    # no retrieval: a $ref that resolves outside the schema (through an $id) is an error, not a request
    validator = jsonschema.validators.validator_for(schema)(
        schema,
        registry=referencing.Registry(retrieve=_no_retrieval),  # type: ignore[call-arg]  # attrs, as above
    )
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    except Unresolvable as exc:
        raise ValueError(
            f"the schema's $ref {getattr(exc, 'ref', str(exc))!r} is not in the schema, and remote references are "
            "never fetched"
        ) from None
    if error is None:
        return CheckResult(True)
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return CheckResult(False, f"schema violation at {path}: {error.message}")


BUILTIN_CHECKS: dict[str, Check] = {
    c.name: c
    for c in (
        Check("contains", _contains, _strings, confined=False),
        Check("not_contains", _not_contains, _strings, confined=False),
        Check("regex", _regex, _prepare_regex),
        Check("equals", _equals, _prepare_equals, confined=False),
        Check("is_json", _is_json, _prepare_is_json),
        Check("json_schema", _json_schema, _prepare_schema),
    )
}


class CheckRegistry:
    """Built-in checks plus those registered by ``pytest_upskill_checks`` hooks."""

    def __init__(self, custom: Mapping[str, Any] | None = None):
        self.checks = dict(BUILTIN_CHECKS)
        for name, value in (custom or {}).items():
            if name in BUILTIN_CHECKS:
                raise ValueError(f"custom check {name!r} would replace the built-in one; choose another name")
            self.checks[name] = value if isinstance(value, Check) else Check(name, value)

    def prepare(self, name: str, value: Any) -> Any:
        if name not in self.checks:
            raise KeyError(
                f"known checks: {', '.join(sorted(self.checks))}; register others with the pytest_upskill_checks hook"
            )
        return self.checks[name].prepare(value)

    def split(self, expected: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``expected`` as (built-in checks, custom checks): a check worker runs the first, the
        runner's thread the second (a conftest's code, trusted, in-process)."""
        builtin = {name: value for name, value in expected.items() if name in BUILTIN_CHECKS}
        return builtin, {name: value for name, value in expected.items() if name not in BUILTIN_CHECKS}

    def score(self, expected: Mapping[str, Any], output: str) -> CheckResult:
        """All checks must pass; the message lists every one that failed."""
        return _score(self.checks, expected, output)


def score_builtin(expected: Mapping[str, Any], output: str) -> CheckResult:
    """The built-in checks of ``expected`` on ``output``: what a check worker runs."""
    return _score(BUILTIN_CHECKS, expected, output)


def split_confined(builtin: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Built-in checks as (those that only compare strings, those a check worker runs)."""
    inline = {name: value for name, value in builtin.items() if not BUILTIN_CHECKS[name].confined}
    return inline, {name: value for name, value in builtin.items() if name not in inline}


def _score(checks: Mapping[str, Check], expected: Mapping[str, Any], output: str) -> CheckResult:
    failures = []
    for name, value in expected.items():
        result = as_result(checks[name].check(output, value))
        if not result.passed:
            failures.append(f"{name}: {result.message}" if result.message else name)
    return CheckResult(not failures, "; ".join(failures))


def as_result(value: Any) -> CheckResult:
    """What a check or validator returned, as a CheckResult: a CheckResult, an object with a bool
    ``passed`` (upskill's ValidationResult, with ``error_message``), ``(bool, message)`` or a bool."""
    if isinstance(value, CheckResult):
        return value
    passed = getattr(value, "passed", None)
    if isinstance(passed, bool):
        return CheckResult(passed, str(getattr(value, "error_message", None) or getattr(value, "message", None) or ""))
    if isinstance(value, tuple):
        return CheckResult(bool(value[0]), str(value[1]) if len(value) > 1 else "")
    return CheckResult(bool(value))
