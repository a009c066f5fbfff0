"""STUB until the lead's module lands on main (take theirs on merge)."""

from __future__ import annotations

import errno

from ..errors import (
    BackendError,
    InvalidName,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
    UnistoreError,
)


def translate_oserror(exc: OSError, name: str) -> UnistoreError:
    code = exc.errno
    if code == errno.ENOENT:
        return ObjectNotFound(name)
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"{name!r}: {exc.strerror}")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return QuotaExceeded(f"{name!r}: {exc.strerror}")
    if code == errno.ENAMETOOLONG:
        return InvalidName(f"name too long for the filesystem: {name!r}")
    return BackendError(f"{name!r}: {exc}")
