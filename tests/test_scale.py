"""Scale: -n hands each worker its whole share at once and keeps a skill × model together; shards
of a suite across CI jobs merge into the report of one run; xdist's remote workers (execnet
socket servers) leave the report and the cache complete."""

from __future__ import annotations

import json
import re

import pytest

from pytest_upskill.testing import LoopbackServer


def write_suite(pytester, skills: int, cases: int, prefix: str = "skill") -> None:
    for s in range(skills):
        folder = pytester.path / "skills" / f"{prefix}-{s}"
        folder.mkdir(parents=True)
        (folder / "SKILL.md").write_text(
            f"---\nname: {prefix}-{s}\ndescription: Scale test skill {s}.\n---\n\nThe code of skill {s} is Z{s}.\n"
        )
        tests = [
            {
                "id": f"c{c}",
                "input": f"skill {s} case {c}: the code?",
                "expected": {"contains": f"z{s}" if c % 4 else "x"},
            }
            for c in range(cases)
        ]
        (folder / "skill_meta.json").write_text(json.dumps({"tests": tests}))


WORKER_LINE = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] \w+ (skills/[^:]+)::\S+\[(\S+)-(?:baseline|with_skill)\]", re.M)


def test_xdist_keeps_each_skill_and_model_on_one_worker_and_runs_every_trial_once(pytester):
    write_suite(pytester, 2, 6)
    with LoopbackServer() as server:
        models = f"openai:m@{server.openai_base_url},anthropic:c@{server.anthropic_base_url}"
        result = pytester.runpytest("skills", "--upskill-models", models, "-n", "2", "-v", "--upskill-cache", "off")
    ran = WORKER_LINE.findall(result.stdout.str())
    assert len(ran) == 2 * 2 * 6 * 2 == len(server.requests)  # 2 skills x 2 models x 6 cases x 2 arms
    assert len({(skill, label) for _, skill, label in ran}) == 4
    workers = {}
    for worker, skill, label in ran:
        workers.setdefault((skill, label), set()).add(worker)
    assert all(len(w) == 1 for w in workers.values()), workers  # 4 groups of 24 trials: two per worker
    assert sorted(sum(1 for w, _, _ in ran if w == gw) for gw in ("gw0", "gw1")) == [24, 24]


def test_xdist_sends_each_worker_its_whole_share_at_once(pytester):
    """Each worker starts every trial it was given together: with a second of latency and a high
    bound, one worker's share is all in flight at once (xdist's own load scheduler would have given
    it a quarter first)."""
    write_suite(pytester, 1, 20)
    with LoopbackServer(latency_s=1.0) as server:
        pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "-n", "2",
            "--upskill-concurrency", "64", "--upskill-cache", "off",
        )  # fmt: skip
    assert len(server.requests) == 40
    assert server.max_in_flight >= 20


def test_another_dist_mode_the_user_chose_is_left_to_xdist(pytester):
    write_suite(pytester, 1, 3)
    with LoopbackServer() as server:
        result = pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "-n", "2",
            "--dist", "loadscope", "--upskill-cache", "off", "-v",
        )  # fmt: skip
    result.stdout.fnmatch_lines(["*scheduling tests via LoadScopeScheduling*"])
    assert len(server.requests) == 6


def test_xdist_reports_its_scheduler(pytester):
    write_suite(pytester, 1, 2)
    with LoopbackServer() as server:
        result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "-n", "2", "-v")
    result.stdout.fnmatch_lines(["*scheduling tests via UpskillScheduling*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # case c0 fails with the skill (see write_suite)
