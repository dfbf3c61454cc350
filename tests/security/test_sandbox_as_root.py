"""What a sandboxed program (code the model wrote) can reach, whoever runs pytest: CI runs as root.
Each test runs as the user running the suite (root in this project's CI) and, where the defence
differs for an unprivileged user, again as uid 65534 (``as_nobody``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_upskill.scoring import sandbox
from pytest_upskill.scoring.sandbox import Limits, Workspace

CANARY = "sk-canary-3b1f0c9e2d7a4f6b"


def python(ws: Workspace, code: str, limits: Limits | None = None) -> sandbox.RunResult:
    ws.write("main.py", textwrap.dedent(code))
    return sandbox.run([sys.executable, "main.py"], ws.root, limits or Limits())


@pytest.fixture
def process_with_a_key():
    """Another process of the machine (a CI step, the pytest process itself) holding an API key in
    its environment, as every process of a CI job does."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], env={**os.environ, "OPENAI_API_KEY": CANARY}
    )
    yield process
    process.kill()
    process.wait()


READ_EVERY_ENVIRONMENT = """
    import base64, os
    seen, keys = 0, []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            seen += 1
            try:
                for entry in open(f"/proc/{pid}/environ", "rb").read().split(b"\\0"):
                    if b"KEY=" in entry or b"TOKEN=" in entry:
                        keys.append(base64.b64encode(entry).decode())
            except OSError:
                pass
    print("processes", seen)
    print("keys", " ".join(keys))
"""


UNIX_AND_CAPABILITIES = """
    import socket
    try:
        socket.socket(socket.AF_UNIX)
        print("unix")
    except OSError:
        print("no unix")
    print(open("/proc/self/status").read().split("CapEff:")[1].split()[0])
"""


def test_a_sandboxed_program_sees_no_other_process_and_so_no_environment(process_with_a_key):
    with Workspace() as ws:
        result = python(ws, READ_EVERY_ENVIRONMENT)
    import base64

    found = " ".join(base64.b64decode(k).decode(errors="replace") for k in result.stdout.split("keys")[-1].split())
    assert CANARY not in found and "OPENAI_API_KEY" not in found, found
    assert result.stdout.startswith("processes 1\n"), result.stdout  # its own PID namespace's /proc: itself only


def test_a_sandboxed_program_has_no_capability_and_makes_no_device_file():
    with Workspace() as ws:
        result = python(
            ws,
            """
            import os, stat
            lines = open("/proc/self/status").read().splitlines()
            status = dict(line.split(":\\t", 1) for line in lines if ":\\t" in line)
            print("effective", status["CapEff"].strip(), "bounding", status["CapBnd"].strip())
            for kind, name in ((stat.S_IFCHR, "kmsg"), (stat.S_IFBLK, "disk")):
                try:
                    os.mknod(name, 0o600 | kind, os.makedev(1, 11))
                    print("made", name)
                except OSError as exc:
                    print("refused", name, exc.errno)
            """,
        )
        made = [f for f in ws.files() if f in ("kmsg", "disk")]
    assert "effective 0000000000000000 bounding 0000000000000000" in result.stdout, result.stdout + result.stderr
    assert "made" not in result.stdout and not made, result.stdout


def test_a_socket_in_the_file_system_cannot_be_reached_from_the_sandbox(tmp_path):
    """A Docker socket, a session bus, an X server, an ssh agent: a network namespace does not
    isolate sockets bound to paths, so the sandbox refuses Unix sockets themselves."""
    path = tmp_path / "agent.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    os.chmod(path, 0o777)
    os.chmod(tmp_path, 0o755)
    try:
        with Workspace() as ws:
            result = python(
                ws,
                f"""
                import socket
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect({str(path)!r})
                    print("connected")
                except OSError as exc:
                    print("refused", exc.errno)
                """,
            )
    finally:
        listener.close()
    assert result.stdout.strip() == "refused 13", result.stdout + result.stderr


def _cgroups() -> bool:
    with Workspace() as ws:
        return "whole-tree memory and process bound" not in sandbox.run(["true"], ws.root).missing


needs_cgroups = pytest.mark.skipif(
    not _cgroups(), reason="this machine lets no cgroup be made (the run says the bound is missing)"
)


