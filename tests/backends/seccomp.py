"""Kernel-level fault injection for posixfs tests: run a script in a child process under a seccomp
filter that makes chosen system calls fail with a chosen errno.

This observes what our code really asks of the kernel (an fsync that is never made cannot fail)
and produces real errnos (ENOSPC, EACCES as root, EIO) without mocking anything in Python. The
filter is plain classic BPF installed with prctl through ctypes, so it needs no package; it works on
x86_64 and aarch64 Linux.

Inside the script: ``install(rules)`` installs the filter (irreversibly, for that child), where each
rule is ``(syscall, arg_index | None, op | None, value, errno_name)`` with op ``"eq"``, ``"ge"`` or
``"set"`` (any bit of value set) on the low 32 bits of the argument; ``report(**values)`` prints
the JSON result that :func:`run_filtered` returns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

PRELUDE = r'''
import ctypes, errno, json, os, platform, struct, sys

_ARCHES = {
    "x86_64": (0xC000003E, {"read": 0, "write": 1, "pread64": 17, "readv": 19, "fsync": 74, "fdatasync": 75,
                            "rename": 82, "mkdir": 83, "openat": 257, "mkdirat": 258, "renameat": 264,
                            "renameat2": 316, "openat2": 437}),
    "aarch64": (0xC00000B7, {"read": 63, "write": 64, "pread64": 67, "readv": 65, "fsync": 82, "fdatasync": 83,
                             "openat": 56, "mkdirat": 34, "renameat": 38, "renameat2": 276, "openat2": 437}),
}


def install(rules):
    arch, numbers = _ARCHES[platform.machine()]
    def stmt(code, k):
        return struct.pack("HBBI", code, 0, 0, k)
    def jump(code, k, jt, jf):
        return struct.pack("HBBI", code, jt, jf, k)
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    prog = [stmt(LD, 4), jump(JEQ, arch, 1, 0), stmt(RET, ALLOW), stmt(LD, 0)]
    for name, arg, op, value, err in rules:
        if name not in numbers:
            continue  # e.g. no plain rename() on aarch64
        nr, code = numbers[name], getattr(errno, err)
        if arg is None:
            prog += [jump(JEQ, nr, 0, 1), stmt(RET, ERRNO | code)]
        else:
            jop = {"eq": JEQ, "ge": JGE, "set": JSET}[op]
            prog += [jump(JEQ, nr, 0, 3), stmt(LD, 16 + 8 * arg), jump(jop, value, 0, 1), stmt(RET, ERRNO | code),
                     stmt(LD, 0)]
    prog.append(stmt(RET, ALLOW))
    buf = ctypes.create_string_buffer(b"".join(prog))
    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fprog = Prog(len(prog), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def report(**values):
    sys.stdout.write("RESULT " + json.dumps(values) + "\n")
    sys.stdout.flush()
'''


def run_filtered(script: str, timeout: float = 60) -> dict[str, Any]:
    """Run ``script`` (which calls install() and report()) in a child; return what it reported."""
    code = PRELUDE + "\n" + textwrap.dedent(script)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])  # type: ignore[no-any-return]
    raise AssertionError(f"the child reported nothing (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
