"""The package as pip builds it: typed, and versioned from one place."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import pytest_upskill

PACKAGE = Path(pytest_upskill.__file__).parent


@pytest.mark.slow  # builds a wheel
def test_the_wheel_is_typed_and_takes_its_version_from_the_package(tmp_path):
    """Part 6: ``py.typed`` ships, and ``pytest_upskill.__version__`` is the one source of the version."""
    root = PACKAGE.parent
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(root), "--no-deps", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("pytest_upskill-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pytest_upskill/py.typed" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert f"\nVersion: {pytest_upskill.__version__}\n" in metadata
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]  # not written twice
