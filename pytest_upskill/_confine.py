"""The launcher of :mod:`pytest_upskill.sandbox`: set limits, confine, then exec the command.

    python -I -m pytest_upskill._confine POLICY_JSON -- COMMAND...

Runs in the child, so nothing here touches the pytest process (no ``preexec_fn`` in a threaded
parent). Landlock rules are inherited by every process the command starts and cannot be undone.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

from .sandbox import _SYS_ADD_RULE, _SYS_CREATE_RULESET, _SYS_RESTRICT_SELF, landlock_abi

# Landlock access rights (linux/landlock.h)
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = (1 << n for n in range(4, 13))
REFER, TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def set_limits(memory_mb: int, cpu_s: int, file_mb: int) -> None:
    for name, value in ((resource.RLIMIT_AS, memory_mb << 20), (resource.RLIMIT_CPU, cpu_s),
                        (resource.RLIMIT_FSIZE, file_mb << 20), (resource.RLIMIT_CORE, 0)):
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
    write = WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM
    write |= (REFER if abi >= 2 else 0) | (TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(write, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0, SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    device = WRITE_FILE | (TRUNCATE if abi >= 3 else 0)
    for path, access in ((workspace, write), ("/dev/null", device), *((p, device) for p in writable)):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            rule = _PathBeneathAttr(access, fd)
            if libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH), ctypes.byref(rule), ctypes.c_uint32(0)) < 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        finally:
            os.close(fd)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)) < 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(ruleset)
    return abi


def main(argv: list[str]) -> None:
    policy = json.loads(argv[0])
    command = argv[argv.index("--") + 1 :]
    try:
        confine(policy["workspace"], tuple(policy.get("writable", ())))
        set_limits(policy["memory_mb"], policy["cpu_s"], policy["file_mb"])
    except OSError as exc:  # never run unconfined when confinement was expected and failed
        sys.stderr.write(f"pytest-upskill sandbox: cannot confine the program: {exc}\n")
        os._exit(125)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"pytest-upskill sandbox: cannot run {command[0]!r}: {exc.strerror or exc}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
