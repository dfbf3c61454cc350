"""The pull request's check as one experiment (issue 31): the skill at a git ref as the ``previous``
arm beside no skill and the working tree's, on the same cases; validity controls; sampling until
decided. The model is a loopback server whose answer follows the skill text it is given, so a
skill's edit changes its pass rate, and a git repository is made in each test."""

from __future__ import annotations

import json
import subprocess

import pytest

from pytest_upskill.testing import LoopbackServer

GOOD = "Always answer with the word PASS."
WORSE = "Answer in as few words as you can."


def follows_the_skill(system: str, user: str) -> str:
    """PASS only where the system prompt holds the good skill's instruction."""
    return "PASS" if GOOD in system else "no"


def cases(n: int, tag: str = "") -> list[dict]:
    return [{"id": f"c{i}", "input": f"{tag}question {i}", "expected": {"contains": "PASS"}} for i in range(n)]


def git(path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True, check=True)
    return done.stdout


def commit_all(path, message: str = "main") -> None:
    if not (path / ".git").exists():
        git(path, "init", "-q", "-b", "main")
        git(path, "config", "user.email", "t@example.com")
        git(path, "config", "user.name", "t")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)


@pytest.fixture
def server():
    with LoopbackServer(reply=follows_the_skill) as s:
        yield s


def upskill(pytester, server, *args: str):
    return pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", *args)


def report(pytester, name: str = "r.json") -> dict:
    return json.loads((pytester.path / name).read_text())


def test_against_a_ref_the_skill_as_it_was_is_a_third_arm_and_a_worse_edit_is_a_regression(
    pytester, write_skill, server
):
    write_skill("alpha", cases(8), body=GOOD)
    write_skill("beta", cases(3, "b "), body=GOOD)
    write_skill("delta", cases(2, "d "), body=GOOD)
    commit_all(pytester.path)
    write_skill("alpha", cases(8), body=WORSE)  # the pull request makes alpha worse,
    write_skill("gamma", cases(2, "g "), body=GOOD)  # adds gamma,
    subprocess.run(["rm", "-r", str(pytester.path / "skills" / "delta")], check=True)  # and deletes delta
    (pytester.path / "skills" / "beta" / "skill_meta.json").write_text(json.dumps(cases(4, "b ")))  # a new case

    result = upskill(
        pytester,
        server,
        "--upskill-against",
        "main",
        "--upskill-report",
        "r.json",
        "--upskill-markdown",
        "pr.md",
        "--upskill-html",
        "pr.html",
        "--junitxml",
        "pr.xml",
    )

    result.stdout.fnmatch_lines(
        [
            "alpha × *",
            "  baseline  * 0%",
            "  with skill * 0%  lift +0%*",
            "  previous  *   8/8  * 100%  change -100% ?95% CI *] on 8 case(s)",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "REGRESSION   alpha × *: pass rate, previous (main) → with skill on the 8 shared case(s) 100% → 0% "
            "(change -100%, 95% CI *): a drop of more than 10% is shown",
            "MOVED        alpha × *: case c0: passed with the previous skill, fails now (shown for review; never fails "
            "the run)",
            "UNCHANGED    beta × *: the same at main: no separate previous arm (its with-skill trials are the previous "
            "arm), so there is no change to judge",
            "NOT COMPARED gamma × *: new since main: no previous arm to compare with; set a gate (--upskill-min-lift) "
            "to judge it",
            "DELETED      skills/delta × -: a skill at main, with no SKILL.md now: deleted",
            "the change against main (with skill − previous, paired): NO WORSE passes (its 95% interval at or above "
            "-10%: non-inferiority, --upskill-max-regression), REGRESSION and INCONCLUSIVE fail; *",
            "upskill: exit status 1 because 1 regression(s) shown (REGRESSION and NOT SHOWN above); 1 skill × model(s) "
            "could not be compared and have no gate of their own (NOT COMPARED above)",
        ]
    )
    result.stdout.no_fnmatch_line("FAILED *-previous]*")  # the previous arm is a point of comparison: xfail
    result.stdout.fnmatch_lines(["*= 8 failed, * xfailed*"])  # alpha's with-skill trials only
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    data = report(pytester)
    by_skill = {r["skill"]: r for r in data["results"]}
    alpha, beta, gamma = by_skill["alpha"], by_skill["beta"], by_skill["gamma"]
    assert alpha["against"] == "changed" and alpha["previous"]["passed"] == 8
    assert alpha["change"]["difference"] == -1.0 and alpha["change"]["cases"] == 8
    assert alpha["cases"][0]["previous"] == [True]
    assert beta["against"] == "same" and "previous" not in beta and beta["paired_cases"] == 4  # the new case runs
    assert gamma["against"] == "new" and "previous" not in gamma
    assert data["against"] == {"ref": "main", "deleted": ["skills/delta"]}
    summary = (pytester.path / "pr.md").read_text()  # the three arms side by side, and what moved
    assert "| baseline | with skill | lift [95% CI] | previous | change |" in summary
    assert "| 0/8 | +0% [-32%, +32%] | 8/8 | -100% [-100%, -54%] |" in summary
    assert "passed with the previous skill, fails now" in summary
    page = (pytester.path / "pr.html").read_text()
    assert 'data-key="alpha|' in page and "|change.difference" in page
    assert "previous ✓ → with skill ✗" in page
    junit = (pytester.path / "pr.xml").read_text()
    assert 'change" value="-1.0000"' in junit and 'change_ci" value="-1.0000,' in junit
    # every arm's system prompt is the scaffold plus at most one skill block: previous sent the old text
    previous = [r for r in server.requests if GOOD in json.dumps(r.body) and "question" in json.dumps(r.body)]
    assert any("alpha" in json.dumps(r.body) for r in previous)


