"""What the ``unistore`` command prints: results (text or ``--json``), one-line errors, exit codes.

Exit codes: 0 success, 1 the operation failed (missing item, lost connection, a difference found by
``check``), 2 bad input (usage, names, options, local files, permissions, ranges), 130 interrupted.
Every error is one line on stderr; with ``--json`` a JSON object ``{"error": {...}}`` goes to stdout too.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from typing import Any

from ..errors import (
    BackendURLInvalid,
    CapabilityNotSupported,
    ConfigError,
    CredentialsError,
    DirectoryNotEmpty,
    InvalidName,
    NoBackendGiven,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
    UnistoreError,
)
from ..url import redact

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(UnistoreError):
    """Bad command-line input (exit code 2)."""


class Interrupted(Exception):
    """Ctrl-C ended the command (exit code 130)."""


_USER_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    InvalidName,
    BackendURLInvalid,
    NoBackendGiven,
    ConfigError,
    PermissionDenied,
    ReadRangeError,
    CredentialsError,
    CapabilityNotSupported,
    DirectoryNotEmpty,
)

_OS_WORDS = {
    errno.ENOENT: "no such file or directory",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EEXIST: "already exists",
}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 20:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def classify(exc: BaseException) -> tuple[int, str, str]:
    """``(exit code, error type, one-line message)`` for an exception that ended a command."""
    for e in _chain(exc):
        if isinstance(e, socket.gaierror):
            return EXIT_USAGE, "UnknownHost", f"cannot resolve the host name ({e.strerror or e})"
    if isinstance(exc, Interrupted):
        return EXIT_INTERRUPTED, "Interrupted", str(exc) or "interrupted"
    if isinstance(exc, ObjectNotFound):
        return EXIT_FAILED, "ObjectNotFound", f"not found: {exc}"
    if isinstance(exc, _USER_ERRORS):
        return EXIT_USAGE, type(exc).__name__, str(exc)
    if isinstance(exc, UnistoreError):
        return EXIT_FAILED, type(exc).__name__, str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno is not None:
        words = exc.strerror or _OS_WORDS.get(exc.errno, str(exc))
        where = exc.filename if exc.filename is not None else ""
        return EXIT_USAGE, type(exc).__name__, f"{where}: {words}" if where else words
    if type(exc).__module__.split(".")[0] == "ZConfig":  # a ZODB config file the user gave
        text = " ".join(str(exc).split())
        return EXIT_USAGE, "ConfigError", f"configuration: {text}"
    return EXIT_FAILED, type(exc).__name__, " ".join(str(exc).split()) or type(exc).__name__


class Output:
    """Prints results and errors in the mode the user chose."""

    def __init__(self, json_mode: bool = False) -> None:
        self.json = json_mode

    def result(self, data: Any, text: str | None) -> None:
        if self.json:
            print(json.dumps(data, sort_keys=True, default=str), flush=True)
        elif text is not None:
            print(text, flush=True)

    def note(self, text: str) -> None:
        """A remark on stderr (never on stdout, so ``--json`` output stays parseable)."""
        print(f"unistore: {text}", file=sys.stderr, flush=True)

    def error(self, exc: BaseException) -> int:
        code, kind, message = classify(exc)
        message = redact(" ".join(message.split()))
        if code == EXIT_INTERRUPTED:
            line = f"unistore: {message}"
        elif kind == "ObjectNotFound":
            line = f"unistore: {message}"
        elif code == EXIT_USAGE:
            line = f"unistore: error: {message}"
        else:
            line = f"unistore: {kind}: {message}"
        print(line, file=sys.stderr, flush=True)
        if self.json:
            print(json.dumps({"error": {"type": kind, "message": message, "exit_code": code}}), flush=True)
        return code
