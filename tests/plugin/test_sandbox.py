"""Untrusted model output runs in a fresh workspace, under time, memory and file-size limits,
without write access outside the workspace, network or the parent's secrets."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from pytest_upskill.errors import WorkspaceError
from pytest_upskill.scoring import sandbox
from pytest_upskill.scoring.sandbox import Limits, Workspace
from pytest_upskill.testing import LoopbackServer

confined = pytest.mark.skipif(
    sandbox.landlock_abi() == 0, reason="this kernel has no Landlock: writes outside are not blocked here"
)


@pytest.fixture
def workspace():
    with Workspace() as ws:
        yield ws


def python(workspace: Workspace, code: str, **limits) -> sandbox.RunResult:
    workspace.write("main.py", textwrap.dedent(code))
    return sandbox.run([sys.executable, "main.py"], workspace.root, Limits(**limits) if limits else Limits())


@confined
def test_writes_land_in_the_workspace_and_nowhere_else(workspace, tmp_path):
    outside = tmp_path / "outside.txt"
    result = python(
        workspace,
        f"""
        open("inside.txt", "w").write("ok")
        import os
        os.makedirs("build/out", exist_ok=True)
        for attempt in ({str(outside)!r}, "/tmp/upskill-escape.txt", {str(workspace.root.parent / "sibling.txt")!r}):
            try:
                open(attempt, "w").write("escaped")
                print("WROTE", attempt)
            except PermissionError:
                print("denied", attempt)
    """,
    )
    assert result.ok, result.stderr
    assert "WROTE" not in result.stdout and result.stdout.count("denied") == 3
    assert not outside.exists() and workspace.read("inside.txt") == "ok"
    assert workspace.files() == ["inside.txt", "main.py"]


@confined
def test_a_shell_and_its_children_are_confined_too(workspace, tmp_path):
    result = sandbox.run(
        ["sh", "-c", f"echo x > {tmp_path}/a.txt; echo y > b.txt; rm -f {sys.executable}"], workspace.root
    )
    assert not (tmp_path / "a.txt").exists() and workspace.read("b.txt") == "y\n"
    assert "Permission denied" in result.stderr


@pytest.mark.skipif(sandbox.landlock_abi() < 4, reason="TCP is confined from Landlock ABI 4 (Linux 6.7)")
def test_no_network(workspace, model_server):
    port = model_server.url.rsplit(":", 1)[1]
    result = python(
        workspace,
        f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("connected")
        except OSError as exc:
            print("refused", exc.errno)
    """,
    )
    assert result.stdout.strip() == "refused 13"


def test_the_time_limit_stops_a_program_that_never_ends(workspace):
    result = python(workspace, "while True: pass", seconds=1)
    assert result.limit == "time" and not result.ok
    assert result.describe() == "stopped at the time limit (1 s)"


def test_the_time_limit_kills_the_programs_children_as_well(workspace):
    result = sandbox.run(["sh", "-c", "sleep 60 & sleep 60"], workspace.root, Limits(seconds=1))
    assert result.limit == "time"


def test_the_memory_limit_stops_a_program_that_allocates_too_much(workspace):
    result = python(workspace, "block = bytearray(3 << 30)", memory_mb=512)
    assert result.limit == "memory" and result.describe() == "stopped at the memory limit (512 MB)"


def test_the_file_size_limit_stops_a_program_that_fills_the_disk(workspace):
    result = python(workspace, "open('big', 'wb').write(b'x' * (20 << 20))", file_mb=8)
    assert result.limit == "file size" and result.describe() == "stopped at the file size limit (8 MB)"


def test_no_secret_of_the_parent_reaches_the_program(workspace, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary-sandbox-77")
    result = python(workspace, "import os; print(sorted(os.environ)); print('sk-canary' in str(os.environ))")
    assert result.stdout.splitlines()[-1] == "False"


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "", "a\x00b"])
def test_workspace_paths_cannot_leave_it(workspace, name):
    with pytest.raises(WorkspaceError):
        workspace.write(name, "x")


