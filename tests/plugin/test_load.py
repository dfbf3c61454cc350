"""Load without loss: 10,000 trials against a server that answers 429, 500 and garbage on a
schedule, in one process and with -n 4; and an xdist worker killed mid-run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_upskill.testing import GARBAGE, RATE_LIMITED, SERVER_ERROR, LoopbackServer, periodic

pytestmark = pytest.mark.slow  # 10,000 trials through faults

SKILLS, CASES = 50, 100  # x 1 model x 2 arms = 10,000 trials
# The process's own peak: VmHWM of its memory map. Not getrusage's ru_maxrss, which after fork and
# exec also counts the forking parent's resident pages (Linux keeps the old map's high-water mark
# across exec): a pytest worker that had loaded a model before starting this run would count.
RSS_CONFTEST = """
import re
from pathlib import Path

def pytest_sessionfinish(session):
    workerinput = getattr(session.config, "workerinput", None)  # not the environment: it comes from an outer -n too
    name = workerinput["workerid"] if workerinput else "main"
    peak_kib = int(re.search(r"^VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE).group(1))
    (session.config.rootpath / f"rss-{name}.txt").write_text(str(peak_kib * 1024))
"""
MAX_RSS = 1 << 30  # a process of the run may use at most 1 GiB (measured: see the README)


def expected_code(s: int, c: int) -> dict:  # cases c0, c3, ... want the code alone, the others followed by a full stop
    return {"contains": f"z{s}." if c % 3 else f"z{s}"}


@pytest.mark.parametrize("workers", [[], ["-n", "4"]], ids=["one-process", "xdist-4"])
def test_ten_thousand_trials_through_faults_each_end_with_exactly_one_outcome(pytester, code_suite, workers):
    code_suite(SKILLS, CASES, expected_code)
    pytester.makeconftest(RSS_CONFTEST)
    faults = periodic({3: RATE_LIMITED, 7: SERVER_ERROR, 11: GARBAGE}, period=13)  # 3 of every 13 requests
    with LoopbackServer(fault=faults) as server:
        result = pytester.runpytest_subprocess(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-cache",
            "off",
            "--upskill-concurrency",
            "32",
            "--upskill-retries",
            "4",
            "-o",
            "upskill_backoff=0.001",
            "--upskill-max-errors",
            "1%",
            "--upskill-report",
            "r.json",
            "--junitxml",
            "out.xml",
            "-q",
            "-p",
            "no:cacheprovider",
            *workers,
            timeout=900,
        )
        answered = len(server.requests)
        faulted = (
            sum(1 for _, status, _ in server.attempts if status != 200)
            + sum(1 for _, status, body in server.attempts if status == 200)
            - answered
        )
    report = json.loads((pytester.path / "r.json").read_text())
    arms = [r[arm] for r in report["results"] for arm in ("baseline", "with_skill")]
    assert len(report["results"]) == SKILLS and report["missing"] == []
    assert sum(a["total"] for a in arms) == report["trials"] == SKILLS * CASES * 2
    assert all(a["passed"] + a["failed"] + a["errors"] == a["total"] for a in arms)
    scored = sum(a["passed"] + a["failed"] for a in arms)
    assert scored == answered  # every answer the server gave belongs to exactly one scored trial
    assert faulted > 2000  # the schedule really hit
    kinds = report["errors_by_model"].get(f"openai:m@{server.openai_base_url}", {})
    assert set(kinds) <= {"rate_limit", "server_error", "bad_response"} and sum(kinds.values()) == report["errors"]
    # with the skill, cases c1, c2, c4, ... want "zN." and get it; c0, c3, ... want "zN" and get it: all pass
    assert (
        sum(r["with_skill"]["passed"] for r in report["results"])
        + sum(r["with_skill"]["errors"] for r in report["results"])
        == SKILLS * CASES
    )
    cases = ET.parse(pytester.path / "out.xml").getroot().iter("testcase")
    per_case = [sum(1 for p in case.iter("property") if p.get("name") == "upskill.passed") for case in cases]
    assert len(per_case) == SKILLS * CASES * 2 and set(per_case) == {1}
    rss = {path.name: int(path.read_text()) for path in pytester.path.glob("rss-*.txt")}
    assert len(rss) == (5 if workers else 1) and max(rss.values()) < MAX_RSS, rss
    print(f"peak RSS per process: { {k: f'{v / 2**20:.0f} MiB' for k, v in rss.items()} }; errors {report['errors']}")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]


KILLER = """
import os, signal

def pytest_runtest_setup(item):
    marker = item.config.rootpath / "killed"
    if "skill-2/skill_meta.json::c7[openai-m-with_skill]" in item.nodeid and not marker.exists():
        marker.write_text(os.environ.get("PYTEST_XDIST_WORKER", ""))
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_worker_killed_mid_run_loses_only_its_current_trial_and_the_report_names_it(
    pytester, code_suite, model_server
):
    code_suite(4, 25, expected_code)  # 200 trials
    pytester.makeconftest(KILLER)
    result = pytester.runpytest_subprocess(
        "skills",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "-n",
        "4",
        "--upskill-report",
        "r.json",
        "-p",
        "no:cacheprovider",
        timeout=300,
    )
    killed = "skills/skill-2/skill_meta.json::c7[openai-m-with_skill]"
    assert (pytester.path / "killed").read_text().startswith("gw")
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["missing"] == [killed]
    assert report["trials"] == 199 and report["errors"] == 0
    skill2 = next(r for r in report["results"] if r["skill"] == "skill-2")
    assert skill2["with_skill"]["total"] == 24 and skill2["baseline"]["total"] == 25
    shown = "".join(f"[{c}]" if c in "[]" else c for c in killed)  # literal brackets for fnmatch
    result.stdout.fnmatch_lines(
        [
            f"*worker 'gw*' crashed while running '{shown}'*",
            f"missing: 1 trial(s) produced no outcome (a worker crashed or the run stopped early): {shown}",
            "error limit: 1 unscored trial(s), --upskill-max-errors allows 0 (0): the run fails",
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