def test_a_pull_request_that_edits_one_of_ten_skills_sends_only_that_skills_requests_with_mains_cache(
    pytester, write_skill, server
):
    for k in range(10):
        write_skill(f"skill-{k}", cases(3, f"s{k} "), body=GOOD)
    commit_all(pytester.path)
    main = upskill(pytester, server, "--upskill-report", "main.json")  # main's CI run fills the cache
    assert main.ret == pytest.ExitCode.OK
    sent_on_main = len(server.requests)
    assert sent_on_main == 10 * 3 * 2
    write_skill("skill-4", cases(3, "s4 "), body=GOOD + " Be brief.")  # the pull request edits one skill

    pr = upskill(pytester, server, "--upskill-against", "main", "--upskill-max-regression", "0.1")

    assert len(server.requests) - sent_on_main == 3  # only skill-4's with-skill trials: the rest replayed
    pr.stdout.fnmatch_lines(
        [
            "UNCHANGED    skill-0 × *",
            "INCONCLUSIVE skill-4 × *: pass rate, previous (main) → with skill on the 3 shared case(s) 100% → 100% "
            "(change +0%, 95% CI -56% to +56%): not shown to be no worse than -10%, nor worse: more cases or runs "
            "decide it (fails*",
            "UNCHANGED    skill-9 × *",
            "upskill: exit status 1 because 1 changed skill × model(s) not shown to be no worse than the previous "
            "skill (INCONCLUSIVE above: more cases or runs decide it)",
        ]
    )
    assert pr.ret == pytest.ExitCode.TESTS_FAILED  # three cases cannot show it: honest, and says what decides it


def test_against_a_folder_of_the_skills_as_they_were(pytester, write_skill, server):
    old = write_skill("alpha", cases(4), body=GOOD)
    saved = pytester.path / "main-skills"
    subprocess.run(["cp", "-r", str(old.parent), str(saved)], check=True)
    write_skill("alpha", cases(4), body=WORSE)

    result = upskill(pytester, server, "--upskill-against", "main-skills", "--upskill-report", "r.json")

    assert report(pytester)["results"][0]["previous"]["passed"] == 4
    result.stdout.fnmatch_lines(["REGRESSION   alpha × *: pass rate, previous (main-skills) → with skill *"])


