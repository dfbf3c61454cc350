"""The response cache: a second identical run sends nothing, an edited SKILL.md re-sends only its
with-skill trials, replay never calls a model, a broken entry is re-fetched, no key is stored."""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_upskill.testing import LoopbackServer

BODY = "The alpha code is ZETA-42."


def cases(skill: str) -> list[dict]:
    return [{"id": f"c{i}", "input": f"{skill} question {i}?", "expected": {"contains": "zeta-42"}} for i in range(3)]


@pytest.fixture
def two_skills(write_skill):
    write_skill("alpha-facts", cases("alpha"), body=BODY)
    return write_skill("beta-rules", cases("beta"), body="Beta: ZETA-42 too.")


def test_identical_requests_share_one_entry_across_skills(pytester, write_skill, model_server):
    # two skills with the same inputs send the same baseline request: it is asked once
    write_skill("alpha-facts", cases("same"), body=BODY)
    write_skill("beta-rules", cases("same"), body="Beta: ZETA-42 too.")
    run(pytester, model_server, "--upskill-concurrency", "1")
    assert len(model_server.requests) == 9
    assert json.loads((pytester.path / "r.json").read_text())["cached"] == 3


def run(pytester, server, *args):
    return pytester.runpytest(
        "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-report", "r.json", *args
    )


def test_a_second_identical_run_sends_no_request(pytester, two_skills, model_server):
    first = run(pytester, model_server)
    assert len(model_server.requests) == 12
    first_report = json.loads((pytester.path / "r.json").read_text())
    second = run(pytester, model_server)
    assert len(model_server.requests) == 12
    second.stdout.fnmatch_lines(["12 of 12 trial(s) came from the cache (*.upskill-cache)"])
    second_report = json.loads((pytester.path / "r.json").read_text())
    assert second_report["cached"] == 12 and first_report["cached"] == 0
    assert first_report["results"] == second_report["results"]  # the same figures, tokens included
    assert first.ret == second.ret


def test_editing_one_skill_resends_only_its_with_skill_trials(pytester, two_skills, model_server):
    run(pytester, model_server)
    skill_md = two_skills / "SKILL.md"
    skill_md.write_text(skill_md.read_text().replace("Beta: ZETA-42 too.", "Beta, edited: ZETA-42."))
    run(pytester, model_server)
    resent = model_server.requests[12:]
    assert len(resent) == 3
    assert all('<skill name=\\"beta-rules\\">' in json.dumps(r.body) for r in resent)


