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
