"""OSError -> unistore error: the one errno translator of the backends that speak POSIX (posixfs, sftp).

Callers keep the original as the cause: ``raise translate_oserror(e, name) from e``. The message
names the item and says what went wrong in words, never a raw errno number alone.
"""

from __future__ import annotations

import errno

from ..errors import (
    BackendConnectionError,
    BackendError,
    DirectoryNotEmpty,
    InvalidName,
    NameConflict,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
    UnistoreError,
)

_TABLE: dict[int, tuple[type[UnistoreError], str]] = {
    errno.ENOENT: (ObjectNotFound, "does not exist"),
    errno.EACCES: (PermissionDenied, "permission denied"),
    errno.EPERM: (PermissionDenied, "operation not permitted"),
    errno.EROFS: (PermissionDenied, "read-only file system"),
    errno.ELOOP: (PermissionDenied, "refusing to follow a symbolic link"),
    errno.ENOSPC: (QuotaExceeded, "no space left on the device"),
    errno.EDQUOT: (QuotaExceeded, "disk quota exceeded"),
    errno.EFBIG: (QuotaExceeded, "file too large"),
    errno.ENAMETOOLONG: (InvalidName, "name too long for this storage"),
    errno.EISDIR: (NameConflict, "is a directory"),
    errno.ENOTDIR: (NameConflict, "a parent is an item, not a directory"),
    errno.EEXIST: (NameConflict, "already exists"),
    errno.ENOTEMPTY: (DirectoryNotEmpty, "directory not empty"),
    errno.ECONNRESET: (BackendConnectionError, "connection reset"),
    errno.ECONNABORTED: (BackendConnectionError, "connection aborted"),
    errno.ECONNREFUSED: (BackendConnectionError, "connection refused"),
    errno.ENOTCONN: (BackendConnectionError, "not connected"),
    errno.EPIPE: (BackendConnectionError, "connection closed"),
    errno.ETIMEDOUT: (BackendConnectionError, "timed out"),
    errno.EHOSTUNREACH: (BackendConnectionError, "host unreachable"),
    errno.ENETUNREACH: (BackendConnectionError, "network unreachable"),
}


def translate_oserror(exc: OSError, name: str) -> UnistoreError:
    """The typed error for ``exc`` raised while working on ``name`` (a backend name)."""
    if isinstance(exc, UnistoreError):
        return exc
    code = exc.errno
    if code is None and isinstance(exc, TimeoutError):
        code = errno.ETIMEDOUT
    cls, words = _TABLE.get(code or -1, (BackendError, ""))
    if not words:
        words = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    return cls(f"{name}: {words}" if name else words)
