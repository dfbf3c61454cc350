"""``measure()``: the students' run, as any user's. It runs ``pytest`` with this plugin on some skills
and models, in a process of its own, and returns the typed report. The settings, the response
cache and the report are the ones ``pytest SKILLS --upskill-models ...`` uses.

The teaching commands sit on it: each version of a skill is measured the way CI would measure it.
inspect_ai's CLI calls the same ``eval()`` its users call, in the same way. A process of its own
keeps the in-process model and pytest's own state apart from the caller's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from pytest_upskill.errors import MeasureError
from pytest_upskill.results.report import Report
from pytest_upskill.types import CacheMode

_KEPT_OUT = ("GITHUB_STEP_SUMMARY", "PYTEST_ADDOPTS")  # the caller's CI summary and options are its own


def measure(
    skills: Path | Sequence[Path],
    models: Sequence[str],
    *,
    runs: int | None = None,
    cache: CacheMode | str | None = None,
    max_cost: float | None = None,
    rootdir: Path | None = None,
    inifile: Path | None = None,
    cwd: Path | None = None,
    report: Path | None = None,
    options: Sequence[str] = (),
) -> Report:
    """Run every case of ``skills`` (skill folders or case files) on each of ``models``, with and
    without the skill, and return the run's report.

    ``rootdir`` and ``inifile`` locate the project (its model aliases, ini settings and response
    cache); by default pytest finds them from ``cwd``. ``options`` are more pytest arguments.
    Neither the caller's ``addopts`` nor its history folder apply: a measurement is not one of the
    project's runs. A failing gate or a failed with-skill trial still returns the report. A run
    with no report (a usage error, a crash) raises :class:`~pytest_upskill.errors.MeasureError`,
    with the end of what it printed.
    """
    paths = [skills] if isinstance(skills, Path) else list(skills)
    with tempfile.TemporaryDirectory(prefix="upskill-measure-") as scratch:
        out = report or Path(scratch, "report.json")
        command = [sys.executable, "-m", "pytest", *map(str, paths), "-p", "no:cacheprovider", "-q", "--no-header"]
        if inifile is not None:
            command += ["-c", str(inifile)]
        if rootdir is not None:
            command += ["--rootdir", str(rootdir)]
        command += ["-o", "addopts=", "-o", "upskill_history="]
        command += ["--upskill-models", ",".join(models), "--upskill-report", str(out)]
        if runs:
            command += ["--upskill-runs", str(runs)]
        if cache is not None:
            command += ["--upskill-cache", str(cache)]
        if max_cost is not None:
            command += ["--upskill-max-cost", f"{max_cost:.6f}"]
        command += list(options)
        env = {k: v for k, v in os.environ.items() if k not in _KEPT_OUT}
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        if done.returncode not in (0, 1) or not out.is_file():
            raise MeasureError(done.returncode, tail)
        return Report.model_validate_json(out.read_text(encoding="utf-8"))