def test_replay_on_an_empty_cache_fails_without_a_request(pytester, two_skills, model_server):
    result = run(pytester, model_server, "--upskill-cache", "replay")
    assert model_server.requests == []
    result.stdout.fnmatch_lines(
        [
            "*not scored (not_cached): openai:m@*: no cached response in *.upskill-cache and --upskill-cache replay "
            "never calls a model; record it with --upskill-cache rw*"
        ]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert json.loads((pytester.path / "r.json").read_text())["errors"] == 12


def test_replay_after_recording_needs_no_server(pytester, two_skills):
    with LoopbackServer() as server:
        url = server.openai_base_url
        run(pytester, server)
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{url}", "--upskill-cache", "replay")
    result.assert_outcomes(passed=6, xfailed=6)


def test_cache_off_always_calls_the_model(pytester, two_skills, model_server):
    run(pytester, model_server, "--upskill-cache", "off")
    run(pytester, model_server, "--upskill-cache", "off")
    assert len(model_server.requests) == 24
    assert not (pytester.path / ".upskill-cache").exists()


def test_a_corrupted_entry_is_reported_and_fetched_again(pytester, two_skills, model_server):
    run(pytester, model_server)
    entries = sorted((pytester.path / ".upskill-cache").rglob("*.json"))
    assert len(entries) == 12
    entries[0].write_text(entries[0].read_text()[:20])  # truncated
    data = json.loads(entries[1].read_text())
    data["completion"]["text"] = "a wrong answer"  # tampered: the checksum no longer matches
    entries[1].write_text(json.dumps(data))
    result = run(pytester, model_server)
    assert len(model_server.requests) == 14
    result.stdout.fnmatch_lines(["cache warning: *: corrupt entry ignored and re-fetched*"] * 1)
    assert "a wrong answer" not in result.stdout.str()
    assert json.loads(entries[1].read_text())["completion"]["text"] != "a wrong answer"


def test_the_cache_dir_option_and_its_gitignore(pytester, two_skills, model_server):
    run(pytester, model_server, "--upskill-cache-dir", "fixtures/upskill")
    folder = pytester.path / "fixtures" / "upskill"
    assert len(list(folder.rglob("*.json"))) == 12
    assert (folder / ".gitignore").read_text().splitlines()[-1] == "*"


def test_no_key_reaches_the_cache(pytester, two_skills, model_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-cache-0042")
    run(pytester, model_server)
    for path in (pytester.path / ".upskill-cache").rglob("*"):
        if path.is_file():
            assert "sk-canary-cache-0042" not in path.read_text()


def test_several_xdist_workers_share_one_cache(pytester, two_skills, model_server):
    run(pytester, model_server, "-n", "3")
    assert len(model_server.requests) == 12
    run(pytester, model_server, "-n", "3")
    assert len(model_server.requests) == 12
    assert json.loads((pytester.path / "r.json").read_text())["cached"] == 12


def test_a_misplaced_entry_is_never_served_as_another_requests_answer(pytester, two_skills, model_server):
    run(pytester, model_server)
    a, b = sorted((pytester.path / ".upskill-cache").rglob("*.json"))[:2]
    b.write_bytes(a.read_bytes())  # a valid entry, under the wrong key
    result = run(pytester, model_server)
    result.stdout.fnmatch_lines(
        [f"cache warning: *{b.name}: corrupt entry ignored and re-fetched (entry belongs to another key)*"]
    )
    assert len(model_server.requests) == 13


def test_a_cache_warning_in_an_xdist_worker_reaches_the_summary(pytester, two_skills, model_server):
    run(pytester, model_server)
    entry = sorted((pytester.path / ".upskill-cache").rglob("*.json"))[3]
    entry.write_text("{ truncated")
    result = run(pytester, model_server, "-n", "2")
    result.stdout.fnmatch_lines([f"cache warning: *{entry.name}: corrupt entry ignored and re-fetched*"])
    assert json.loads((pytester.path / "r.json").read_text())["cache_problems"][0].endswith(
        "re-fetched (Invalid JSON: key must be a string at line 1 column 3)"
    )


def _hammer(root: str, worker: int) -> list[str]:
    """One of several processes writing and reading the same keys at once."""
    from pytest_upskill.engine.cache import ResponseCache
    from pytest_upskill.engine.providers.base import Completion

    cache, wrong = ResponseCache(Path(root)), []
    for i in range(300):
        key = f"{i % 40:064x}"
        cache.put(
            key, Completion(f"answer {i % 40} " + "x" * 5000, i % 40, 7)
        )  # every writer writes the same answer per key
        got = cache.get(f"{(i * 7) % 40:064x}")
        if got is not None and got.text != f"answer {(i * 7) % 40} " + "x" * 5000:
            wrong.append(got.text[:20])
    return wrong + [f"{p.path}: {p.reason}" for p in cache.problems]


def test_concurrent_writers_in_several_processes_never_expose_a_partial_entry(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(_hammer, [(str(tmp_path), w) for w in range(4)])
    assert results == [[], [], [], []]
    assert len(list(tmp_path.rglob("*.json"))) == 40 and not list(tmp_path.rglob(".tmp-*"))


def test_a_writer_killed_mid_write_leaves_no_entry_and_the_answer_is_fetched_again(pytester, two_skills, model_server):
    from pytest_upskill.engine.cache import ResponseCache

    run(pytester, model_server)
    root = pytester.path / ".upskill-cache"
    victim = sorted(root.rglob("*.json"))[0]
    key = victim.stem
    victim.unlink()
    # a process writing a large entry for that key, killed while it writes
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys; from pathlib import Path; from pytest_upskill.engine.cache import ResponseCache; "
                "from pytest_upskill.engine.providers.base import Completion; "
                f"ResponseCache(Path({str(root)!r})).put({key!r}, Completion('y' * 400_000_000, 1, 1))"
            ),
        ]
    )
    deadline = time.monotonic() + 60
    while not list(victim.parent.glob(".tmp-*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert (
        list(victim.parent.glob(".tmp-*")) and not victim.exists()
    )  # killed mid-write: a stray temporary file, no entry
    assert ResponseCache(root).get(key) is None
    result = run(pytester, model_server)
    assert len(model_server.requests) == 13 and victim.exists()
    assert "cache warning" not in result.stdout.str()
