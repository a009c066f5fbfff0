"""Auto-restore: bring media files back into the local media store from the backend.

The enhanced fork's feature, bounded: a pass lists the backend below the prefix, keeps the media
files the local store lacks, and restores them newest first while they fit into
``auto_restore_max_bytes`` (and leave 5 % of the disk free), ``batch_size`` at a time on a few
threads. Each file is written to a temp file in its target directory and renamed into place, so
Synapse never sees a half-written file. A pass runs at start-up (``auto_restore_startup``) and every
``auto_restore_monitor_interval`` seconds, always off the reactor, one pass at a time, and logs one
line of counts.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ...backends.base import Backend, ItemInfo
from ...errors import ObjectNotFound
from .layout import is_media_path

log = logging.getLogger("unistore.adapters.synapse.restore")

MIN_FREE_FRACTION = 0.05


@dataclass
class RestoreCounts:
    """What one pass did."""

    listed: int = 0
    missing: int = 0
    restored: int = 0
    restored_bytes: int = 0
    over_budget: int = 0
    failed: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"auto-restore: {self.restored} of {self.missing} missing files restored ({self.restored_bytes} bytes), "
            f"{self.over_budget} left out by the byte budget, {self.failed} failed, "
            f"{self.listed} objects listed, {self.seconds:.1f}s"
        )


class Restorer:
    """One restore pass over a backend (blocking; run it on a thread)."""

    def __init__(
        self,
        backend: Callable[[], Backend],
        media_store_path: str,
        prefix: str,
        *,
        batch_size: int = 50,
        max_bytes: int = 1024**3,
        workers: int = 4,
    ) -> None:
        self._backend = backend
        self.media_store_path = media_store_path
        self.prefix = prefix
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.workers = max(1, workers)
        self.stopping = threading.Event()

    def _objects(self, backend: Backend) -> Iterator[tuple[str, ItemInfo]]:
        """``(media path, item)`` for every media object below the prefix (which need not end in ``/``)."""
        directory, _, stem = self.prefix.rpartition("/")
        try:
            items = backend.list_recursive(directory)
            for item in items:
                if item.directory or not item.name.startswith(stem):
                    continue
                path = item.name[len(stem) :]
                if is_media_path(path):
                    yield path, item
        except ObjectNotFound:  # nothing stored yet
            return

    def _budget(self) -> int:
        try:
            usage = shutil.disk_usage(self.media_store_path)
        except OSError:
            return self.max_bytes
        return max(0, min(self.max_bytes, usage.free - int(usage.total * MIN_FREE_FRACTION)))

    def run_pass(self) -> RestoreCounts:
        t0 = time.monotonic()
        counts = RestoreCounts()
        backend = self._backend()
        missing: list[tuple[float, str, ItemInfo]] = []
        for path, item in self._objects(backend):
            counts.listed += 1
            if not os.path.exists(os.path.join(self.media_store_path, path)):
                missing.append((item.mtime, path, item))
        counts.missing = len(missing)
        missing.sort(key=lambda m: (-m[0], m[1]))  # newest first
        budget = self._budget()
        chosen: list[tuple[str, ItemInfo]] = []
        for _, path, item in missing:
            if item.size <= budget:
                budget -= item.size
                chosen.append((path, item))
            else:
                counts.over_budget += 1
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="unistore-synapse-restore") as pool:
            for start in range(0, len(chosen), self.batch_size):
                if self.stopping.is_set():
                    break
                batch = chosen[start : start + self.batch_size]
                for (path, _), result in zip(
                    batch, pool.map(lambda c: self._restore_one(backend, *c), batch), strict=True
                ):
                    if isinstance(result, int):
                        counts.restored += 1 if result >= 0 else 0
                        counts.restored_bytes += max(result, 0)
                    else:
                        counts.failed += 1
                        counts.errors.append(f"{path}: {result}")
        counts.seconds = time.monotonic() - t0
        return counts

    def _restore_one(self, backend: Backend, path: str, item: ItemInfo) -> int | str:
        """Restore one file atomically; its size, -1 if it appeared meanwhile, or an error text."""
        target = os.path.join(self.media_store_path, path)
        if self.stopping.is_set() or os.path.exists(target):
            return -1
        directory = os.path.dirname(target)
        tmp = os.path.join(directory, f".{os.path.basename(target)}.unistore-restore-{uuid.uuid4().hex[:8]}")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "wb") as f:
                written = backend.load_file(self.prefix + path, f)
                f.flush()
                os.fsync(f.fileno())
            if written != item.size:
                raise OSError(f"got {written} of {item.size} bytes")
            if os.path.exists(target):  # Synapse wrote it meanwhile: keep Synapse's
                os.unlink(tmp)
                return -1
            os.replace(tmp, target)
            return written
        except Exception as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return f"{type(e).__name__}: {e}"


class AutoRestore:
    """Schedules :class:`Restorer` passes on the reactor: at start-up and every interval, one at a time."""

    def __init__(self, reactor: Any, restorer: Restorer, *, startup: bool, interval: float) -> None:
        from twisted.python.threadpool import ThreadPool

        self._reactor = reactor
        self.restorer = restorer
        self._startup = startup
        self._interval = interval
        self._pool = ThreadPool(minthreads=0, maxthreads=1, name="unistore-synapse-restore")
        self._loop: Any = None
        self._running = False
        self.passes: list[RestoreCounts] = []

    def start(self) -> None:
        from twisted.internet import task

        self._pool.start()
        if self._interval > 0:
            self._loop = task.LoopingCall(self.run_once)
            self._loop.clock = self._reactor
            self._loop.start(self._interval, now=self._startup)
        elif self._startup:
            self.run_once()

    def run_once(self) -> None:
        """Start a pass unless one is running (reactor thread)."""
        from twisted.internet import threads

        if self._running or self.restorer.stopping.is_set():
            return
        self._running = True
        d = threads.deferToThreadPool(self._reactor, self._pool, self.restorer.run_pass)
        d.addCallbacks(self._done, self._failed)

    def _done(self, counts: RestoreCounts) -> None:
        self._running = False
        self.passes.append(counts)
        del self.passes[:-10]
        level = logging.WARNING if counts.failed else logging.INFO
        log.log(level, "%s", counts.line())
        for error in counts.errors[:5]:
            log.warning("auto-restore failed for %s", error)

    def _failed(self, failure: Any) -> None:
        self._running = False
        log.warning("auto-restore pass failed: %s", failure.getErrorMessage())

    def stop(self) -> None:
        self.restorer.stopping.set()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._pool.stop()
