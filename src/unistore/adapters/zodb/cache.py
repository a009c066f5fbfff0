"""Local read cache of committed ZODB blob revisions.

Each revision lives at ``{directory}/blobs/{oid_hex}/{tid_hex}.blob``. A revision's bytes never
change once committed, so a cache entry is either absent or complete and correct:

* fills are atomic: the bytes go to a unique temporary file in ``{directory}/incoming`` and are then
  renamed into place, so no reader ever sees a partial file, and two threads or processes filling
  the same revision at once both install identical bytes; partial files of a process that ended
  are removed when the next cache opens, those of live processes never
  (:class:`~unistore.adapters.zodb.tempfiles.OwnedTempDir`);
* in one process, concurrent cold reads of one revision share a single download (one GET);
* committed files are read-only (readable as their directory is, like ZODB's own blob files);
* the cache is a size-accounted LRU: every process accounts the entries it knows about and, when
  over the limit, removes the least recently used ones under an exclusive ``flock`` on
  ``{directory}/.lock``. Entries handed out during the last ``grace`` seconds are kept (a caller of
  ``loadBlob`` gets a path and opens it a moment later), and :meth:`BlobCache.open` opens files
  under the cache lock, so an open reader is never evicted under (POSIX keeps unlinked open files).
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, Any, TypeVar

from .layout import Key
from .tempfiles import OwnedTempDir

log = logging.getLogger("unistore.adapters.zodb.cache")

T = TypeVar("T")

DEFAULT_CACHE_SIZE = 1024**3
READ_PERMS = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class BlobCache:
    """A size-limited LRU directory of committed blob files, safe for threads and processes."""

    def __init__(self, directory: str, size_limit: int = DEFAULT_CACHE_SIZE, *, grace: float = 10.0):
        self.directory = os.path.abspath(directory)
        self.size_limit = int(size_limit)
        self.grace = grace
        self.blob_dir = os.path.join(self.directory, "blobs")
        self.incoming = os.path.join(self.directory, "incoming")
        os.makedirs(self.blob_dir, exist_ok=True)
        self._incoming = OwnedTempDir(self.incoming, (".part",))
        self._lockfile = os.path.join(self.directory, ".lock")
        self._lock = threading.RLock()
        # key -> [size, last_access]; order = LRU (oldest first)
        self._entries: OrderedDict[Key, list[float]] = OrderedDict()
        self._total = 0
        self._fetching: dict[Key, Future[str]] = {}
        self._scan()

    def close(self) -> None:
        """Release this cache's claim on its partial downloads (none are left once reads returned)."""
        self._incoming.close()

    # ------------------------------------------------------------------ paths
    def path(self, key: Key) -> str:
        return os.path.join(self.blob_dir, key[0], f"{key[1]}.blob")

    @property
    def total_size(self) -> int:
        """Bytes this process accounts in the cache."""
        return self._total

    def __contains__(self, key: Key) -> bool:
        return os.path.exists(self.path(key))

    def _scan(self) -> None:
        """Account the entries already on disk (oldest access first)."""
        found: list[tuple[float, Key, int]] = []
        try:
            oid_dirs = list(os.scandir(self.blob_dir))
        except FileNotFoundError:
            return
        for d in oid_dirs:
            if not d.is_dir(follow_symlinks=False):
                continue
            for f in os.scandir(d.path):
                if f.name.endswith(".blob") and f.is_file(follow_symlinks=False):
                    st = f.stat(follow_symlinks=False)
                    found.append((st.st_atime, (d.name, f.name[:-5]), st.st_size))
        found.sort()
        with self._lock:
            for _atime, key, size in found:
                self._entries[key] = [size, 0.0]
                self._total += size
        self._incoming.sweep()  # partial downloads of processes that ended (live ones are kept)

    # ------------------------------------------------------------------ reading
    def get(self, key: Key, fetch: Callable[[IO[bytes]], Any]) -> str:
        """The path of the cached revision ``key``, downloading it with ``fetch`` when missing."""
        return self.open(key, fetch, _existing)

    def open(self, key: Key, fetch: Callable[[IO[bytes]], Any], opener: Callable[[str], T]) -> T:
        """Call ``opener(path)`` on the cached revision while it cannot be evicted; fetch if missing.

        ``fetch(file)`` writes the revision's bytes to ``file`` and raises if it does not exist.
        """
        path = self.path(key)
        for _attempt in range(3):
            with self._lock:
                try:
                    result = opener(path)
                except FileNotFoundError:
                    self._forget(key)
                else:
                    self._touch(key, path)
                    return result
            self._fill(key, fetch)
        # evicted by other processes three times in a row: give it to the caller regardless
        return opener(path)

    def _touch(self, key: Key, path: str) -> None:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is None:
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                return
            self._entries[key] = [size, now]
            self._total += size
        else:
            entry[1] = now
            self._entries.move_to_end(key)

    def _forget(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._total -= int(entry[0])

    def _fill(self, key: Key, fetch: Callable[[IO[bytes]], Any]) -> str:
        """Download ``key`` once per process, however many threads ask at the same time."""
        with self._lock:
            fut = self._fetching.get(key)
            owner = fut is None
            if fut is None:
                fut = self._fetching[key] = Future()
        if not owner:
            return fut.result()
        try:
            path = self._download(key, fetch)
        except BaseException as exc:
            fut.set_exception(exc)
            raise
        else:
            fut.set_result(path)
            return path
        finally:
            with self._lock:
                del self._fetching[key]

    def _download(self, key: Key, fetch: Callable[[IO[bytes]], Any]) -> str:
        t0 = time.perf_counter()
        fd, tmp = self._incoming.mkstemp(f"{key[0]}-{key[1]}-", ".part")
        try:
            with os.fdopen(fd, "wb") as f:
                fetch(f)
                size = f.tell()
            path = self._install(key, tmp, size)
        except BaseException:
            _unlink(tmp)
            raise
        log.debug("fetched %s/%s: %d bytes in %.3f s", key[0], key[1], size, time.perf_counter() - t0)
        return path

    # ------------------------------------------------------------------ writing
    def _install(self, key: Key, tmp: str, size: int) -> str:
        """Rename the complete file ``tmp`` into place as entry ``key`` (read-only) and account it."""
        path = self.path(key)
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        os.chmod(tmp, stat.S_IRUSR | (stat.S_IMODE(os.stat(parent).st_mode) & READ_PERMS))
        with self._lock:
            os.replace(tmp, path)
            self._forget(key)
            self._entries[key] = [size, time.monotonic()]
            self._total += size
        self._evict_if_needed()
        return path

    def add(self, key: Key, source: str) -> None:
        """Move the complete file ``source`` (a just-committed revision) into the cache; it is consumed.

        On the same file system that is one rename (atomic); across file systems the file is
        dropped instead, since copying would cost the committer time (a later read downloads it).
        """
        try:
            st = os.stat(source)
            if st.st_dev == os.stat(self.incoming).st_dev:
                self._install(key, source, st.st_size)
            else:
                _unlink(source)
        except OSError:
            log.warning("could not add %s/%s to the blob cache", key[0], key[1], exc_info=True)
            _unlink(source)

    def discard(self, key: Key) -> None:
        """Remove entry ``key`` (pack removed the revision)."""
        with self._lock:
            self._forget(key)
            _unlink(self.path(key))
        _rmdir_quiet(os.path.dirname(self.path(key)))

    # ------------------------------------------------------------------ eviction
    def _evict_if_needed(self) -> None:
        if self._total <= self.size_limit:
            return
        target = int(self.size_limit * 0.9)
        t0 = time.perf_counter()
        removed = freed = 0
        with open(self._lockfile, "a+b") as lf:
            fcntl.flock(lf, fcntl.LOCK_EX)
            try:
                with self._lock:
                    now = time.monotonic()
                    for key in list(self._entries):
                        if self._total <= target:
                            break
                        size, last = self._entries[key]
                        if last and now - last < self.grace:
                            continue  # handed out a moment ago: the caller may not have opened it yet
                        self._forget(key)
                        _unlink(self.path(key))
                        removed += 1
                        freed += int(size)
            finally:
                fcntl.flock(lf, fcntl.LOCK_UN)
        log.debug("evicted %d entries, %d bytes in %.3f s", removed, freed, time.perf_counter() - t0)


def _existing(path: str) -> str:
    os.stat(path)  # FileNotFoundError if missing
    return path


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _rmdir_quiet(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass
