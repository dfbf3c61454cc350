"""Scale: -n hands each worker its whole share at once and keeps a skill × model together; shards
of a suite across CI jobs merge into the report of one run; xdist's remote workers (execnet
socket servers) leave the report and the cache complete."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time

import pytest

from pytest_upskill.testing import LoopbackServer


def mostly_passing(s: int, c: int) -> dict:  # case c0 fails with the skill
    return {"contains": f"z{s}" if c % 4 else "x"}


def run_xdist(pytester, server, *args: str):
    """The suite against ``server``'s OpenAI endpoint with -n 2 and no cache."""
    models = f"openai:m@{server.openai_base_url}"
    return pytester.runpytest("skills", "--upskill-models", models, "-n", "2", "--upskill-cache", "off", *args)


WORKER_LINE = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] \w+ (skills/[^:]+)::\S+\[(\S+)-(?:baseline|with_skill)\]", re.M)


def test_xdist_keeps_each_skill_and_model_on_one_worker_and_runs_every_trial_once(pytester, code_suite):
    code_suite(2, 6, mostly_passing)
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


def test_xdist_sends_each_worker_its_whole_share_at_once(pytester, code_suite):
    """Each worker starts every trial it was given together: with a second of latency and a high
    bound, one worker's share is all in flight at once (xdist's own load scheduler would have given
    it a quarter first)."""
    code_suite(1, 20, mostly_passing)
    with LoopbackServer(latency_s=1.0) as server:
        run_xdist(pytester, server, "--upskill-concurrency", "64")
    assert len(server.requests) == 40
    assert server.max_in_flight >= 20


def test_a_worker_sends_the_item_it_runs_first_and_reports_as_answers_come(pytester, code_suite):
    """xdist takes the item a worker runs, and the one after it, off the worker's queue: those two
    went to the back of the model's queue, behind the whole share, and the worker reported nothing
    until its share was done. With one request in flight per worker, each worker's requests go out
    in the order of its items."""
    code_suite(1, 10, mostly_passing)
    with LoopbackServer(latency_s=0.05) as server:
        run_xdist(pytester, server, "--upskill-concurrency", "1")
    sent = [int(re.findall(r"case (\d+):", json.dumps(r.body))[0]) for r in server.requests]
    assert len(sent) == 20
    for share in (range(5), range(5, 10)):  # the cases of gw0's items, of gw1's
        order = [case for case in sent if case in share]
        assert order == sorted(order), order  # 0 0 1 1 2 2 ...: the order of the items


def test_another_dist_mode_the_user_chose_is_left_to_xdist(pytester, code_suite):
    code_suite(1, 3, mostly_passing)
    with LoopbackServer() as server:
        result = run_xdist(pytester, server, "--dist", "loadscope", "-v")
    result.stdout.fnmatch_lines(["*scheduling tests via LoadScopeScheduling*"])
    assert len(server.requests) == 6