@needs_cgroups
def test_a_fork_bomb_is_bounded_for_the_whole_tree_even_as_root():
    with Workspace() as ws:
        result = python(
            ws,
            """
            import os, time
            made = 0
            for _ in range(2000):
                try:
                    if os.fork() == 0:
                        time.sleep(30)
                        os._exit(0)
                    made += 1
                except OSError:
                    break
            print("forked", made)
            """,
            Limits(seconds=20),
        )
    made = int(result.stdout.split()[-1])
    assert made < sandbox.PROCESS_LIMIT, result.stdout


@needs_cgroups
def test_memory_is_bounded_for_the_whole_tree_not_per_process():
    """Three children of 150 MB each under a limit of 256 MB: each is under the address-space
    limit, together they are over it."""
    with Workspace() as ws:
        result = python(
            ws,
            """
            import os, time
            children = []
            for _ in range(3):
                pid = os.fork()
                if pid == 0:
                    block = bytearray(150 << 20)
                    for i in range(0, len(block), 4096):
                        block[i] = 1
                    time.sleep(10)
                    os._exit(0)
                children.append(pid)
            for pid in children:
                os.waitpid(pid, 0)
            print("all held")
            """,
            Limits(seconds=20, memory_mb=256),
        )
    assert result.limit == "memory", (result.stdout, result.stderr)
    assert result.describe() == "stopped at the memory limit (256 MB)"


def test_a_hundred_thousand_empty_files_do_not_hide_what_the_workspace_holds():
    with Workspace() as ws:
        result = python(
            ws,
            """
            import os, time
            os.makedirs("many/deeper")  # the big file lies below the hundred thousand entries
            for i in range(100_050):
                open(f"many/{i}", "w").close()
            with open("many/deeper/big", "wb") as f:
                for _ in range(80):
                    f.write(b"x" * (1 << 20))
            time.sleep(30)
            """,
            Limits(seconds=40, disk_mb=40),
        )
    assert result.limit == "workspace size", (result.returncode, result.stderr[-500:])


def test_a_program_that_writes_gigabytes_to_stdout_costs_pytest_a_bounded_buffer(tmp_path):
    """Measured in a process of its own: the peak memory of the process that ran the sandbox."""
    script = tmp_path / "measure.py"
    script.write_text(
        textwrap.dedent(
            """
            import resource, sys
            from pytest_upskill.scoring import sandbox
            from pytest_upskill.scoring.sandbox import Workspace
            with Workspace() as ws:
                spam = "import sys\\nfor _ in range(400):\\n    sys.stdout.buffer.write(b'y' * (1 << 20))\\n"
                ws.write("spam.py", spam)
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                result = sandbox.run([sys.executable, "spam.py"], ws.root)
            after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(before, after, len(result.stdout), result.returncode)
            """
        )
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    before, after, kept, code = (int(x) for x in out.stdout.split())
    assert code == 0 and kept == 64_000, out
    assert after - before < 100 << 10, (before, after)  # KiB: well under the 400 MiB written


def test_a_defence_this_machine_lacks_is_named_by_confinement():
    text = sandbox.confinement()
    with Workspace() as ws:
        missing = sandbox.run(["true"], ws.root).missing
    for defence in missing:
        assert defence in text
    assert ("missing: " in text) == bool(missing), text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_the_same_defences_hold_for_an_unprivileged_user(tmp_path, process_with_a_key):
    """The suite again as uid 65534: no other process, no capability, no Unix socket."""
    package = Path(sandbox.__file__).parent.parent.parent  # the folder holding pytest_upskill/
    script = tmp_path / "nobody.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, sys, tempfile
            sys.path.insert(0, {str(package)!r})
            from pytest_upskill.scoring import sandbox
            ws = sandbox.Workspace()
            ws.write("main.py", {textwrap.dedent(READ_EVERY_ENVIRONMENT + UNIX_AND_CAPABILITIES)!r})
            result = sandbox.run([sys.executable, "main.py"], ws.root)
            print(result.stdout, result.stderr, result.missing)
            """
        )
    )
    os.chmod(tmp_path, 0o755)
    for parent in tmp_path.parents:
        if str(parent) in ("/", "/tmp"):
            break
        os.chmod(parent, 0o755)

    def drop() -> None:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)

    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    try:
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=drop,
            env={"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home)},
            cwd=home,
        )
    except PermissionError as exc:
        pytest.skip(f"this Python ({sys.executable}) cannot be run by uid 65534: {exc}")
    assert "processes 1\n" in out.stdout and CANARY not in out.stdout, out
    assert "no unix" in out.stdout and "0000000000000000" in out.stdout, out
