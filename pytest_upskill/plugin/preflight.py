"""What can be checked before the first request is checked then: every place the run will write
(the cache folder, the JSON and Markdown reports, pytest's JUnit file, ``GITHUB_STEP_SUMMARY``)
and the report ``--upskill-compare`` reads. A bad setting found after the paid run loses the run;
found here it is a usage error naming the option and what to do.

What can only fail at the end (a disk that fills up) is written by :func:`write_each`: every
output is attempted, a failure becomes a line in the summary, never a traceback, and never costs
the other outputs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_upskill.errors import PreflightError
from pytest_upskill.results.report import Report, first_problem, read_report
from pytest_upskill.types import CacheMode


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def writable_folder(folder: Path, what: str) -> None:
    """``folder`` exists (or is created) and a file can be written in it."""
    if folder.exists() and not folder.is_dir():
        raise PreflightError(f"{what} {folder}: this is a file, not a folder; name a folder (or remove the file)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".upskill-probe-"):
            pass
    except OSError as exc:
        raise PreflightError(f"{what} {folder}: cannot write there ({_reason(exc)}); name a writable folder") from None


def writable_file(path: Path, what: str, append: bool = False) -> None:
    """``path`` can be written (or, ``append``, appended to) without touching what it holds now."""
    if path.is_dir():
        raise PreflightError(f"{what} {path}: this is a folder; name a file in it, e.g. {path / 'report.json'}")
    if append and path.exists():
        if not os.access(path, os.W_OK):
            raise PreflightError(f"{what} {path}: the file is not writable; fix its permissions or name another file")
        return
    writable_folder(path.parent, f"{what} {path}: its folder")


def check_outputs(cache: Any, cache_mode: str, outputs: list[tuple[str, Path]], step_summary: str | None) -> None:
    """The cache folder (``cache``: a ResponseCache), the report files ``outputs`` (what, path)
    and ``GITHUB_STEP_SUMMARY``: PreflightError naming the first that cannot be written."""
    if cache_mode == CacheMode.RW:
        if not cache.root.is_file():
            try:
                cache.create()  # as the first write would (its .gitignore included)
            except OSError:
                pass  # writable_folder says why
        writable_folder(cache.root, "--upskill-cache-dir (upskill_cache_dir)")
    elif cache_mode == CacheMode.REPLAY and cache.root.exists() and not cache.root.is_dir():
        raise PreflightError(
            f"--upskill-cache-dir {cache.root}: this is a file, not the cache folder; name the folder the responses "
            "were recorded in"
        )
    for what, path in outputs:
        writable_file(path, what)
    if step_summary:
        writable_file(Path(step_summary), "GITHUB_STEP_SUMMARY", append=True)


# ---------------------------------------------------------------------------- --upskill-compare


def compared_report(path: Path, where: str) -> Report:
    """The file ``path`` read and checked as a report to compare with (the same model the run
    writes, read as untrusted input: results.report.read_report; every part but the results' skill and
    model may be missing); PreflightError when it is not one, OSError when it cannot be read."""
    try:
        return read_report(path)
    except ValidationError as exc:
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise PreflightError(
            f"{where}: not a report written by --upskill-report: {first_problem(exc)}{more}; "
            "pass the JSON file an earlier run wrote with --upskill-report"
        ) from None
    except ValueError as exc:
        raise PreflightError(f"{where}: {exc}; pass the JSON file an earlier run wrote with --upskill-report") from None


# ------------------------------------------------------------------------------------ the end


def write_each(outputs: list[tuple[str, Callable[[], None]]]) -> list[str]:
    """Run every writer; the ones that failed, as lines naming the output and the reason."""
    problems = []
    for what, write in outputs:
        try:
            write()
        except OSError as exc:
            problems.append(f"could not write {what}: {_reason(exc)}; the other outputs were written")
    return problems
