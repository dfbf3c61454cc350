"""The launcher of :mod:`pytest_upskill.sandbox`: isolate, confine, set limits, run the command
and outlive it long enough to end everything it started.

    python -I -m pytest_upskill._confine POLICY_JSON -- COMMAND...

Runs in the child, so nothing here touches the pytest process (no ``preexec_fn`` in a threaded
parent). In order:

1. **Namespaces** where the kernel allows them: a new network namespace (no interface but a
   loopback that is down: no network at all, UDP and DNS included) and a new PID namespace, whose
   first process is the command: when it ends, or is killed, the kernel kills every process left in
   the namespace, ``setsid()`` and double forks notwithstanding. Unprivileged, a user namespace
   maps the caller's own uid and gid.
2. **Landlock** (inherited by every descendant, cannot be undone) and **resource limits**.
3. The command runs as this process's child, killed with it (``PR_SET_PDEATHSIG``); this process
   is a child subreaper and enforces the wall-clock limit itself: at the limit, or when the command
   ends, it kills every descendant it still has (the sweep, for kernels without PID namespaces).
   It exits with the command's status, or ``TIME_LIMIT_EXIT`` at the limit.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import sys
import time

from .sandbox import (
    _SYS_ADD_RULE,
    _SYS_CREATE_RULESET,
    _SYS_RESTRICT_SELF,
    DISK_LIMIT_MARK,
    TIME_LIMIT_MARK,
    landlock_abi,
)

# Landlock access rights (linux/landlock.h)
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = (
    1 << n for n in range(4, 13)
)
REFER, TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
RULE_PATH_BENEATH = 1
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 1, 38, 36
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
TIME_LIMIT_EXIT = 124  # the launcher's exit status when the wall-clock limit stopped the command
DISK_POLL_S = 0.2  # how often the workspace's size is looked at


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def set_limits(memory_mb: int, cpu_s: int | None, file_mb: int) -> None:
    """Address space, CPU seconds (None: none, for a worker that serves many jobs), file size, no core files."""
    for name, value in (
        (resource.RLIMIT_AS, memory_mb << 20),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_FSIZE, file_mb << 20),
        (resource.RLIMIT_CORE, 0),
    ):
        if value is None:
            continue
        soft, hard = resource.getrlimit(name)
        limit = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(name, (limit, limit))


def confine(workspace: str, writable: tuple[str, ...] = ()) -> int:
    """Allow writes only beneath ``workspace`` (and to /dev/null); deny TCP and outside signals.
    Returns the ABI used, 0 when the kernel has no Landlock (then nothing is restricted)."""
    abi = landlock_abi()
    if abi == 0:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    write = (
        WRITE_FILE
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM
    )
    write |= (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(
        write,
        NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0,
    )
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    device = WRITE_FILE | (TRUNCATE if abi >= 3 else 0)
    for path, access in ((workspace, write), ("/dev/null", device), *((p, device) for p in writable)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = _PathBeneathAttr(access, fd)
            if (
                libc.syscall(
                    _SYS_ADD_RULE,
                    ctypes.c_int(ruleset),
                    ctypes.c_int(RULE_PATH_BENEATH),
                    ctypes.byref(rule),
                    ctypes.c_uint32(0),
                )
                < 0
            ):
                raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        finally:
            os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)
    return abi


def isolate() -> list[str]:
    """New network and PID namespaces (and a user namespace when unprivileged); the ones obtained."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNET | CLONE_NEWPID | (CLONE_NEWUSER if uid != 0 else 0)
    if libc.unshare(ctypes.c_int(flags)) != 0:
        return []
    if uid != 0:  # map our own ids, so the workspace stays ours inside
        for path, text in (
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/uid_map", f"0 {uid} 1"),
            ("/proc/self/gid_map", f"0 {gid} 1"),
        ):
            with open(path, "w") as f:
                f.write(text)
    return ["network", "pid"]


def _descendants() -> list[int]:
    """Our children (orphans below us are reparented to us: we are their subreaper)."""
    found = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                found += [int(pid) for pid in f.read().split()]
        except OSError:
            pass
    return found


def sweep() -> None:
    """Kill every process below this one, until none is left."""
    for _ in range(100):
        children = _descendants()
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
        time.sleep(0.01)


def usage(root: str, stop_bytes: int, stop_entries: int = 100_000) -> int:
    """Bytes on disk beneath ``root``; counting stops past ``stop_bytes`` or ``stop_entries`` entries
    (a look costs at most that many stat calls)."""
    used, entries, folders = 0, 0, [root]
    while folders and used <= stop_bytes and entries <= stop_entries:
        try:
            with os.scandir(folders.pop()) as found:
                for entry in found:
                    entries += 1
                    info = entry.stat(follow_symlinks=False)
                    used += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
        except OSError:
            continue
    return used


def supervise(
    command: list[str], seconds: float | None, workspace: str | None = None, disk_mb: int | None = None
) -> int:
    """Run the command as a child, at most ``seconds`` (None: until it ends or the launcher is
    killed), with at most ``disk_mb`` in ``workspace`` (looked at every DISK_POLL_S); end everything
    it started; its status."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the launcher, whoever kills it
        try:
            os.execvp(command[0], command)
        except OSError as exc:
            sys.stderr.write(f"pytest-upskill sandbox: cannot run {command[0]!r}: {exc.strerror or exc}\n")
        os._exit(127)
    deadline = time.monotonic() + seconds if seconds is not None else None
    watch = workspace is not None and disk_mb is not None
    status = None
    pidfd = os.pidfd_open(pid)
    try:
        while status is None:
            left = deadline - time.monotonic() if deadline is not None else None
            if left is not None and left <= 0:
                os.kill(pid, signal.SIGKILL)  # in a PID namespace this ends every process in it
                os.waitpid(pid, 0)
                sys.stderr.write(f"\n{TIME_LIMIT_MARK} ({seconds:g} s)\n")
                status = TIME_LIMIT_EXIT
                break
            waits = [x for x in (left, DISK_POLL_S if watch else None) if x is not None]
            if not select.select([pidfd], [], [], min(waits) if waits else None)[0]:
                if workspace is not None and disk_mb is not None and usage(workspace, disk_mb << 20) > disk_mb << 20:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    sys.stderr.write(f"\n{DISK_LIMIT_MARK} ({disk_mb} MB)\n")
                    status = 1
                continue
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(raw)
    finally:
        os.close(pidfd)
        sweep()
    return status if status >= 0 else 128 - status  # killed by signal N: 128 + N, as a shell says


def main(argv: list[str]) -> None:
    policy = json.loads(argv[0])
    command = argv[argv.index("--") + 1 :]
    try:
        isolate()
        confine(policy["workspace"], tuple(policy.get("writable", ())))
        set_limits(policy["memory_mb"], policy["cpu_s"], policy["file_mb"])
    except OSError as exc:  # never run unconfined when confinement was expected and failed
        sys.stderr.write(f"pytest-upskill sandbox: cannot confine the program: {exc}\n")
        os._exit(125)
    sys.stderr.flush()
    seconds = policy["seconds"]
    os._exit(
        supervise(command, float(seconds) if seconds is not None else None, policy["workspace"], policy.get("disk_mb"))
    )


if __name__ == "__main__":
    main(sys.argv[1:])
