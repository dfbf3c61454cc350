"""Hostile model output, hostile files and bad settings (issue 13): each attack that once worked is
a test here. Model output reaches the plugin through a loopback server that answers what the
attack needs; the sandbox tests run the attacker's program directly."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_upskill import sandbox
from pytest_upskill.sandbox import Limits, Workspace


def _alive(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("ending", ["returns", "hangs"])
def test_processes_that_setsid_and_fork_away_do_not_outlive_the_sandbox(tmp_path, ending):
    marker = f"313.{int(time.time() * 1000) % 100000}"
    code = textwrap.dedent(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execvp("sleep", ["sleep", "{marker}"])
            os._exit(0)
        time.sleep(0.5)
        {"time.sleep(60)" if ending == "hangs" else "print('done')"}
    """)
    with Workspace() as ws:
        ws.write("main.py", code)
        result = sandbox.run([sys.executable, "main.py"], ws.root, Limits(seconds=3))
    assert (result.limit == "time") == (ending == "hangs"), result.stderr
    deadline = time.monotonic() + 2
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(marker)


def test_sandboxed_programs_have_no_network_at_all_udp_included(model_server):
    port = model_server.url.rsplit(":", 1)[1]
    with Workspace() as ws:
        ws.write("main.py", textwrap.dedent(f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.sendto(b"x", ("127.0.0.1", {port}))
                print("sent")
            except OSError as exc:
                print("unreachable", exc.errno)
        """))
        result = sandbox.run([sys.executable, "main.py"], ws.root)
    assert result.stdout.startswith("unreachable"), result.stdout + result.stderr


def test_commands_the_model_writes_are_not_found_on_path(tmp_path, monkeypatch):
    with Workspace() as ws:
        fake = ws.root / "bin"
        fake.mkdir()
        (fake / "nvcc").write_text("#!/bin/sh\necho fake\n")
        (fake / "nvcc").chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}:.:bin:{Path(sys.executable).parent}:/usr/bin:/bin")
        assert sandbox.safe_path(ws.root).split(":")[0] == str(Path(sys.executable).parent)
        result = sandbox.run(["sh", "-c", "command -v nvcc || echo none"], ws.root)
    assert str(fake) not in result.stdout


# ------------------------------------------------------------------------ files the model writes

WRONG_ADD = "def add(a, b):\n    return a - b"
CONFTEST_ALL_PASS = '''import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
'''
FAKE_PYTEST = "import sys\nsys.exit(0)\n"
ATTACKS = {
    "conftest.py rewrites reports": {"conftest.py": CONFTEST_ALL_PASS},
    "pytest.ini collects only": {"pytest.ini": "[pytest]\naddopts = --collect-only -p no:terminal\n"},
    "tox.ini collects only": {"tox.ini": "[pytest]\naddopts = --collect-only\n"},
    "setup.cfg collects only": {"setup.cfg": "[tool:pytest]\naddopts = --collect-only\n"},
    "pyproject.toml collects only": {"pyproject.toml": "[tool.pytest.ini_options]\naddopts = '--collect-only'\n"},
    "pytest.py shadows pytest": {"pytest.py": FAKE_PYTEST},
    "sitecustomize.py exits early": {"sitecustomize.py": FAKE_PYTEST},
    "the code under test exits 0 on import": {"calc.py": "import os\nos._exit(0)\n"},
}


def _skill_writing(files: dict[str, str]) -> str:
    return "\n".join(f"Write this file:\n\n```{name}\n{text}\n```\n" for name, text in files.items())


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_files_the_model_writes_cannot_make_a_wrong_solution_pass_python_tests(pytester, write_skill, model_server, attack):
    files = {"calc.py": WRONG_ADD, **ATTACKS[attack]}
    folder = write_skill("cheat", [{"input": "w", "expected": {"contains": []}, "output_file": "calc.py", "validator": "python_tests",
                                    "validator_config": {"test_file": "checks/test_calc.py"}}], body=_skill_writing(files))
    (folder / "checks").mkdir()
    (folder / "checks" / "test_calc.py").write_text("from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n")
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}", "--upskill-report", "r.json")
    import json

    with_skill = json.loads((pytester.path / "r.json").read_text())["results"][0]["with_skill"]
    assert with_skill["failed"] == 1 and with_skill["passed"] == 0, result.stdout.str()[-3000:]


# ------------------------------------------------------------------------------- hostile files


def test_twenty_thousand_cases_in_one_file_collect_with_their_lines(pytester, write_skill):
    cases = [{"id": f"c{i}", "input": f"q{i}", "expected": {"contains": "x"}} for i in range(20_000)]
    cases[-1]["expected"] = {"no_such_check": 1}  # the error names the last case's line
    write_skill("big", {"tests": cases})
    # the old line lookup scanned from the start for every case: this did not finish in 120 s
    result = pytester.runpytest_subprocess("skills", "--collect-only", "-q", "--upskill-models", "openai:m@http://127.0.0.1:9/v1",
                                           timeout=120)
    expected_line = 3 + 19_999 * 7 + 4  # {"tests": [ then 7 lines per case; the check is on the case's 5th line
    result.stdout.fnmatch_lines([f"*skill_meta.json:{expected_line}*unknown expected check 'no_such_check'*"])


# ---------------------------------------------------------------------------- hostile responses


def _openai_body(content, usage: dict) -> bytes:
    import json

    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                       "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
                       "usage": usage}).encode()


@pytest.mark.parametrize("usage, shown", [
    ({"prompt_tokens": 3, "completion_tokens": "abc"}, "'abc'"),
    ({"prompt_tokens": -5, "completion_tokens": 2}, "'-5'"),
    ({"prompt_tokens": 3, "completion_tokens": 10**30}, "'1000000000000000000000000000000'"),
])
def test_a_token_count_that_is_not_a_count_is_an_error_of_its_own_kind(pytester, write_skill, usage, shown):
    import json

    from pytest_upskill.loopback import Fault, LoopbackServer

    write_skill("s", [{"id": f"c{i}", "input": f"q{i}", "expected": {"contains": "x"}} for i in range(3)], body="Say x.")
    bad = Fault(200, _openai_body("x", usage), {"content-type": "application/json"})
    with LoopbackServer(fault=lambda n, body: bad) as server:
        result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-retries", "0",
                                    "--upskill-report", "r.json", "--upskill-max-errors", "10")
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)  # not INTERNALERROR: the run went on
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["errors_by_model"][next(iter(report["errors_by_model"]))] == {"bad_usage": 6}  # every trial, each an error
    result.stdout.fnmatch_lines([f"*the response's usage.*_tokens is {shown}, not a token count*"])


def test_a_reply_with_a_lone_surrogate_is_cached_and_reported(pytester, write_skill):
    import json

    from pytest_upskill.loopback import Fault, LoopbackServer

    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Say x.")
    body = b'{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"finish_reason":"stop",' \
           b'"message":{"role":"assistant","content":"x \\udcff y"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}'
    with LoopbackServer(fault=lambda n, b: Fault(200, body, {"content-type": "application/json"})) as server:
        first = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-report", "r.json",
                                   "--junitxml", "j.xml")
        replay = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-cache", "replay")
    first.assert_outcomes(passed=2)  # with --upskill-cache off this always passed; the cache write made it an internal error
    assert json.loads((pytester.path / "r.json").read_text())["errors"] == 0
    assert replay.ret == first.ret and "1 of 2 trial(s) came from the cache" not in replay.stdout.str()
    replay.stdout.fnmatch_lines(["2 of 2 trial(s) came from the cache*"])


def test_pytest_help_lists_the_plugins_options(pytester):
    """argparse %-formats help texts: an unescaped % crashed `pytest --help` wherever the plugin was installed."""
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--upskill-min-lift*", "*judged on the 95% interval*"])


# ------------------------------------------------------------------ checks and validators on model output

CATASTROPHIC = "^(a+)+$"  # against 40 a's and a "!", Python's re backtracks for hours


def _junit_trials(path: Path) -> dict[tuple[str, str], dict]:
    """What JUnit says of each trial, by (case, arm): its upskill.* properties and its message."""
    import xml.etree.ElementTree as ET

    found = {}
    for case in ET.parse(path).iter("testcase"):
        props = {p.get("name")[len("upskill."):]: p.get("value") for p in case.iter("property") if p.get("name", "").startswith("upskill.")}
        outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        props["message"] = "" if outcome is None else (outcome.get("message") or "") + "\n" + (outcome.text or "")
        found[props["case"], props["arm"]] = props
    return found


def _reply_always(text: str):
    from pytest_upskill.loopback import LoopbackServer

    return LoopbackServer(reply=lambda system, user: text)


def test_a_check_that_backtracks_forever_is_stopped_at_the_check_time_limit(pytester, write_skill):
    import json

    write_skill("s", [
        {"id": "schema", "input": "q", "expected": {"json_schema": {"type": "string", "pattern": CATASTROPHIC}}},
        {"id": "regex", "input": "q", "expected": {"regex": CATASTROPHIC.lstrip("^")}},  # the output starts with a quote
        {"id": "plain", "input": "q", "expected": {"contains": "aaa"}},
    ], body="Answer.")
    with _reply_always(json.dumps("a" * 40 + "!")) as server:
        # jsonschema's pattern ran on the event loop without a limit: this never ended
        result = pytester.runpytest_subprocess("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-check-timeout",
                                               "2", "--junitxml", "j.xml", "-p", "no:cacheprovider", timeout=120)
    trials = _junit_trials(pytester.path / "j.xml")
    for case in ("schema", "regex"):
        for arm in ("baseline", "with_skill"):
            assert trials[case, arm]["error_kind"] == "check_error", trials[case, arm]
            assert "ran longer than the check time limit (2 s, --upskill-check-timeout)" in trials[case, arm]["message"]
    assert trials["plain", "with_skill"]["passed"] == "True"  # the other trials were scored as usual
    result.stdout.fnmatch_lines(["*ran longer than the check time limit (2 s*"])


def test_a_yaml_bomb_the_model_writes_fails_quickly_with_a_short_message(pytester, write_skill, model_server):
    import json

    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    bomb = "\n".join(levels)
    write_skill("s", [{"id": "bomb", "input": "w", "expected": {"contains": []}, "output_file": "config.yaml", "validator": "yaml_valid",
                       "validator_config": {"required_values": {"i": "ok"}}}], body=_skill_writing({"config.yaml": bomb}))
    # the failure message serialised 9**9 items: over 120 s and 2.1 GB
    result = pytester.runpytest_subprocess("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}", "--junitxml",
                                           "j.xml", "-p", "no:cacheprovider", timeout=90)
    trial = _junit_trials(pytester.path / "j.xml")["bomb", "with_skill"]
    assert trial["passed"] == "False" and "error_kind" not in trial, trial
    assert trial["message"].startswith("config.yaml: i is [[[[...]") and len(trial["message"].split("\n")[0]) < 400, trial["message"]
    assert result.ret == pytest.ExitCode.TESTS_FAILED


class _Silent:
    """A TCP listener that accepts and never answers; counts the connections it got."""

    def __init__(self):
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.connections.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()


def test_a_remote_ref_in_a_json_schema_check_is_a_collection_error(pytester, write_skill):
    silent = _Silent()
    try:
        write_skill("s", [{"id": "r", "input": "q", "expected": {"json_schema": {"$ref": f"http://127.0.0.1:{silent.port}/s.json"}}}])
        result = pytester.runpytest("skills", "--collect-only", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    finally:
        silent.close()
    result.stdout.fnmatch_lines(["*skill_meta.json:*expected 'json_schema': $ref 'http://127.0.0.1:*/s.json' points outside the schema, "
                                 "and a check never reaches the network*"])
    assert silent.connections == []


def test_a_ref_that_resolves_to_a_remote_document_is_never_fetched(pytester, write_skill):
    import json

    silent = _Silent()
    try:
        schema = {"$id": f"http://127.0.0.1:{silent.port}/root.json", "properties": {"x": {"$ref": "other.json"}}}
        write_skill("s", [{"id": "r", "input": "q", "expected": {"json_schema": schema}}])
        with _reply_always('{"x": 1}') as server:  # the old check fetched other.json from a host that never answers: a hang
            pytester.runpytest_subprocess("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--junitxml", "j.xml",
                                          "-p", "no:cacheprovider", timeout=60)
    finally:
        silent.close()
    trial = _junit_trials(pytester.path / "j.xml")["r", "with_skill"]
    assert trial["error_kind"] == "check_error"
    assert "is not in the schema, and remote references are never fetched" in trial["message"], trial["message"]
    assert silent.connections == []


def test_check_workers_cannot_reach_the_network_and_have_a_memory_limit():
    import asyncio
    import socket

    from pytest_upskill.checkpool import CheckCrashed, CheckPool, CheckRaised

    silent = _Silent()

    async def attempts():
        pool = CheckPool(1)
        try:
            with pytest.raises(CheckRaised) as network:
                await pool.run(10, socket.create_connection, ("127.0.0.1", silent.port), 3)
            with pytest.raises(CheckCrashed, match="memory limit"):
                await pool.run(10, bytearray, 8 << 30)
            assert (await pool.run(10, bool, 1)).passed  # a fresh worker took over
            return network.value
        finally:
            await pool.close()

    try:
        error = asyncio.run(attempts())
    finally:
        silent.close()
    assert error.kind in ("OSError", "PermissionError", "ConnectionRefusedError"), error
    assert silent.connections == []
