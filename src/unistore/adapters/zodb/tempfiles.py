"""Temporary files shared by several processes in one directory, and the removal of crashed owners' files.

The staging directory (``cache-dir/tmp`` by default) and the cache's ``incoming`` directory may be
shared by every process of a site. Each user of such a directory ``D`` (one per storage or cache
object) takes a random *token* and holds an exclusive ``flock`` on ``{token}.lock`` in the sibling
directory ``.{name of D}.owners`` for as long as it lives (not in ``D`` itself: ZODB's tests expect
an idle ``temporaryDirectory()`` to be empty); every temporary file it creates in ``D`` is named
``{token}.<anything><suffix>``. The kernel
drops the lock when the owner's process ends, however it ends (SIGKILL, OOM, power loss of a
client), so at open :meth:`OwnedTempDir.sweep` can tell a live owner's files (its lock is held)
from a dead owner's (its lock can be taken, or its lock file is gone) without guessing from ages or
PIDs, and removes only the latter.

The lock file is created and locked under a temporary name and only then renamed into place, so no
sweeper ever sees an unlocked lock file of a live owner. Files without a token (written by versions
before this scheme) are removed when they are older than ``legacy_age`` seconds.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
import time
import uuid
from typing import IO

log = logging.getLogger("unistore.adapters.zodb.tempfiles")

_LOCK_SUFFIX = ".lock"
_NEW_LOCK_PREFIX = ".new-"
_TOKEN = re.compile(r"^[0-9a-f]{32}$")


class OwnedTempDir:
    """A directory where this owner's temporary files carry its token; removes dead owners' files."""

    def __init__(self, directory: str, suffixes: tuple[str, ...], *, legacy_age: float = 3600.0):
        self.directory = os.path.realpath(directory)  # every sharer finds the same lock directory
        self.suffixes = suffixes
        self.legacy_age = legacy_age
        os.makedirs(self.directory, exist_ok=True)
        parent, name = os.path.split(self.directory)
        self.lock_dir = os.path.join(parent, f".{name}.owners")
        os.makedirs(self.lock_dir, exist_ok=True)
        self.token = uuid.uuid4().hex
        self._lock_path = self._lock_name(self.token)
        self._lock_file: IO[bytes] | None = _create_locked(self.lock_dir, self._lock_path)

    def _lock_name(self, token: str) -> str:
        return os.path.join(self.lock_dir, f"{token}{_LOCK_SUFFIX}")

    def path(self, stem: str, suffix: str) -> str:
        """A path for a new file of this owner: ``{directory}/{token}.{stem}{suffix}``."""
        return os.path.join(self.directory, f"{self.token}.{stem}{suffix}")

    def mkstemp(self, stem: str, suffix: str) -> tuple[int, str]:
        """Create a new unique file of this owner (as :func:`tempfile.mkstemp`)."""
        return tempfile.mkstemp(prefix=f"{self.token}.{stem}", suffix=suffix, dir=self.directory)

    def owns(self, path: str) -> bool:
        return os.path.basename(path).startswith(self.token + ".")

    def sweep(self) -> int:
        """Remove the files of owners that are gone; return how many files were removed."""
        t0 = time.perf_counter()
        dead: dict[str, IO[bytes] | None] = {}  # token -> its lock file, held by us (None: no lock file)
        alive: set[str] = {self.token}
        removed = 0
        try:
            for entry in _scandir(self.directory):
                name = entry.name
                if not name.endswith(self.suffixes):
                    continue  # not a file of ours (ZODB's own uncommitted blob files live here too)
                token, dot, _rest = name.partition(".")
                if not dot or not _TOKEN.match(token):
                    if self._older_than_legacy_age(entry):
                        removed += _unlink(entry.path)
                    continue
                if token in alive:
                    continue
                if token in dead or not self._judge(token, alive, dead):
                    removed += _unlink(entry.path)
            for entry in _scandir(self.lock_dir):  # lock files of owners that left nothing behind
                token = entry.name[: -len(_LOCK_SUFFIX)]
                if entry.name.endswith(_LOCK_SUFFIX) and _TOKEN.match(token):
                    if token not in alive and token not in dead:
                        self._judge(token, alive, dead)
                elif entry.name.startswith(_NEW_LOCK_PREFIX) and self._older_than_legacy_age(entry):
                    _unlink(entry.path)  # its creator ended between creating and renaming it
        finally:
            for token, lock_file in dead.items():
                if lock_file is not None:
                    _unlink(self._lock_name(token))  # still holding its lock: nobody else judges it now
                    lock_file.close()
        if removed:
            log.info("removed %d temporary files left by ended processes in %s", removed, self.directory)
        log.debug("swept %s: %d removed in %.3f s", self.directory, removed, time.perf_counter() - t0)
        return removed

    def _judge(self, token: str, alive: set[str], dead: dict[str, IO[bytes] | None]) -> bool:
        """True when the owner ``token`` is alive (its lock is held); records the verdict."""
        try:
            lock_file = open(self._lock_name(token), "rb")  # noqa: SIM115 (kept open while we hold its lock)
        except FileNotFoundError:
            dead[token] = None  # it closed (or a sweeper found it dead): what it left is garbage
            return False
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            alive.add(token)
            return True
        dead[token] = lock_file
        return False

    def _older_than_legacy_age(self, entry: os.DirEntry[str]) -> bool:
        try:
            return time.time() - entry.stat(follow_symlinks=False).st_mtime > self.legacy_age
        except FileNotFoundError:
            return False

    def close(self) -> None:
        """Give up ownership (this owner's files should be gone by now; a later sweep removes any left)."""
        if self._lock_file is None:
            return
        _unlink(self._lock_path)
        self._lock_file.close()
        self._lock_file = None


def _create_locked(directory: str, final_path: str) -> IO[bytes]:
    """Create ``final_path`` holding an exclusive flock on it, never visible unlocked."""
    fd, tmp = tempfile.mkstemp(prefix=_NEW_LOCK_PREFIX, dir=directory)
    lock_file = os.fdopen(fd, "wb")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        os.replace(tmp, final_path)
    except BaseException:
        lock_file.close()
        _unlink(tmp)
        raise
    return lock_file


def _scandir(directory: str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(directory))
    except FileNotFoundError:
        return []


def _unlink(path: str) -> int:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1