def test_a_symlink_out_of_the_workspace_is_refused(workspace, tmp_path):
    (workspace.root / "link").symlink_to(tmp_path)
    with pytest.raises(WorkspaceError, match="through a symbolic link"):
        workspace.write("link/escape.txt", "x")


def test_a_workspace_is_fresh_and_removed_afterwards():
    with Workspace() as first, Workspace() as second:
        assert first.root != second.root and first.files() == second.files() == []
    assert not first.root.exists()


RUNS_THE_ANSWER = """
import sys
from pytest_upskill.scoring import sandbox

def runs_and_prints(output, expected):
    code = output.split("```python\\n", 1)[1].split("```", 1)[0]
    with sandbox.Workspace() as ws:
        ws.write("answer.py", code)
        result = sandbox.run([sys.executable, "answer.py"], ws.root, sandbox.Limits(seconds=2))
    if not result.ok:
        return False, f"the answer's code {result.describe()}: {result.stderr.strip()[-200:]}"
    return result.stdout.strip() == expected, f"printed {result.stdout.strip()!r}"

def pytest_upskill_checks():
    return {"runs_and_prints": runs_and_prints}
"""


@confined
def test_a_custom_check_that_runs_the_answer_keeps_it_in_the_sandbox(pytester, write_skill, tmp_path):
    target = tmp_path / "pwned.txt"
    answers = {
        "hello": "```python\nprint('hello')\n```",
        "escape": f"```python\nopen({str(target)!r}, 'w').write('x')\nprint('hello')\n```",
        "forever": "```python\nwhile True: pass\n```",
    }
    pytester.makeconftest(RUNS_THE_ANSWER)
    write_skill(
        "runner-skill",
        [{"id": key, "input": key, "expected": {"runs_and_prints": "hello"}} for key in answers],
        body="Print hello.",
    )
    with LoopbackServer(reply=lambda system, user: answers[user.strip()]) as server:
        result = pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "--upskill-report", "r.json"
        )
    assert not target.exists()
    cases = {
        c["case"]: c["with_skill"] for c in json.loads((pytester.path / "r.json").read_text())["results"][0]["cases"]
    }
    assert cases == {"hello": [True], "escape": [False], "forever": [False]}
    result.stdout.fnmatch_lines(
        [
            "runs_and_prints: the answer's code exit status 1: *",
            f"PermissionError: [[]Errno 13[]] Permission denied: '{target}'",
            "*runs_and_prints: the answer's code stopped at the time limit (2 s)*",
        ]
    )


HANGS = """
import time

def never_returns(output, expected):
    while True:
        time.sleep(0.05)

def pytest_upskill_checks():
    return {"never_returns": never_returns}
"""


def test_a_custom_check_that_never_returns_is_an_error_at_the_check_time_limit(pytester, write_skill, model_server):
    pytester.makeconftest(HANGS)
    write_skill("hang-skill", [{"input": "q", "expected": {"never_returns": True}}], body="x")
    result = pytester.runpytest(
        "skills", "--upskill-models", f"openai:m@{model_server.openai_base_url}", "--upskill-check-timeout", "0.5"
    )
    result.stdout.fnmatch_lines(
        [
            "upskill: not scored (check_error): a check ran longer than the check time limit (0.5 s, "
            "--upskill-check-timeout)"
        ]
    )
    result.assert_outcomes(errors=2)


def test_a_regex_that_backtracks_forever_is_stopped(pytester, write_skill):
    write_skill("regex-skill", [{"input": "q", "expected": {"regex": "(a|aa)+$"}}], body="x")
    with LoopbackServer(reply=lambda system, user: "a" * 60 + "b") as server:
        result = pytester.runpytest(
            "skills", "--upskill-models", f"openai:m@{server.openai_base_url}", "-o", "upskill_check_timeout=3"
        )
    result.stdout.fnmatch_lines(
        ["*not scored (check_error): a check ran longer than the check time limit (3 s, --upskill-check-timeout)*"]
    )
