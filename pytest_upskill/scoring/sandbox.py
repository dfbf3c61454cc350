"""Run untrusted model output: a fresh workspace, time and memory limits, no writes outside it.

Model output is untrusted input. Whatever runs it (a validator compiling or testing written code,
a custom check executing an answer) runs it here:

* a fresh temporary **workspace** folder; :class:`Workspace` refuses paths that leave it
  (absolute, ``..``, symlinks pointing out);
* a child process started through :mod:`pytest_upskill.scoring._confine`, which before ``exec`` sets
  resource limits (address space, CPU seconds, file size, no core files) and, where the kernel
  has **Landlock** (Linux 5.13+), restricts the process and its children so that they can write
  only inside the workspace (and ``/dev/null``), cannot open TCP connections (Linux 6.7+) and cannot
  signal processes outside (Linux 6.12+). Reading the rest of the file system stays allowed:
  compilers and interpreters need their own files;
* a wall-clock limit, after which the whole process group is killed;
* an environment with nothing of the parent's but ``PATH`` and the locale: no API key can leak.

:func:`run` returns a :class:`RunResult` whose ``limit`` names the limit that stopped the program, if
one did, and whose ``describe()`` says so in words. ``confinement()`` says what this machine
enforces; ``SECURITY.md`` gives the threat model.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from io import BufferedReader
from pathlib import Path
from typing import Any

from pytest_upskill.errors import WorkspaceError

# ------------------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    seconds: float = 30.0  # wall clock, and (rounded up, plus one) CPU seconds
    memory_mb: int = 2048  # address space
    file_mb: int = 256  # largest file the program may write
    disk_mb: int = 1024  # all of the workspace together; the program is stopped when it holds more


@dataclass
class RunResult:
    returncode: int
    stdout: str
    stderr: str
    limit: str | None = None  # "time", "memory", "file size" or "workspace size" when a limit stopped the program
    limits: Limits = field(default_factory=Limits)
    missing: tuple[str, ...] = ()  # the defences this machine refused (see confinement())

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.limit is None

    def describe(self) -> str:
        if self.limit == "time":
            return f"stopped at the time limit ({self.limits.seconds:g} s)"
        if self.limit == "memory":
            return f"stopped at the memory limit ({self.limits.memory_mb} MB)"
        if self.limit == "file size":
            return f"stopped at the file size limit ({self.limits.file_mb} MB)"
        if self.limit == "workspace size":
            return f"stopped at the workspace size limit ({self.limits.disk_mb} MB in all)"
        return f"exit status {self.returncode}"


_OUTPUT_LIMIT = 64_000  # characters of stdout/stderr kept
TIME_LIMIT_MARK = "pytest-upskill sandbox: wall-clock limit reached"  # the launcher's line when it stopped the program
DISK_LIMIT_MARK = "pytest-upskill sandbox: workspace size limit reached"
MISSING_MARK = "pytest-upskill sandbox: missing defence:"  # the launcher's line per defence the kernel refused
PROCESS_LIMIT = 1024  # processes and threads of one sandboxed program, all together (where cgroups allow)
_GRACE_S = 10.0  # beyond the limit, before the launcher itself is killed (it enforces the limit)


def run(
    command: list[str],
    workspace: Path,
    limits: Limits = Limits(),
    env: dict[str, str] | None = None,
    writable: tuple[str, ...] = (),
) -> RunResult:
    """Run ``command`` in ``workspace`` under ``limits`` and the confinement this machine offers.
    ``writable``: further paths the program may write (a GPU's device files)."""
    workspace = Path(workspace).resolve()
    tmp = _fresh_folder(
        workspace / ".tmp"
    )  # HOME and TMPDIR: whatever the model left there is gone (a tool's config, a build cache)
    home = tmp / "home"
    home.mkdir()
    policy = {
        "workspace": str(workspace),
        "memory_mb": limits.memory_mb,
        "cpu_s": int(limits.seconds) + 1,
        "file_mb": limits.file_mb,
        "writable": [str(p) for p in writable],
        "seconds": limits.seconds,
        "disk_mb": limits.disk_mb,
    }
    group = Cgroup.make(limits)
    if group is not None:
        policy["cgroups"] = group.procs_files
    process = subprocess.Popen(
        launcher(policy, command),
        cwd=workspace,
        env={**child_env(workspace, home, tmp), **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert isinstance(process.stdout, BufferedReader) and isinstance(process.stderr, BufferedReader)
    out, err = _Tail(process.stdout), _Tail(process.stderr)  # read as it comes, a bounded tail kept
    try:  # the launcher enforces the limit and ends every process the program started; this is the backstop
        process.wait(timeout=limits.seconds + _GRACE_S)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.wait()
        err.extra = f"\n{TIME_LIMIT_MARK}"
    stdout, stderr = out.text(), err.text()
    code = process.returncode
    oom = group.cleanup() if group is not None else False
    limit = (
        "time"
        if TIME_LIMIT_MARK in stderr
        else "workspace size"
        if DISK_LIMIT_MARK in stderr
        else "memory"
        if oom
        else _limit_from(code, stderr)
    )
    missing = tuple(line[len(MISSING_MARK) :].strip() for line in stderr.splitlines() if line.startswith(MISSING_MARK))
    if group is None:
        missing += ("whole-tree memory and process bound",)
    stderr = "\n".join(
        line for line in stderr.splitlines() if not line.startswith((TIME_LIMIT_MARK, DISK_LIMIT_MARK, MISSING_MARK))
    )
    return RunResult(code, stdout, stderr, limit, limits, tuple(dict.fromkeys(missing)))


class _Tail:
    """Reads a pipe to its end in a thread of its own, keeping only its last ``_OUTPUT_LIMIT``
    characters: a program that writes gigabytes costs the pytest process a bounded buffer."""

    def __init__(self, pipe: BufferedReader):
        self.pipe, self.chunks, self.size, self.extra = pipe, deque[bytes](), 0, ""
        self.thread = threading.Thread(target=self._read, name="upskill-sandbox-output", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        limit = _OUTPUT_LIMIT * 4  # bytes: a character is at most four
        with self.pipe:
            for chunk in iter(lambda: self.pipe.read1(65536), b""):
                self.chunks.append(chunk)
                self.size += len(chunk)
                while self.size - len(self.chunks[0]) >= limit:
                    self.size -= len(self.chunks.popleft())

    def text(self) -> str:
        self.thread.join(timeout=_GRACE_S)
        data = b"".join(self.chunks)
        return (data.decode("utf-8", "replace") + self.extra)[-_OUTPUT_LIMIT:]


def launcher(policy: dict[str, Any], command: list[str]) -> list[str]:
    """``command`` started through the confining launcher (``_confine``) under ``policy``. -I: the
    workspace (the current folder) is not on sys.path, so nothing written there runs before the confinement."""
    return [sys.executable, "-I", "-m", "pytest_upskill.scoring._confine", json.dumps(policy), "--", *command]


def child_env(workspace: Path, home: Path, tmp: Path) -> dict[str, str]:
    """A confined program's whole environment: nothing of the parent's but a safe PATH (no key, no PYTHONPATH)."""
    return {
        "PATH": safe_path(workspace),
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
    }


def _fresh_folder(folder: Path) -> Path:
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    elif folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    return folder


def safe_path(workspace: Path) -> str:
    """PATH without relative entries and without the workspace: nothing the model writes is found
    as a command (a ``gcc`` or ``cicc`` of its own)."""
    entries = [e for e in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep) if os.path.isabs(e)]
    return os.pathsep.join(e for e in entries if not Path(e).resolve().is_relative_to(workspace)) or "/usr/bin:/bin"


def gpu_devices() -> tuple[str, ...]:
    """The NVIDIA device files a CUDA program opens for writing (its ioctls)."""
    return tuple(str(p) for p in sorted(Path("/dev").glob("nvidia*")))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _limit_from(code: int, stderr: str) -> str | None:
    if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "time"
    if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or "File too large" in stderr:
        return "file size"
    if code != 0 and any(
        s in stderr for s in ("MemoryError", "std::bad_alloc", "Cannot allocate memory", "out of memory")
    ):
        return "memory"
    return None


# ------------------------------------------------------------------------------------ cgroups

_CGROUP_ROOT = Path("/sys/fs/cgroup")


class Cgroup:
    """Cgroups made for one sandboxed program, beneath this process's own: a bound on the memory
    and on the processes of the whole tree it starts (an address-space limit is per process, and
    root ignores ``RLIMIT_NPROC``). Made where this process may write its cgroup hierarchy (root on
    cgroup v1, or a delegated cgroup v2 subtree); elsewhere :meth:`make` returns None and the run
    says the bound is missing."""

    def __init__(self, folders: list[Path]):
        self.folders = folders

    @property
    def procs_files(self) -> list[str]:
        return [str(folder / "cgroup.procs") for folder in self.folders]

    @classmethod
    def make(cls, limits: Limits) -> Cgroup | None:
        name = f"upskill-{os.getpid()}-{next(_cgroup_serial)}"
        memory = str(limits.memory_mb << 20)
        try:
            own = _own_cgroups()
            if "" in own:  # cgroup v2: one hierarchy, the controllers enabled for children by the parent
                parent = _CGROUP_ROOT / own[""].lstrip("/")
                if not {"memory", "pids"} <= set((parent / "cgroup.subtree_control").read_text().split()):
                    return None
                folder = parent / name
                folder.mkdir()
                group = cls([folder])
                (folder / "memory.max").write_text(memory)
                (folder / "memory.swap.max").write_text("0")
                (folder / "pids.max").write_text(str(PROCESS_LIMIT))
                return group
            folders: list[Path] = []
            for controller, settings in (
                ("memory", {"memory.limit_in_bytes": memory}),
                ("pids", {"pids.max": str(PROCESS_LIMIT)}),
            ):
                base = _CGROUP_ROOT / controller
                if controller not in own or not (base / "cgroup.procs").exists():
                    for folder in folders:
                        folder.rmdir()
                    return None
                folder = base / own[controller].lstrip("/") / name
                folder.mkdir()
                folders.append(folder)
                for key, value in settings.items():
                    (folder / key).write_text(value)
            return cls(folders)
        except OSError:
            return None

    def cleanup(self) -> bool:
        """Remove the cgroups (the program and all it started have ended); whether the memory bound
        killed a process."""
        oom = False
        for folder in self.folders:
            for events in ("memory.events", "memory.oom_control"):
                try:
                    text = (folder / events).read_text()
                except OSError:
                    continue
                oom |= any(line.split()[:1] == ["oom_kill"] and line.split()[1] != "0" for line in text.splitlines())
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)  # the last processes are still being reaped
        return oom


_cgroup_serial = itertools.count()


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup per controller of cgroup v1 (where memory and pids are there), else its
    cgroup v2 under the key ""; OSError where unreadable."""
    text = Path("/proc/self/cgroup").read_text()
    own: dict[str, str] = {}
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            own[controller] = path
    v1 = {c for c in own if c}
    return {c: own[c] for c in v1} if {"memory", "pids"} <= v1 else {"": own.get("", "/")}


# ---------------------------------------------------------------------------------- workspace


def path_problem(name: object) -> str | None:
    """Why ``name`` cannot name a file inside a workspace (None when it can): the same rule at
    collection, for the paths a case names, and at run time, for the paths a model names."""
    if not isinstance(name, str) or not name or "\x00" in name:
        return f"not a file name: {name!r}"
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        return f"{name!r} leaves the workspace: give a path relative to it, without '..'"
    return None


class Workspace:
    """A fresh temporary folder; every path given to it stays inside it."""

    def __init__(self, prefix: str = "upskill-"):
        self.root = Path(tempfile.mkdtemp(prefix=prefix)).resolve()

    def path(self, name: str) -> Path:
        problem = path_problem(name)
        if problem:
            raise WorkspaceError(problem)
        target = (self.root / name).resolve()
        if target != self.root and self.root not in target.parents:
            raise WorkspaceError(f"{name!r} leaves the workspace through a symbolic link")
        return target

    def write(self, name: str, text: str) -> Path:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def read(self, name: str, limit: int = 1_000_000) -> str:
        with self.path(name).open(encoding="utf-8", errors="replace") as f:
            return f.read(limit)

    def files(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and ".tmp" not in p.relative_to(self.root).parts
        )

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


# ------------------------------------------------------------------------------------ landlock

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_CREATE_RULESET_VERSION = 1


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers, 0 where it has none."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        version = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(0, int(version))


@functools.cache
def missing_defences() -> tuple[str, ...]:
    """The defences this machine refuses a sandboxed program (found once per process, by running
    ``true`` in the sandbox): a user, network or PID namespace, a private /proc, the Unix socket
    filter, the whole-tree memory and process bound."""
    with Workspace(prefix="upskill-probe-") as ws:
        return run(["true"], ws.root, Limits(seconds=10)).missing


def confinement() -> str:
    """What this machine enforces on a sandboxed program, in words, and what it does not."""
    abi = landlock_abi()
    missing = missing_defences()
    base = "time, memory and file-size limits; namespaces, a private /proc, no capability, no Unix sockets"
    if abi == 0:
        text = f"{base}; no Landlock on this kernel, so writes outside the workspace are NOT blocked"
    else:
        parts = ["writes only inside the workspace, no device files"]
        if abi >= 4:
            parts.append("no TCP connections")
        if abi >= 6:
            parts.append("no signals to outside processes")
        text = f"{base}; Landlock ABI {abi}: " + ", ".join(parts)
    return text + (f"; missing: {', '.join(missing)}" if missing else "")
