"""Sessions of posixfs: which opened backends are alive, and what a crashed one left behind.

Each open backend registers a session file ``sessions.hid/<token>`` and holds an ``flock`` on it
until it closes; a clean close removes the file. A session file whose lock can be taken belongs to
a process that died without closing (SIGKILL, power loss): its temp files (named
``<item>.<token>-<pid>-<n>.tmp``) are stale and the quota record may miss its last operation. The
lock is held by the open file description, so a forked child keeps its parent's session alive.

Registration and the clean-up of stale sessions run under an ``flock`` on the ``sessions.hid``
directory, so a session that starts while another process cleans up cannot lose its temp files.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import logging
import os
import re
import secrets
from collections.abc import Callable

from .dirs import O_DIR, walk_files

logger = logging.getLogger("unistore.backends.posixfs")

SESSIONS_DIR = "sessions.hid"
TEMP_RE = re.compile(r"\.([0-9a-f]{8})-[0-9a-f]+-[0-9a-f]+\.tmp\Z")


class Sessions:
    """This backend's session below ``root_fd``; ``open()`` reports whether a crash needs repair."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.token = secrets.token_hex(4)
        self._dir_fd = -1
        self._fd = -1

    def open(self, repair: Callable[[set[str]], None]) -> bool:
        """Register this session; if a session crashed (or none was ever recorded), call
        ``repair(live_tokens)`` under the registry lock and return True."""
        try:
            try:
                os.mkdir(SESSIONS_DIR, 0o777, dir_fd=self.root_fd)
                fresh = True
            except FileExistsError:
                fresh = False
            self._dir_fd = os.open(SESSIONS_DIR, O_DIR, dir_fd=self.root_fd)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                logger.debug("read-only store: no session recorded (%s)", e)
                return False
            raise
        fcntl.flock(self._dir_fd, fcntl.LOCK_EX)
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
            self._fd = os.open(self.token, flags, 0o666, dir_fd=self._dir_fd)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            live, stale = self._census()
            crashed = fresh or bool(stale)
            if crashed:
                logger.info("posixfs: repairing after %d crashed session(s)", len(stale))
                repair(live)
                for token in stale:
                    _unlink_quietly(token, self._dir_fd)
            return crashed
        finally:
            fcntl.flock(self._dir_fd, fcntl.LOCK_UN)

    def _census(self) -> tuple[set[str], builtins.list[str]]:
        live, stale = {self.token}, []
        for name in os.listdir(self._dir_fd):
            if name == self.token:
                continue
            try:
                fd = os.open(name, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=self._dir_fd)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                live.add(name)
            else:
                stale.append(name)
            finally:
                os.close(fd)
        return live, stale

    def close(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX)
            try:
                _unlink_quietly(self.token, self._dir_fd)
                os.close(self._fd)
                self._fd = -1
            finally:
                fcntl.flock(self._dir_fd, fcntl.LOCK_UN)
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1


def remove_stale_temps(root_fd: int, live: set[str]) -> int:
    """Remove the temp files of sessions not in ``live``; return how many were removed."""
    removed = 0
    for _rel, fd, e in walk_files(root_fd, visible_only=False):
        m = TEMP_RE.search(e.name)
        if m and m.group(1) not in live:
            _unlink_quietly(e.name, fd)
            removed += 1
    return removed


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
