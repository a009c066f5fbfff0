"""Quota accounting of posixfs, exact across threads and processes.

The usage lives in ``quota.hid`` at the root (20 ASCII digits, readable as borgstore's decimal
number). Every operation that changes what is stored (the rename of a store, a move onto an
existing item, a delete) runs under a thread lock plus an ``flock`` on that file, and reads the size
it replaces, checks the limit, changes the tree and writes the new usage inside that one critical
section. So concurrent overwrites of one key can neither drive usage negative nor slip past the
limit, and all processes see one total.

A process killed inside the critical section leaves its session file behind (see sessions.py); the
next open then rescans the tree under the same lock.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import threading

from ...errors import QuotaExceeded
from .dirs import walk_files

logger = logging.getLogger("unistore.backends.posixfs")

QUOTA_FILE = "quota.hid"
_WIDTH = 20


def scan_usage(root_fd: int) -> int:
    """Bytes stored in items: regular files a listing shows (no temp, hidden or internal files)."""
    total = 0
    for _rel, _fd, e in walk_files(root_fd, visible_only=True):
        try:
            total += e.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
    return total


def _size(dir_fd: int, leaf: str) -> int:
    """Size of the item ``leaf`` (0 if missing); IsADirectoryError if it is a directory."""
    try:
        st = os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), leaf)
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


class Quota:
    """The shared usage record of one open posixfs backend."""

    def __init__(self, root_fd: int, limit: int) -> None:
        self.root_fd = root_fd
        self.limit = limit
        self._lock = threading.Lock()
        self._fd = -1

    def open(self, rescan: bool) -> None:
        self._fd = os.open(
            QUOTA_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666, dir_fd=self.root_fd
        )
        if rescan:
            with self._lock:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                try:
                    self._write(scan_usage(self.root_fd))
                finally:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ----------------------------------------------------------------- inside the critical section
    # Each operation runs under ``with self._lock`` plus the flock. If an exception (Ctrl-C
    # included) interrupts the filesystem call, the usage is still made to match what the
    # filesystem shows afterwards: whether the call took effect is read back from the tree.
    def _read(self) -> int:
        raw = os.pread(self._fd, 64, 0)
        try:
            return int(raw)
        except ValueError:  # new, emptied or torn: count what is there
            usage = scan_usage(self.root_fd)
            self._write(usage)
            return usage

    def _write(self, usage: int) -> None:
        data = b"%0*d" % (_WIDTH, max(usage, 0))
        os.pwrite(self._fd, data, 0)
        if os.fstat(self._fd).st_size != len(data):
            os.ftruncate(self._fd, len(data))

    # ----------------------------------------------------------------- operations
    def usage(self) -> int:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                return self._read()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def replace(self, dir_fd: int, tmp: str, leaf: str, size: int, name: str) -> None:
        """Rename temp file ``tmp`` (``size`` bytes) onto ``leaf`` if the quota allows it."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                usage = self._read()
                delta = size - _size(dir_fd, leaf)
                if delta > 0 and usage + delta > self.limit:
                    raise QuotaExceeded(
                        f"storing {size} bytes as {name!r} would exceed the quota: {usage + delta} > {self.limit}"
                    )
                try:
                    os.rename(tmp, leaf, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                except OSError:
                    raise  # the rename failed: nothing changed
                except BaseException:  # e.g. Ctrl-C as the rename returned
                    if not _exists(dir_fd, tmp):
                        self._write(usage + delta)
                    raise
                if delta:
                    self._write(usage + delta)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def move(self, src_fd: int, src: str, dst_fd: int, dst: str) -> None:
        """Rename an item onto ``dst``; a replaced item no longer counts."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                usage = self._read()
                replaced = _size(dst_fd, dst)
                try:
                    os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
                except OSError:
                    raise  # the rename failed (the source may be gone already): nothing changed
                except BaseException:
                    if replaced and not _exists(src_fd, src):
                        self._write(usage - replaced)
                    raise
                if replaced:
                    self._write(usage - replaced)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def remove(self, dir_fd: int, leaf: str) -> None:
        """Unlink item ``leaf``."""
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                usage = self._read()
                size = _size(dir_fd, leaf)
                try:
                    os.unlink(leaf, dir_fd=dir_fd)
                except OSError:
                    raise
                except BaseException:
                    if size and not _exists(dir_fd, leaf):
                        self._write(usage - size)
                    raise
                if size:
                    self._write(usage - size)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


def _exists(dir_fd: int, leaf: str) -> bool:
    try:
        os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True