def test_xdist_reports_its_scheduler(pytester, code_suite):
    code_suite(1, 2, mostly_passing)
    with LoopbackServer() as server:
        result = run_xdist(pytester, server, "-v")
    result.stdout.fnmatch_lines(["*scheduling tests via UpskillScheduling*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # case c0 fails with the skill (see mostly_passing)


# ------------------------------------------------------------------ shards across CI jobs, and their merge


def _comparable(data: dict) -> dict:
    data = dict(data)
    run = data.pop("run")
    data.pop("throttling", None)  # how each process's bound moved: timing, not results
    return {**data, "run": {k: v for k, v in run.items() if k not in ("time",)}}


def merge(pytester, *args: str):
    return pytester.run(sys.executable, "-m", "pytest_upskill", "merge", *args)


def test_shards_run_each_skill_and_model_whole_and_merge_into_the_report_of_one_run(pytester, code_suite):
    code_suite(3, 5, mostly_passing)
    with LoopbackServer(prompt_cache=False) as server:
        models = f"openai:m@{server.openai_base_url},anthropic:c@{server.anthropic_base_url}"
        common = ["skills", "--upskill-models", models, "--upskill-cache", "off", "--upskill-min-lift", "0.7"]
        one = pytester.runpytest_subprocess(*common, "--upskill-report=one.json", "--upskill-markdown=one.md")
        shards = [
            pytester.runpytest_subprocess(*common, "--upskill-shard", f"{k}/3", f"--upskill-report=shard-{k}.json")
            for k in (1, 2, 3)
        ]
    reports = [json.loads((pytester.path / f"shard-{k}.json").read_text()) for k in (1, 2, 3)]
    groups = [{(r["skill"], r["model"]) for r in report["results"]} for report in reports]
    assert sorted(len(g) for g in groups) == [2, 2, 2]  # 6 skill × model of 10 trials each, balanced
    assert set().union(*groups) == {(f"skill-{s}", m) for s in range(3) for m in models.split(",")}
    assert sum(report["trials"] for report in reports) == 60 == len(server.requests) / 2
    assert [s.ret for s in shards] == [pytest.ExitCode.TESTS_FAILED] * 3  # each has its skills' verdicts

    merged = merge(
        pytester, "shard-1.json", "shard-2.json", "shard-3.json", "--upskill-min-lift", "0.7",
        "--upskill-report=merged.json", "--upskill-markdown=merged.md", "--upskill-html=merged.html",
    )  # fmt: skip
    assert merged.ret == one.ret == pytest.ExitCode.TESTS_FAILED
    one_report, merged_report = (json.loads((pytester.path / n).read_text()) for n in ("one.json", "merged.json"))
    assert _comparable(merged_report) == _comparable(one_report)
    assert (pytester.path / "merged.md").read_text() == (pytester.path / "one.md").read_text()
    assert "skill-2" in (pytester.path / "merged.html").read_text()
    merged.stdout.fnmatch_lines(
        [
            "upskill: merging 3 shard reports (shard-1.json, shard-2.json, shard-3.json); nothing is sent",
            "*upskill: lift per skill × model*",
            "60 trial(s) from 3 shard reports",
            "*upskill: gates*",
            "upskill: exit status 1 because *",
        ]
    )


def test_merge_refuses_an_incomplete_or_doubled_set_of_shards_naming_the_file(pytester, code_suite):
    code_suite(2, 2, mostly_passing)
    with LoopbackServer() as server:
        for k in (1, 2):
            pytester.runpytest_subprocess(
                "skills", "--upskill-models", f"openai:m@{server.openai_base_url}",
                "--upskill-shard", f"{k}/2", f"--upskill-report=s{k}.json",
            )  # fmt: skip
    (pytester.path / "junk.json").write_text("{not json")
    for args, message in (
        (["s1.json"], "*--upskill-merge: no report of shard 2/2: merge the reports of every shard*"),
        (["s1.json", "s1.json"], "*s1.json and *s1.json are both shard 1/2; pass each shard's report once*"),
        (["s1.json", "junk.json"], "*junk.json: not a report written by --upskill-report*"),
        (["s1.json", "absent.json"], "*absent.json: cannot be read: No such file or directory*"),
    ):
        result = merge(pytester, *args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR, args
        result.stderr.fnmatch_lines([message])


def test_a_bad_shard_is_a_usage_error_saying_what_it_must_be(pytester, code_suite):
    code_suite(1, 1, mostly_passing)
    result = pytester.runpytest(
        "skills", "--upskill-models", "openai:m@http://127.0.0.1:9/v1", "--upskill-shard", "3/2"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--upskill-shard must be K/N with 1 <= K <= N (this job's shard of N), e.g. 1/4, not '3/2'*"]
    )


# ------------------------------------------------------------------ xdist's remote workers (execnet)


@pytest.fixture
def socket_servers(tmp_path):
    """Two execnet socket servers on 127.0.0.1, each in a folder of its own (as two machines)."""
    import execnet.script.socketserver as script

    servers, ports = [], []
    for name in ("host-a", "host-b"):
        folder = tmp_path / name
        folder.mkdir()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        servers.append(
            subprocess.Popen(
                [sys.executable, script.__file__, f"127.0.0.1:{port}"], cwd=folder, stdout=subprocess.DEVNULL
            )
        )
        ports.append(port)
    for port in ports:  # wait until each listens
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the execnet socket server did not start"
                time.sleep(0.1)
    yield [tmp_path / "host-a", tmp_path / "host-b"], ports
    for server in servers:
        server.kill()
        server.wait()


def test_remote_workers_leave_the_report_and_the_controllers_cache_complete(pytester, code_suite, socket_servers):
    folders, ports = socket_servers
    code_suite(2, 4, mostly_passing)
    pytester.makeini("[pytest]\n")
    with LoopbackServer() as server:
        model = f"openai:m@{server.openai_base_url}"
        remote = pytester.runpytest_subprocess(
            str(pytester.path / "skills"), "--upskill-models", model,
            *(arg for port in ports for arg in ("--tx", f"socket=127.0.0.1:{port}")),
            "--dist", "load", "--rsyncdir", str(pytester.path), "--upskill-report=remote.json",
            "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning",
        )  # fmt: skip
        sent = len(server.requests)
        remote.stdout.fnmatch_lines(["*2 workers [[]16 items[]]*"])
        report = json.loads((pytester.path / "remote.json").read_text())
        assert report["trials"] == 16 and report["errors"] == 0 and report["missing"] == []
        # the workers ran in their own folders and wrote their caches there ...
        assert all(list(folder.rglob(".upskill-cache")) for folder in folders)
        # ... and handed every entry to the controller's cache: the same run replays here, sending nothing
        replay = pytester.runpytest_subprocess(
            "skills", "--upskill-models", model, "--upskill-cache", "replay", "--upskill-report=replay.json"
        )
        assert len(server.requests) == sent
    replayed = json.loads((pytester.path / "replay.json").read_text())
    assert replayed["errors"] == 0 and replayed["cached"] == 16
    replay.stdout.fnmatch_lines(["16 of 16 trial(s) came from the cache*"])


@pytest.mark.parametrize(
    ("workers", "cores", "check_workers"), [(None, 2, 2), (None, 1, 2), ("2", 2, 1), ("4", 2, 1), ("2", 8, 4)]
)
def test_each_process_keeps_its_share_of_the_cores_for_check_workers(monkeypatch, workers, cores, check_workers):
    """-n N on a machine's cores: each xdist worker keeps at most its share of them for confined
    check workers (a Python start-up each), one process at least two (a slow check holds one)."""
    import os

    from pytest_upskill.scoring.checkpool import CheckPool

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    if workers is None:
        monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    else:
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", workers)
    assert CheckPool().size == check_workers