def test_an_unknown_ref_is_a_usage_error_before_any_request(pytester, write_skill, server):
    write_skill("alpha", cases(2), body=GOOD)
    commit_all(pytester.path)
    result = upskill(pytester, server, "--upskill-against", "no-such-branch")
    result.stderr.fnmatch_lines(
        ["*--upskill-against no-such-branch: 'no-such-branch' is neither a folder nor a git ref*"]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert server.requests == []


# ------------------------------------------------------------------------------ validity controls


class RemembersPrompts:
    """A broken harness in miniature: the answer depends on whether the same prompt came before
    (as a wrongly keyed cache or a stateful server would make it), not only on the prompt."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def __call__(self, system: str, user: str) -> str:
        known = (system, user) in self.seen
        self.seen.add((system, user))
        return "PASS" if known else "no"


def test_the_a_a_control_passes_a_sound_harness_and_marks_a_broken_one_invalid(pytester, write_skill):
    write_skill("alpha", cases(24), body=GOOD)
    with LoopbackServer(reply=follows_the_skill) as sound:
        ok = upskill(pytester, sound, "--upskill-controls", "--upskill-min-lift", "0.3", "--upskill-report", "r.json")
    ok.stdout.fnmatch_lines(
        [
            "  A/A         *  20/20   100%  skill − A/A +0% ?99% CI *] on 20 case(s)",
            "VALID        alpha × *: A/A control: the same skill in two arms on 20 case(s), 100% and 100% (difference "
            "+0%, 99% CI *): identical arms agree",
            "upskill: exit status 0: every gate passed",
        ]
    )
    data = report(pytester)["results"][0]
    assert (
        data["aa_control"]["total"] == 20 and data["aa_difference"]["difference"] == 0
    )  # a sample of 20 of the 24 cases
    assert ok.ret == pytest.ExitCode.OK

    with LoopbackServer(reply=RemembersPrompts()) as broken:
        bad = upskill(pytester, broken, "--upskill-controls", "--upskill-concurrency", "1", "--upskill-cache", "off")
    bad.stdout.fnmatch_lines(
        [
            "INVALID      alpha × *: A/A control: the same skill in two arms on 20 case(s), 0% and 100% (difference "
            "-100%, 99% CI *): identical arms differ, so the harness is broken *, not the skill; no verdict of this "
            "skill × model can be trusted",
            "upskill: exit status 1 because 1 validity control(s) failed, so the harness is broken, not the skill "
            "(INVALID above)*",
        ]
    )
    assert bad.ret == pytest.ExitCode.TESTS_FAILED


def test_the_placebo_separates_what_the_skill_says_from_a_longer_prompt(pytester, write_skill):
    write_skill("alpha", cases(10), body=GOOD + " " + "Context. " * 20)
    with LoopbackServer(reply=follows_the_skill) as server:
        said = upskill(pytester, server, "--upskill-controls")
    said.stdout.fnmatch_lines(
        [
            "  placebo     *   0/10     0%  skill − placebo +100% ?95% CI *] on 10 case(s)",
            "PLACEBO      alpha × *: with skill 100% vs placebo 0% on 10 case(s) (difference +100%, 95% CI *): what "
            "the skill says helps, beyond a longer prompt (information: never fails the run)",
        ]
    )
    placebos = [r for r in server.requests if "Paper was first made in China" in json.dumps(r.body)]
    assert len(placebos) == 10  # a neutral text in the skill's place, one request per case

    def likes_long_prompts(system: str, user: str) -> str:
        return "PASS" if len(system) > 200 else "no"

    with LoopbackServer(reply=likes_long_prompts) as server:
        longer = upskill(pytester, server, "--upskill-controls")
    longer.stdout.fnmatch_lines(
        [
            "PLACEBO      alpha × *: with skill 100% vs placebo 100% on 10 case(s) (difference +0%, 95% CI *): not "
            "shown to do better than a neutral text of its length (information: never fails the run)",
        ]
    )
    assert longer.ret == pytest.ExitCode.OK  # every with-skill trial passed; the placebo is information


def test_the_positive_control_checks_that_a_skill_asked_for_by_name_is_loaded(pytester, write_skill):
    write_skill("alpha", cases(10), body=GOOD)
    progressive = ("--upskill-controls", "--upskill-injection", "progressive", "--upskill-report", "r.json")
    with LoopbackServer() as server:  # skill_agent: loads a listed skill
        works = upskill(pytester, server, *progressive)
    works.stdout.fnmatch_lines(
        [
            "  named       *  10/10   100%  loaded the skill when the request named it (positive control)",
            "VALID        alpha × *: positive control: asked for the skill by name, the model loaded it in 10/10 "
            "trial(s) (100%, 95% CI 72% to 100%): loading works",
        ]
    )
    named = [r for r in server.requests if "Use the alpha skill for this." in json.dumps(r.body)]
    assert named  # the positive control's requests name the skill

    def never_loads(turn):
        return "PASS", []

    with LoopbackServer(agent=never_loads) as server:
        broken = upskill(pytester, server, *progressive)
    broken.stdout.fnmatch_lines(
        [
            "INVALID      alpha × *: positive control: asked for the skill by name, the model loaded it in 0/10 "
            "trial(s) (0%, 95% CI 0% to 28%): shown below 90%, so the activation measurement (the listing, "
            "read_skill) is broken, not the skill",
        ]
    )
    assert broken.ret == pytest.ExitCode.TESTS_FAILED


def test_the_plan_counts_the_controls_and_the_previous_arm(pytester, write_skill, server):
    write_skill("alpha", cases(12), body=GOOD)
    commit_all(pytester.path)
    write_skill("alpha", cases(12), body=WORSE)
    plain = upskill(pytester, server, "--upskill-plan")
    both = upskill(pytester, server, "--upskill-plan", "--upskill-controls", "--upskill-against", "main")
    plain.stdout.fnmatch_lines(["openai:m@* 24 * 24 *"])
    assert "arms:" not in plain.stdout.str()
    both.stdout.fnmatch_lines(
        [
            "openai:m@* 60 * 60 *",
            "arms: baseline 12, with skill 12, previous 12, placebo 12, A/A 12 trial(s); the previous arm and the "
            "controls add 36 trial(s), 36 request(s)",  # system injection: no positive control
        ]
    )
    assert server.requests == []


# ------------------------------------------------------------------------------ sampling until decided


def warm_alias(pytester, server) -> str:
    """A model alias that samples (temperature 1): --upskill-runs auto adds runs only to such a model."""
    pytester.makefile(
        ".toml",
        pyproject=f'[tool.upskill.models.warm]\nprovider = "openai"\nmodel = "m"\n'
        f'base_url = "{server.openai_base_url}"\ntemperature = 1.0\n',
    )
    return "warm"


def auto(pytester, model: str, *args: str):
    """A run of every skill with --upskill-runs auto and no response cache (each answer drawn afresh)."""
    return pytester.runpytest(
        "skills", "--upskill-models", model, "--upskill-runs", "auto", "--upskill-cache", "off", *args
    )


def test_auto_runs_stop_at_the_first_look_that_decides(pytester, write_skill, server):
    write_skill("alpha", cases(20), body=GOOD)
    model = warm_alias(pytester, server)
    result = auto(pytester, model, "--upskill-min-lift", "0.3")
    result.stdout.fnmatch_lines(
        [
            "auto runs: at most 4 per case; a skill × model stops at the first look that decides its verdicts; look k "
            "is read at a level that spends its share of the error (99.92%, 99.45%, 98.52%, 97.11%), and a verdict at "
            "its look's, so stopping early keeps the error rates",
            "  alpha × warm: 1 of 4 run(s) used, read at 99.92%; 120 trial(s) not needed",
            "PASS         alpha × warm: lift +100% ?99.92% CI +49%, +100%] vs at least +30% PASS",
            "exit status follows these verdicts: PASS passes (the stopping look's (--upskill-runs auto) interval *",
            "upskill: exit status 0: every gate passed",
        ]
    )
    assert sum("question" in json.dumps(r.body) for r in server.requests) == 40  # 20 cases × 2 arms, once
    assert result.ret == pytest.ExitCode.OK


class CoinOnSome:
    """Cases named "same" pass in both arms every time; the others are a coin in both arms."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, system: str, user: str) -> str:
        if "same" in user:
            return "PASS"
        self.n += 1
        return "PASS" if (self.n * 7919) % 13 < 6 else "no"


def test_auto_runs_run_every_case_of_an_undecided_skill_again(pytester, write_skill):
    tests = cases(6, "same ") + [
        {"id": f"d{i}", "input": f"coin {i}", "expected": {"contains": "PASS"}} for i in range(6)
    ]
    write_skill("alpha", tests, body=GOOD)
    with LoopbackServer(reply=CoinOnSome()) as server:
        model = warm_alias(pytester, server)
        # a coin in both arms: the lift straddles 0, and the look runs the coins again
        result = auto(pytester, model, "--upskill-min-lift", "0", "--upskill-report", "r.json")
    data = report(pytester)["results"][0]
    runs = {c["case"]: (len(c["baseline"]), len(c["with_skill"])) for c in data["cases"]}
    # a coin in both arms never decides "lift at least 0": every case runs every time, those that agreed
    # too (choosing the cases by their outcomes biased the verdict in the study: benchmarks/sequential.py)
    assert set(runs.values()) == {(4, 4)}
    asked = [json.dumps(r.body) for r in server.requests]
    assert sum("same question" in a for a in asked) == 6 * 2 * 4
    result.stdout.fnmatch_lines(
        ["  alpha × warm: 4 of 4 run(s) used, read at 97.11%; 0 trial(s) not needed", "INCONCLUSIVE alpha × warm*"]
    )


def test_the_plan_of_auto_runs_says_its_counts_are_the_most(pytester, write_skill, server):
    write_skill("alpha", cases(5), body=GOOD)
    model = warm_alias(pytester, server)
    planned = pytester.runpytest("skills", "--upskill-models", model, "--upskill-runs", "auto", "--upskill-plan")
    planned.stdout.fnmatch_lines(
        ["warm * 40 * 40 *", "--upskill-runs auto: these are the most, 4 run(s) per case; a skill × model stops*"]
    )
    assert server.requests == []


def test_auto_runs_give_a_model_at_temperature_0_one_run_and_say_so(pytester, write_skill, server):
    write_skill("alpha", cases(4), body=GOOD)
    result = upskill(pytester, server, "--upskill-runs", "auto", "--upskill-min-lift", "0.3")
    assert len(server.requests) == 8
    result.stdout.fnmatch_lines(
        ["  openai:m@*: temperature 0, one run: a deterministic model repeats its answer, so extra runs are skipped"]
    )


def test_auto_runs_with_xdist_keep_a_skill_and_model_on_one_worker(pytester, write_skill, server):
    for k in range(3):
        write_skill(f"s{k}", cases(12, f"s{k} "), body=GOOD)
    model = warm_alias(pytester, server)
    result = auto(pytester, model, "-n", "2", "--upskill-min-lift", "0.3")
    result.stdout.fnmatch_lines(["  s0 × warm: 1 of 4 run(s) used, read at 99.92%; 72 trial(s) not needed"])
    assert sum("question" in json.dumps(r.body) for r in server.requests) == 3 * 12 * 2
    assert result.ret == pytest.ExitCode.OK


# ------------------------------------------------------------------------------ model drift


def test_runs_says_when_a_new_model_version_makes_the_skill_redundant_or_harmful(pytester, write_skill):
    import sys

    write_skill("alpha", cases(12), body=GOOD)
    replies = {
        "v1": follows_the_skill,  # the skill lifts v1 from 0% to 100%
        "v2": lambda system, user: "PASS",  # v2 passes without it
        "v3": lambda system, user: "no" if GOOD in system else "PASS",  # v3 does worse with it
    }

    def by_version(system: str, user: str) -> str:
        return replies[server.version](system, user)

    with LoopbackServer(reply=by_version) as server:
        for version in ("v1", "v2", "v1", "v3"):
            server.version = version
            pytester.makefile(
                ".toml",
                pyproject=f'[tool.upskill.models.haiku]\nprovider = "openai"\nmodel = "{version}"\n'
                f'base_url = "{server.openai_base_url}"\n',
            )
            pytester.runpytest("skills", "--upskill-models", "haiku", "--upskill-history", "hist")
    done = subprocess.run(
        [sys.executable, "-m", "pytest_upskill", "runs", "hist"], cwd=pytester.path, capture_output=True, text=True
    )
    out = done.stdout
    assert "model drift: a model's version changed between runs on the same cases" in out
    assert (
        "  alpha × haiku: openai:v1 → openai:v2: lift +100% [+66%, +100%] → +0% [-24%, +24%]: REDUNDANT now: the new "
        "model does as well without the skill" in out
    )
    assert "  alpha × haiku: openai:v2 → openai:v1: lift +0% [-24%, +24%] → +100% [+66%, +100%]: holds" in out
    assert "  alpha × haiku: openai:v1 → openai:v3: lift +100% [+66%, +100%] → -100% [-100%, -66%]: HARMFUL now" in out


def test_auto_runs_stop_adding_runs_when_the_budget_is_spent(pytester, write_skill):
    tests = [{"id": f"d{i}", "input": f"coin {i}", "expected": {"contains": "PASS"}} for i in range(12)]
    write_skill("alpha", tests, body=GOOD)
    with LoopbackServer(reply=CoinOnSome()) as server:
        (pytester.path / "pyproject.toml").write_text(
            f'[tool.upskill.models.priced]\nprovider = "openai"\nmodel = "m"\nbase_url = "{server.openai_base_url}"\n'
            "temperature = 1.0\nmax_tokens = 10\ninput_price = 0\noutput_price = 100000.0\n"  # $0.1 per output token
        )
        result = auto(
            pytester, "priced", "--upskill-min-lift", "0", "--upskill-max-cost", "3", "--upskill-concurrency", "1"
        )
        sent = sum("coin" in json.dumps(r.body) for r in server.requests)
    assert 24 <= sent < 48  # run 1 whole, run 2 cut by the budget, nothing after
    result.stdout.fnmatch_lines(
        [
            "auto runs: *",
            "  alpha × priced: 2 of 4 run(s) used, read at 99.45%; 48 trial(s) not needed",
            "budget: stopped sending at $* spent of $3*",
        ]
    )


def test_a_merge_of_auto_run_shards_reads_each_verdict_at_the_level_of_its_stopping_look(pytester, write_skill, server):
    import sys

    for k in range(2):
        write_skill(f"s{k}", cases(20, f"s{k} "), body=GOOD)
    model = warm_alias(pytester, server)
    for shard in ("1/2", "2/2"):
        auto(
            pytester,
            model,
            "--upskill-min-lift",
            "0.3",
            "--upskill-shard",
            shard,
            "--upskill-report",
            f"{shard[0]}.json",
        )
    merged = pytester.run(
        sys.executable, "-m", "pytest_upskill", "merge", "1.json", "2.json", "--upskill-min-lift", "0.3"
    )
    merged.stdout.fnmatch_lines(["PASS         s0 × warm: lift +100% ?99.92% CI *", "PASS         s1 × warm: *99.92%*"])
    assert merged.ret == pytest.ExitCode.OK
