"""The launcher of :mod:`pytest_upskill.scoring.sandbox`: isolate, confine, set limits, run the command
and outlive it long enough to end everything it started.

    python -I -m pytest_upskill.scoring._confine POLICY_JSON -- COMMAND...

Runs in the child, so nothing here touches the pytest process (no ``preexec_fn`` in a threaded
parent). In order:

1. **Cgroups** made for this run by the parent, where it could make them: one bound on memory and
   on processes for the whole tree the command starts (``RLIMIT_NPROC`` does not bind root).
2. **Namespaces**, whoever runs pytest, root included: a user namespace (the caller's uid mapped to
   itself: every capability from here on is the namespace's, none of the machine's), a network
   namespace (no interface but a loopback that is down: no network at all, UDP and DNS included)
   and a PID namespace, whose first process is the command: when it ends, or is killed, the kernel
   kills every process left in it, ``setsid()`` and double forks notwithstanding.
3. In the command's process, before ``exec``: a mount namespace with a **/proc of its own PID
   namespace** (no other process of the machine, so no other environment, can be seen);
   **Landlock** (writes beneath the workspace only, no device files, no TCP, no signals out;
   inherited, irreversible); **resource limits**; **no capability** (bounding and ambient sets
   emptied, root's implicit capabilities off by securebits: uid 0 gains nothing at exec); a
   **seccomp** filter refusing Unix sockets (a socket file is reachable across namespaces).
   A defence the kernel refuses is named on stderr (``MISSING_MARK``); one that fails after the
   kernel offered it stops the command from running.
4. The command runs as this process's child, killed with it (``PR_SET_PDEATHSIG``); this process
   is a child subreaper and enforces the wall-clock limit itself: at the limit, or when the command
   ends, it kills every descendant it still has (the sweep, for kernels without PID namespaces).
   It exits with the command's status, or ``TIME_LIMIT_EXIT`` at the limit.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import select
import signal
import sys
import time
from collections.abc import Callable

from pytest_upskill.scoring.sandbox import (
    _SYS_ADD_RULE,
    _SYS_CREATE_RULESET,
    _SYS_RESTRICT_SELF,
    DISK_LIMIT_MARK,
    MISSING_MARK,
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
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 28, 47, 4
# SECBIT_NOROOT, its lock, KEEP_CAPS_LOCKED, NO_CAP_AMBIENT_RAISE and its lock: uid 0 gains nothing at exec
SECUREBITS = 1 | 2 | 32 | 64 | 128
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 1 << 14, 1 << 18
_SYS_IO_URING_SETUP = 425  # the same on every architecture
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}.get(os.uname().machine, -1)
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}  # AUDIT_ARCH_*, socket's number
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
    granted = write & ~(MAKE_CHAR | MAKE_BLOCK)  # no device files, even in the workspace (handled, never granted)
    for path, access in ((workspace, granted), ("/dev/null", device), *((p, device) for p in writable)):
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
    """New user, network and PID namespaces; the defences missing (in words) where the kernel refuses them.

    The user namespace maps the caller's own uid and gid (root stays uid 0 for file access, but every
    capability it holds from here on is the namespace's, never the machine's). Where user namespaces
    are refused (some containers), root still gets the network and PID namespaces, and the program
    drops every capability before it runs (:func:`drop_capabilities`)."""
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(ctypes.c_int(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID)) == 0:
        for path, text in (
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/uid_map", f"0 {uid} 1"),
            ("/proc/self/gid_map", f"0 {gid} 1"),
        ):
            with open(path, "w") as f:
                f.write(text)
        return []
    if libc.unshare(ctypes.c_int(CLONE_NEWNET | CLONE_NEWPID)) == 0:  # root without user namespaces
        return ["user namespace"]
    return ["user namespace", "network namespace", "PID namespace", "private /proc"]


def private_proc() -> bool:
    """A mount namespace of the program's own with a /proc of its PID namespace: no other process
    of the machine is visible (so no other process's environment can be read). Called in the
    namespace's first process, before Landlock (which forbids mounting)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(ctypes.c_int(CLONE_NEWNS)) != 0:
        return False
    if libc.mount(b"none", b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None) != 0:
        return False
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    return bool(libc.mount(b"proc", b"/proc", b"proc", ctypes.c_ulong(flags), None) == 0)


def drop_capabilities() -> None:
    """No capability now or after ``exec``, whoever runs pytest: the bounding and ambient sets
    emptied, root's implicit capabilities off for good (securebits), the current sets cleared.
    Raises OSError when the kernel refuses (then the program must not run)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0) != 0 and os.geteuid() == 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECUREBITS) failed")
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            # EPERM: an unprivileged process outside a user namespace holds no capability to drop, and
            # NO_NEW_PRIVS (set with Landlock and seccomp) keeps exec from granting any
            if code == errno.EINVAL or (code == errno.EPERM and os.geteuid() != 0):
                continue
            raise OSError(code, f"prctl(PR_CAPBSET_DROP, {cap}) failed")
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    if libc.syscall(_SYS_CAPSET, header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def forbid_unix_sockets() -> bool:
    """A seccomp filter: ``socket(AF_UNIX, ...)`` fails with EACCES, so no socket in the file system
    (a Docker socket, a session bus, an X server, an ssh agent) can be reached, whatever its
    permissions say; ``io_uring_setup`` (which could make a socket past the filter) fails with
    ENOSYS, and so does every system call of another ABI (32-bit, x32). False where seccomp or
    this architecture is not known (nothing installed)."""
    arch = _SECCOMP_ARCH.get(os.uname().machine)
    if arch is None:
        return False
    audit_arch, socket_nr = arch
    ret_errno = 0x00050000
    allow, enosys, eacces = 0x7FFF0000, ret_errno | errno.ENOSYS, ret_errno | errno.EACCES
    ld_abs, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    program = [
        (ld_abs, 0, 0, 4),  # arch
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, enosys),
        (ld_abs, 0, 0, 0),  # the system call's number
        (jge, 5, 0, 0x40000000),  # x32
        (jeq, 4, 0, _SYS_IO_URING_SETUP),
        (jeq, 0, 2, socket_nr),
        (ld_abs, 0, 0, 16),  # socket's first argument: the address family (low 32 bits)
        (jeq, 1, 0, 1),  # AF_UNIX
        (ret, 0, 0, allow),
        (ret, 0, 0, eacces),
        (ret, 0, 0, enosys),
    ]

    class Filter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]

    filters = (Filter * len(program))(*(Filter(*line) for line in program))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    prog = Program(len(program), filters)
    return bool(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) == 0)


def join_cgroups(procs_files: list[str]) -> bool:
    """Move this process (so everything it starts) into the cgroups made for it (whole-tree memory
    and process bounds); False when one cannot be joined."""
    try:
        for path in procs_files:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
    except OSError:
        return False
    return True


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
    """Bytes on disk beneath ``root``; counting stops past ``stop_bytes``. A look costs at most
    ``stop_entries`` stat calls: a workspace with more entries than that counts as over the limit
    (so a program cannot hide what it writes behind a hundred thousand empty files)."""
    used, entries, folders = 0, 0, [root]
    while folders and used <= stop_bytes:
        try:
            with os.scandir(folders.pop()) as found:
                for entry in found:
                    entries += 1
                    if entries > stop_entries:
                        return max(used, stop_bytes + 1)
                    info = entry.stat(follow_symlinks=False)
                    used += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
        except OSError:
            continue
    return used


def supervise(
    command: list[str],
    seconds: float | None,
    workspace: str | None = None,
    disk_mb: int | None = None,
    prepare: Callable[[], None] | None = None,
) -> int:
    """Run the command as a child, at most ``seconds`` (None: until it ends or the launcher is
    killed), with at most ``disk_mb`` in ``workspace`` (looked at every DISK_POLL_S); end everything
    it started; its status. ``prepare`` runs in the child before ``exec`` (the confinement): if it
    raises OSError the command does not run (exit status 125)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    pid = os.fork()
    if pid == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # dies with the launcher, whoever kills it
        try:
            if prepare is not None:
                prepare()
        except OSError as exc:  # never run unconfined when confinement was expected and failed
            sys.stderr.write(f"pytest-upskill sandbox: cannot confine the program: {exc}\n")
            sys.stderr.flush()
            os._exit(125)
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
    missing = [] if join_cgroups(policy.get("cgroups", [])) else ["whole-tree memory and process bound"]
    missing += isolate()

    def prepare() -> None:
        """In the program's process, before exec: its own /proc, Landlock, limits, no capability,
        no Unix socket."""
        if "private /proc" not in missing and not private_proc():
            missing.append("private /proc")
        confine(policy["workspace"], tuple(policy.get("writable", ())))
        set_limits(policy["memory_mb"], policy["cpu_s"], policy["file_mb"])
        drop_capabilities()
        if not forbid_unix_sockets():
            missing.append("Unix socket filter")
        for name in missing:
            sys.stderr.write(f"{MISSING_MARK} {name}\n")
        sys.stderr.flush()

    seconds = policy["seconds"]
    os._exit(
        supervise(
            command,
            float(seconds) if seconds is not None else None,
            policy["workspace"],
            policy.get("disk_mb"),
            prepare,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
