"""The pull request's check (issue 30): one paired experiment per skill × model against the base
report, with known error rates. Noisy answers come from a loopback server whose every answer is a
seeded draw at the case's true pass rate, so each run is reproducible and two runs differ."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import pytest

from pytest_upskill.testing import LoopbackServer

RATES = [(0.9, 0.3), (0.8, 0.2), (0.7, 0.5), (0.6, 0.1), (0.5, 0.5), (0.9, 0.6), (0.3, 0.1), (0.7, 0.2)]
RATES += [(0.6, 0.4), (0.8, 0.3), (0.4, 0.2), (0.9, 0.1)]


class NoisyReply:
    """PASS with the case's rate (with skill: its first rate less ``drop``; without: its second),
    drawn from a hash of ``seed``, the prompt and how many times that prompt was asked."""

    def __init__(self) -> None:
        self.seed, self.drop = "main", 0.0
        self.asked: Counter[tuple[str, str, str]] = Counter()

    def __call__(self, system: str, user: str) -> str:
        skill_rate, base_rate = (float(v) for v in user.split("rates=", 1)[1].split()[0].split("/"))
        with_skill = "<skill" in system
        rate = max(0.0, skill_rate - self.drop) if with_skill else base_rate
        key = (self.seed, system, user)
        self.asked[key] += 1
        digest = hashlib.sha256(f"{self.seed}|{system}|{user}|{self.asked[key]}".encode()).digest()
        return "PASS" if int.from_bytes(digest[:8], "big") / 2**64 < rate else "no"


def cases() -> list[dict]:
    return [
        {"id": f"c{i}", "input": f"rates={s}/{b} question {i}", "expected": {"contains": "PASS"}}
        for i, (s, b) in enumerate(RATES)
    ]


@pytest.fixture
def noisy():
    reply = NoisyReply()
    with LoopbackServer(reply=reply) as server:
        server.noisy = reply
        yield server


def run(pytester, server, seed: str, *args: str, drop: float = 0.0):
    server.noisy.seed, server.noisy.drop = seed, drop
    return pytester.runpytest(
        "skills",
        "--upskill-models",
        f"openai:m@{server.openai_base_url}",
        "--upskill-runs",
        "3",
        "--upskill-cache",
        "off",
        *args,
    )


def regressions(pytester, name: str) -> list[dict]:
    return json.loads((pytester.path / name).read_text())["regressions"]


def test_an_unchanged_skill_with_noisy_answers_passes_the_pr_check_though_cases_flip(pytester, write_skill, noisy):
    write_skill("noisy", cases(), body="Answer.")
    base = run(pytester, noisy, "main", "--upskill-report", "main.json")
    assert base.ret == pytest.ExitCode.TESTS_FAILED  # no gate: a failed with-skill trial fails a plain run
    again = run(
        pytester,
        noisy,
        "pr",
        "--upskill-compare",
        "main.json",
        "--upskill-report",
        "pr.json",
    )
    found = regressions(pytester, "pr.json")
    flips = [g for g in found if g["kind"] == "flip"]
    assert flips and all(not g["fails"] for g in flips)  # cases flipped: the old rule failed this run
    (change,) = [g for g in found if g["kind"] == "change"]
    assert change["fails"] is False
    again.stdout.fnmatch_lines(
        [
            "NO REGRESSION noisy × *: with-skill pass rate on the 12 shared case(s) *: no drop of more than 0% *",
            "FLIP         noisy × *: case c*: with skill passed before, fails now (shown for review*",
            "compared with main.json (--upskill-compare): no regression shown*",
            "upskill: exit status 0: every gate passed",
        ]
    )
    assert again.ret == pytest.ExitCode.OK, again.stdout.str()


def test_a_real_drop_is_flagged_and_a_margin_tolerates_a_small_one(pytester, write_skill, noisy):
    write_skill("noisy", cases(), body="Answer.")
    run(pytester, noisy, "main", "--upskill-report", "main.json")
    write_skill("noisy", cases(), body="Answer, edited.")  # the edit costs 0.5 on every case
    dropped = run(pytester, noisy, "pr", "--upskill-compare", "main.json", drop=0.5)
    dropped.stdout.fnmatch_lines(
        [
            "REGRESSION   noisy × *: with-skill pass rate on the 12 shared case(s) *: a drop of more than 0% is shown",
            "upskill: exit status 1 because *1 regression(s) shown*",
        ]
    )
    assert dropped.ret == pytest.ExitCode.TESTS_FAILED
    tolerated = run(
        pytester, noisy, "pr", "--upskill-compare", "main.json", "--upskill-max-regression", "0.9", drop=0.5
    )
    tolerated.stdout.fnmatch_lines(["NO REGRESSION noisy × *: no drop of more than 90% is shown"])
    claimed = run(pytester, noisy, "pr2", "--upskill-compare", "main.json", "--upskill-min-improvement", "0.1")
    claimed.stdout.fnmatch_lines(
        ["NOT SHOWN    noisy × *: an improvement of at least +10% is not shown (--upskill-min-improvement)"]
    )
    assert claimed.ret == pytest.ExitCode.TESTS_FAILED


def test_an_old_report_without_per_case_results_is_compared_on_the_lifts_saying_so(pytester, write_skill, noisy):
    write_skill("noisy", cases(), body="Answer.")
    run(pytester, noisy, "main", "--upskill-report", "main.json")
    old = json.loads((pytester.path / "main.json").read_text())
    for result in old["results"]:
        result["cases"] = []
    (pytester.path / "main.json").write_text(json.dumps(old))
    dropped = run(pytester, noisy, "pr", "--upskill-compare", "main.json", drop=0.9)
    dropped.stdout.fnmatch_lines(["REGRESSION   noisy × *: lift fell from * the old report holds no per-case results*"])


def test_a_skill_the_old_report_lacks_is_not_green_unless_a_gate_judges_it(pytester, write_skill, noisy):
    """Nothing unevaluated is green: a skill added by the pull request has nothing to be compared
    with, so the check cannot pass it; a gate of its own can."""
    write_skill("noisy", cases(), body="Answer.")
    run(pytester, noisy, "main", "--upskill-report", "main.json")
    write_skill("added", cases(), body="Answer too.")
    alone = run(pytester, noisy, "main", "--upskill-compare", "main.json")
    alone.stdout.fnmatch_lines(
        [
            "NOT COMPARED added × *: not in the old report: nothing to compare it with; set a gate "
            "(--upskill-min-lift) to judge it",
            "upskill: exit status 1 because 1 skill × model(s) could not be compared and have no gate of their own "
            "(NOT COMPARED above)",
        ]
    )
    gated = run(pytester, noisy, "main", "--upskill-compare", "main.json", "--upskill-min-pass-rate", "0")
    gated.stdout.fnmatch_lines(["NOT COMPARED added × *: not in the old report*; judged by its gates"])
    assert gated.ret == pytest.ExitCode.OK, gated.stdout.str()
