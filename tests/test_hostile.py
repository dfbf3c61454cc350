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
