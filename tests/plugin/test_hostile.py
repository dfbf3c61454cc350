"""Hostile model output, hostile files and bad settings (issue 13): each attack that once worked is
a test here. Model output reaches the plugin through a loopback server that answers what the
attack needs; the sandbox tests run the attacker's program directly."""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_upskill.scoring import sandbox
from pytest_upskill.scoring.sandbox import Limits, Workspace


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
        ws.write(
            "main.py",
            textwrap.dedent(f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.sendto(b"x", ("127.0.0.1", {port}))
                print("sent")
            except OSError as exc:
                print("unreachable", exc.errno)
        """),
        )
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
CONFTEST_ALL_PASS = """import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.outcome = "passed"
"""
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
def test_files_the_model_writes_cannot_make_a_wrong_solution_pass_python_tests(
    pytester, write_skill, model_server, attack
):
    files = {"calc.py": WRONG_ADD, **ATTACKS[attack]}
    folder = write_skill(
        "cheat",
        [
            {
                "input": "w",
                "expected": {"contains": []},
                "output_file": "calc.py",
                "validator": "python_tests",
                "validator_config": {"test_file": "checks/test_calc.py"},
            }
        ],
        body=_skill_writing(files),
    )
    (folder / "checks").mkdir()
    (folder / "checks" / "test_calc.py").write_text(
        "from calc import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    )
    result = pytester.runpytest(
        "skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}", "--upskill-report", "r.json"
    )
    import json

    with_skill = json.loads((pytester.path / "r.json").read_text())["results"][0]["with_skill"]
    assert with_skill["failed"] == 1 and with_skill["passed"] == 0, result.stdout.str()[-3000:]


# ------------------------------------------------------------------------------- hostile files


@pytest.mark.slow  # 20,000 cases
def test_twenty_thousand_cases_in_one_file_collect_with_their_lines(pytester, write_skill):
    cases = [{"id": f"c{i}", "input": f"q{i}", "expected": {"contains": "x"}} for i in range(20_000)]
    cases[-1]["expected"] = {"no_such_check": 1}  # the error names the last case's line
    write_skill("big", {"tests": cases})
    # the old line lookup scanned from the start for every case: this did not finish in 120 s
    result = pytester.runpytest_subprocess(
        "skills", "--collect-only", "-q", "--upskill-models", "openai:m@http://127.0.0.1:9/v1", timeout=120
    )
    expected_line = 3 + 19_999 * 7 + 4  # {"tests": [ then 7 lines per case; the check is on the case's 5th line
    result.stdout.fnmatch_lines([f"*skill_meta.json:{expected_line}*unknown expected check 'no_such_check'*"])


# ---------------------------------------------------------------------------- hostile responses


def _openai_body(content, usage: dict) -> bytes:
    import json

    return json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": usage,
        }
    ).encode()


@pytest.mark.parametrize(
    "usage, shown",
    [
        ({"prompt_tokens": 3, "completion_tokens": "abc"}, "'abc'"),
        ({"prompt_tokens": -5, "completion_tokens": 2}, "'-5'"),
        ({"prompt_tokens": 3, "completion_tokens": 10**30}, "'1000000000000000000000000000000'"),
    ],
)
def test_a_token_count_that_is_not_a_count_is_an_error_of_its_own_kind(pytester, write_skill, usage, shown):
    import json

    from pytest_upskill.testing import Fault, LoopbackServer

    write_skill(
        "s", [{"id": f"c{i}", "input": f"q{i}", "expected": {"contains": "x"}} for i in range(3)], body="Say x."
    )
    bad = Fault(200, _openai_body("x", usage), {"content-type": "application/json"})
    with LoopbackServer(fault=lambda n, body: bad) as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-retries",
            "0",
            "--upskill-report",
            "r.json",
            "--upskill-max-errors",
            "10",
        )
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)  # not INTERNALERROR: the run went on
    report = json.loads((pytester.path / "r.json").read_text())
    assert report["errors_by_model"][next(iter(report["errors_by_model"]))] == {
        "bad_usage": 6
    }  # every trial, each an error
    result.stdout.fnmatch_lines([f"*the response's usage.*_tokens is {shown}, not a token count*"])


def test_a_reply_with_a_lone_surrogate_is_cached_and_reported(pytester, write_skill):
    import json

    from pytest_upskill.testing import Fault, LoopbackServer

    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Say x.")
    body = (
        b'{"id":"x","object":"chat.completion","created":0,"model":"m","choices":[{"index":0,"finish_reason":"stop",'
        b'"message":{"role":"assistant","content":"x \\udcff y"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}'
    )
    with LoopbackServer(fault=lambda n, b: Fault(200, body, {"content-type": "application/json"})) as server:
        first = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-report",
            "r.json",
            "--junitxml",
            "j.xml",
        )
        replay = pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-cache", "replay"
        )
    first.assert_outcomes(
        passed=2
    )  # with --upskill-cache off this always passed; the cache write made it an internal error
    assert json.loads((pytester.path / "r.json").read_text())["errors"] == 0
    assert replay.ret == first.ret and "1 of 2 trial(s) came from the cache" not in replay.stdout.str()
    replay.stdout.fnmatch_lines(["2 of 2 trial(s) came from the cache*"])


def test_pytest_help_lists_the_plugins_options(pytester):
    """argparse %-formats help texts: an unescaped % crashed `pytest --help` wherever the plugin was installed."""
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--upskill-min-lift*", "*95% interval*"])


# ------------------------------------------------------------------ checks and validators on model output

CATASTROPHIC = "^(a+)+$"  # against 40 a's and a "!", Python's re backtracks for hours


def _junit_trials(path: Path) -> dict[tuple[str, str], dict]:
    """What JUnit says of each trial, by (case, arm): its upskill.* properties and its message."""
    import xml.etree.ElementTree as ET

    found = {}
    for case in ET.parse(path).iter("testcase"):
        props = {
            p.get("name")[len("upskill.") :]: p.get("value")
            for p in case.iter("property")
            if p.get("name", "").startswith("upskill.")
        }
        outcome = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        props["message"] = "" if outcome is None else (outcome.get("message") or "") + "\n" + (outcome.text or "")
        found[props["case"], props["arm"]] = props
    return found


def _reply_always(text: str):
    from pytest_upskill.testing import LoopbackServer

    return LoopbackServer(reply=lambda system, user: text)


def test_a_check_that_backtracks_forever_is_stopped_at_the_check_time_limit(pytester, write_skill):
    import json

    write_skill(
        "s",
        [
            {"id": "schema", "input": "q", "expected": {"json_schema": {"type": "string", "pattern": CATASTROPHIC}}},
            {
                "id": "regex",
                "input": "q",
                "expected": {"regex": CATASTROPHIC.lstrip("^")},
            },  # the output starts with a quote
            {"id": "plain", "input": "q", "expected": {"contains": "aaa"}},
        ],
        body="Answer.",
    )
    with _reply_always(json.dumps("a" * 40 + "!")) as server:
        # jsonschema's pattern ran on the event loop without a limit: this never ended
        result = pytester.runpytest_subprocess(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-check-timeout",
            "2",
            "--junitxml",
            "j.xml",
            "-p",
            "no:cacheprovider",
            timeout=120,
        )
    trials = _junit_trials(pytester.path / "j.xml")
    for case in ("schema", "regex"):
        for arm in ("baseline", "with_skill"):
            assert trials[case, arm]["error_kind"] == "check_error", trials[case, arm]
            assert "ran longer than the check time limit (2 s, --upskill-check-timeout)" in trials[case, arm]["message"]
    assert trials["plain", "with_skill"]["passed"] == "True"  # the other trials were scored as usual
    result.stdout.fnmatch_lines(["*ran longer than the check time limit (2 s*"])


def test_a_yaml_bomb_the_model_writes_fails_quickly_with_a_short_message(pytester, write_skill, model_server):

    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    bomb = "\n".join(levels)
    write_skill(
        "s",
        [
            {
                "id": "bomb",
                "input": "w",
                "expected": {"contains": []},
                "output_file": "config.yaml",
                "validator": "yaml_valid",
                "validator_config": {"required_values": {"i": "ok"}},
            }
        ],
        body=_skill_writing({"config.yaml": bomb}),
    )
    # the failure message serialised 9**9 items: over 120 s and 2.1 GB
    result = pytester.runpytest_subprocess(
        "skills",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "--junitxml",
        "j.xml",
        "-p",
        "no:cacheprovider",
        timeout=90,
    )
    trial = _junit_trials(pytester.path / "j.xml")["bomb", "with_skill"]
    assert trial["passed"] == "False" and "error_kind" not in trial, trial
    assert trial["message"].startswith("config.yaml: i is [[[[...]") and len(trial["message"].split("\n")[0]) < 400, (
        trial["message"]
    )
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
        write_skill(
            "s",
            [
                {
                    "id": "r",
                    "input": "q",
                    "expected": {"json_schema": {"$ref": f"http://127.0.0.1:{silent.port}/s.json"}},
                }
            ],
        )
        result = pytester.runpytest("skills", "--collect-only", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    finally:
        silent.close()
    result.stdout.fnmatch_lines(
        [
            "*skill_meta.json:*expected 'json_schema': $ref 'http://127.0.0.1:*/s.json' points outside the schema, "
            "and a check never reaches the network*"
        ]
    )
    assert silent.connections == []


def test_a_ref_that_resolves_to_a_remote_document_is_never_fetched(pytester, write_skill):

    silent = _Silent()
    try:
        schema = {"$id": f"http://127.0.0.1:{silent.port}/root.json", "properties": {"x": {"$ref": "other.json"}}}
        write_skill("s", [{"id": "r", "input": "q", "expected": {"json_schema": schema}}])
        with _reply_always(
            '{"x": 1}'
        ) as server:  # the old check fetched other.json from a host that never answers: a hang
            pytester.runpytest_subprocess(
                "skills",
                "--upskill-models",
                f"openai:m@{server.openai_base_url}",
                "--junitxml",
                "j.xml",
                "-p",
                "no:cacheprovider",
                timeout=60,
            )
    finally:
        silent.close()
    trial = _junit_trials(pytester.path / "j.xml")["r", "with_skill"]
    assert trial["error_kind"] == "check_error"
    assert "is not in the schema, and remote references are never fetched" in trial["message"], trial["message"]
    assert silent.connections == []


def test_check_workers_cannot_reach_the_network_and_have_a_memory_limit():
    import asyncio
    import socket

    from pytest_upskill.errors import CheckCrashed, CheckRaised
    from pytest_upskill.scoring.checkpool import CheckPool

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


def _gzip(data: bytes) -> bytes:
    import gzip

    return gzip.compress(data, compresslevel=9)


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_response_body_over_the_limit_is_an_error_of_its_own_kind(pytester, write_skill, encoding):

    from pytest_upskill.engine.providers.base import MAX_RESPONSE_BYTES
    from pytest_upskill.testing import Fault, LoopbackServer

    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Say x.")
    body = _openai_body("x" * (MAX_RESPONSE_BYTES + 1000), {"prompt_tokens": 1, "completion_tokens": 1})
    headers = {"content-type": "application/json"}
    if encoding == "gzip":  # a few kilobytes on the wire
        body, headers = _gzip(body), {**headers, "content-encoding": "gzip"}
    with LoopbackServer(fault=lambda n, b: Fault(200, body, headers)) as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--junitxml",
            "j.xml",
            "--upskill-max-errors",
            "10",
        )
        attempts = len(server.attempts)
    trials = _junit_trials(pytester.path / "j.xml")
    assert {t["error_kind"] for t in trials.values()} == {"response_too_large"}, trials
    assert attempts == 2  # not retried: the server would send it again
    result.stdout.fnmatch_lines([f"*the response body*is larger than {MAX_RESPONSE_BYTES:,} bytes; not read further*"])


def test_a_gzip_response_of_ordinary_size_is_read(pytester, write_skill):
    from pytest_upskill.testing import Fault, LoopbackServer

    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Say x.")
    body = _gzip(_openai_body("x", {"prompt_tokens": 1, "completion_tokens": 1}))
    with LoopbackServer(
        fault=lambda n, b: Fault(200, body, {"content-type": "application/json", "content-encoding": "gzip"})
    ) as server:
        result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}")
    result.assert_outcomes(passed=2)


# ------------------------------------------------------------------------------- bad settings

BAD_COMPARE = {
    "a list, not a report": "[]",
    "a result without its keys": '{"results": [{"skill": "s"}]}',
    "a short lift_ci": '{"results": [{"skill": "s", "model": "m", "lift": 0.1, "lift_ci": [0.1]}]}',
    "a NaN lift": '{"results": [{"skill": "s", "model": "m", "lift": NaN, "lift_ci": [0, 1]}]}',
}
BAD_SETTINGS = {
    "cache dir is a file": (
        ["--upskill-cache-dir", "afile"],
        "--upskill-cache-dir*afile: this is a file, not a folder*",
    ),
    "report in a file's folder": (
        ["--upskill-report", "afile/r.json"],
        "--upskill-report*afile/r.json: its folder*afile: this is a file, not a folder*",
    ),
    "report is a folder": (["--upskill-report", "adir"], "--upskill-report*adir: this is a folder; name a file in it*"),
    "markdown is a folder": (["--upskill-markdown", "adir"], "--upskill-markdown*adir: this is a folder*"),
    "junitxml in a file's folder": (["--junitxml", "afile/j.xml"], "--junitxml*afile/j.xml: its folder*"),
    "timeout 0": (
        ["--upskill-timeout", "0"],
        "--upskill-timeout / upskill_timeout must be a number of seconds above 0, not*0*",
    ),
    "timeout -1": (
        ["--upskill-timeout", "-1"],
        "--upskill-timeout / upskill_timeout must be a number of seconds above 0*",
    ),
    "timeout nan": (
        ["--upskill-timeout", "nan"],
        "--upskill-timeout / upskill_timeout must be a number of seconds above 0*",
    ),
    "timeout empty": (
        ["-o", "upskill_timeout="],
        "--upskill-timeout / upskill_timeout must be a number of seconds above 0, not empty*",
    ),
    "backoff empty": (
        ["-o", "upskill_backoff="],
        "--upskill-backoff / upskill_backoff must be a number of seconds, 0 or more, not empty*",
    ),
    "check timeout 0": (
        ["-o", "upskill_check_timeout=0"],
        "--upskill-check-timeout / upskill_check_timeout must be a number of seconds above 0*",
    ),
    **{
        f"compare: {name}": (
            ["--upskill-compare", "old.json"],
            "--upskill-compare old.json: not a report written by --upskill-report: *",
        )
        for name in BAD_COMPARE
    },
}


@pytest.mark.parametrize("setting", sorted(BAD_SETTINGS))
def test_bad_settings_are_usage_errors_before_the_first_request(pytester, write_skill, model_server, setting):
    args, message = BAD_SETTINGS[setting]
    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Say x.")
    (pytester.path / "afile").write_text("not a folder")
    (pytester.path / "adir").mkdir()
    if setting.startswith("compare: "):
        (pytester.path / "old.json").write_text(BAD_COMPARE[setting.removeprefix("compare: ")])
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()[-2000:]
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert model_server.attempts == []  # nothing was sent, nothing paid for


def test_a_github_step_summary_that_is_a_folder_is_a_usage_error(pytester, write_skill, model_server, monkeypatch):
    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Say x.")
    (pytester.path / "adir").mkdir()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(pytester.path / "adir"))
    result = pytester.runpytest("skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: GITHUB_STEP_SUMMARY*adir: this is a folder*"])
    assert model_server.attempts == []


def test_an_output_that_fails_at_the_end_leaves_the_others_written_and_a_message(pytester, write_skill, model_server):
    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}}], body="Say x.")
    pytester.makeconftest("""
        import shutil
        from pathlib import Path

        def pytest_collection_finish(session):  # after the checks at the start: the folder becomes a file
            shutil.rmtree("out")
            Path("out").write_text("now a file")
    """)
    (pytester.path / "out").mkdir()
    result = pytester.runpytest(
        "skills",
        "--upskill-models",
        f"openai:m@{model_server.openai_base_url}",
        "--upskill-report",
        "out/r.json",
        "--upskill-markdown",
        "summary.md",
        "--junitxml",
        "j.xml",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["upskill: could not write the JSON report out/r.json: *; the other outputs were written (exit status 1)"]
    )
    assert "JSON report written to" not in result.stdout.str() and "Traceback" not in result.stdout.str()
    assert (pytester.path / "summary.md").read_text().strip() and (pytester.path / "j.xml").read_text().strip()


# --------------------------------------------------------------------------- smaller findings


def test_case_ids_in_any_script_are_their_own_node_ids(pytester, write_skill):
    write_skill(
        "s",
        [
            {"id": "日本語", "input": "a", "expected": {"contains": "x"}},
            {"id": "中文", "input": "b", "expected": {"contains": "x"}},
            {"id": "Ελληνικά", "input": "c", "expected": {"contains": "x"}},
        ],
    )
    result = pytester.runpytest("skills", "--collect-only", "-q", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()  # they all slugged to "case" and collided
    result.stdout.fnmatch_lines(
        ["*::日本語[[]openai-m-baseline[]]", "*::中文[[]openai-m-baseline[]]", "*::Ελληνικά[[]openai-m-with_skill[]]"]
    )


@pytest.mark.parametrize(
    "field, shown",
    [
        ({"output_file": "../out.txt"}, "'output_file': '../out.txt' leaves the workspace"),
        ({"output_file": "/tmp/out.txt"}, "'output_file': '/tmp/out.txt' leaves the workspace"),
        ({"context": {"files": {"../x.py": "1"}}}, "'context.files': '../x.py' leaves the workspace"),
        ({"context": {"files": {"/etc/x.py": "1"}}}, "'context.files': '/etc/x.py' leaves the workspace"),
        (
            {"validator": "yaml_valid", "validator_config": {"file": "/etc/passwd"}},
            "validator 'yaml_valid': 'file': '/etc/passwd' leaves the workspace",
        ),
        (
            {"validator": "json_valid", "validator_config": {"file": "a/../../b.json"}},
            "validator 'json_valid': 'file': 'a/../../b.json' leaves",
        ),
    ],
)
def test_paths_that_leave_the_workspace_are_collection_errors(pytester, write_skill, field, shown):
    write_skill("s", [{"id": "c", "input": "q", "expected": {"contains": "x"}, **field}])
    result = pytester.runpytest("skills", "--collect-only", "--upskill-models", "openai:m@http://127.0.0.1:9/v1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*skill_meta.json:*: case 1: {shown}*"])


def test_a_connection_closed_mid_reply_does_not_count_as_a_dead_model(pytester, write_skill):
    from pytest_upskill.testing import Fault, LoopbackServer

    write_skill(
        "s", [{"id": f"c{i}", "input": f"q{i}", "expected": {"contains": "x"}} for i in range(4)], body="Say x."
    )
    cut = Fault(
        200, b'{"id": "x", "obj', {"content-type": "application/json", "content-length": "500"}
    )  # 500 promised, 16 sent
    with LoopbackServer(fault=lambda n, b: cut) as server:
        result = pytester.runpytest(
            "skills",
            "--upskill-models",
            f"openai:m@{server.openai_base_url}",
            "--upskill-retries",
            "0",
            "--upskill-concurrency",
            "1",
            "--junitxml",
            "j.xml",
            "--upskill-max-errors",
            "100",
        )
        attempts = len(server.attempts)
    trials = _junit_trials(pytester.path / "j.xml")
    assert attempts == 8, result.stdout.str()[
        -3000:
    ]  # the server took every request: it is up; none was held back as dead
    assert {t["error_kind"] for t in trials.values()} == {"connection_dropped"}
    assert "could not connect" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*the connection was lost before the whole reply arrived*"])


def test_tool_call_arguments_nested_too_deeply_are_a_tool_error_for_the_model(pytester, write_skill):
    import json

    from pytest_upskill.testing import Fault, LoopbackServer

    deep = "[" * 100_000 + "]" * 100_000
    first = json.dumps(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "call_1", "type": "function", "function": {"name": "write_file", "arguments": deep}}
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1},
        }
    ).encode()
    write_skill(
        "s",
        [{"id": "c", "input": "q", "expected": {"contains": []}, "output_file": "notes.txt"}],
        body="Write notes.txt.",
    )
    with LoopbackServer(
        fault=lambda n, b: Fault(200, first, {"content-type": "application/json"}) if n < 2 else None
    ) as server:
        result = pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--junitxml", "j.xml"
        )
        tool_results = [m["content"] for r in server.requests for m in r.body["messages"] if m["role"] == "tool"]
    trials = _junit_trials(pytester.path / "j.xml")
    assert all("error_kind" not in t for t in trials.values()), trials  # an internal error before
    assert any("error: the arguments are nested too deeply to read" in c for c in tool_results), tool_results
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the model did not write notes.txt: a failure, not an error


def test_a_program_that_fills_the_workspace_is_stopped_at_its_total_size(tmp_path):
    with Workspace() as ws:
        ws.write(
            "fill.py",
            "import time\nfor i in range(100):\n    open(f'f{i}', 'wb').write(b'x' * (4 << 20))\ntime.sleep(30)\n",
        )
        result = sandbox.run([sys.executable, "fill.py"], ws.root, Limits(seconds=20, disk_mb=40))
        left = sum(p.stat().st_size for p in ws.root.iterdir() if p.is_file())
    assert result.limit == "workspace size", (result.returncode, result.stderr)
    assert result.describe() == "stopped at the workspace size limit (40 MB in all)"
    # each file is under the per-file limit, so only the total stopped it, before all 400 MB were written; how far
    # past 40 MB it got depends on how busy the machine is (the total is looked at every 0.2 s: SECURITY.md)
    assert left < 400 << 20


def test_what_the_model_left_in_the_sandboxs_home_and_tmp_is_gone_before_a_program_runs():
    with Workspace() as ws:
        ws.write(".tmp/home/.config/pip/pip.conf", "[global]\nindex-url = http://evil\n")
        ws.write(".tmp/planted", "x")
        result = sandbox.run(["sh", "-c", 'ls -A "$HOME"; ls -A "$TMPDIR"'], ws.root)
    assert result.stdout.split() == ["home"], result.stdout  # HOME empty; TMPDIR holds only HOME


def test_the_files_the_model_writes_have_a_total_size_limit(pytester, write_skill):
    from pytest_upskill.engine.agent import MAX_WORKSPACE_BYTES, MAX_WRITE_CHARS
    from pytest_upskill.testing import LoopbackServer

    count = MAX_WORKSPACE_BYTES // MAX_WRITE_CHARS + 2

    def agent(turn):  # four files a turn: a reply stays under the response size limit
        done = len(turn.results("write_file"))
        if done < count:
            return "", [
                ("write_file", {"path": f"f{i}.txt", "content": "x" * MAX_WRITE_CHARS})
                for i in range(done, min(done + 4, count))
            ]
        return "done", []

    write_skill(
        "s",
        [{"id": "c", "input": "q", "expected": {"contains": []}, "output_file": "f0.txt", "max_turns": 20}],
        body="Write files.",
    )
    with LoopbackServer(agent=agent) as server:
        pytester.runpytest("skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-cache", "off")
        results = [m["content"] for m in server.requests[-1].body["messages"] if m["role"] == "tool"]
    assert len(results) == count
    assert results[0] == f"wrote {MAX_WRITE_CHARS} characters to f0.txt"
    assert (
        results[-1].startswith("error: the workspace would hold ")
        and f"over the limit of {MAX_WORKSPACE_BYTES:,}" in results[-1]
    )
