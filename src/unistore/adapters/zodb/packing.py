"""Orphan collection after a pack: delete blob revisions the base storage no longer references."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ZODB.POSException import POSKeyError, StorageTransactionError
from ZODB.utils import load_current, u64

from ...backends.base import Backend
from ...errors import ObjectNotFound
from .cache import BlobCache
from .layout import BLOB_ROOT, blob_key, parse_blob_name

log = logging.getLogger("unistore.adapters.zodb.packing")

DELETE_BATCH = 1000
MAX_REPORTED_NAMES = 10000


@dataclass
class GCResult:
    """What one orphan collection found and did."""

    examined: int = 0
    kept: int = 0
    deleted: int = 0
    deleted_bytes: int = 0
    skipped_in_flight: int = 0
    dry_run: bool = False
    seconds: float = 0.0
    deleted_names: list[str] = field(default_factory=list)


class OrphanCollector:
    """Collects the orphans of one wrapped storage (``base``) in ``backend``, one run at a time.

    ``in_flight()`` returns the backend names of revisions uploaded but not yet committed or
    aborted; they are never collected, nor is any revision newer than the last committed transaction.
    """

    def __init__(self, backend: Backend, cache: BlobCache, in_flight: Callable[[], set[str]]):
        self.backend = backend
        self.cache = cache
        self.in_flight = in_flight
        self._running = threading.Lock()

    def _iter_blobs(self) -> Iterator[tuple[str, bytes, bytes, int]]:
        try:
            for item in self.backend.list_recursive(BLOB_ROOT):
                parsed = parse_blob_name(item.name)
                if parsed is not None:
                    yield f"{BLOB_ROOT}/{item.name}", parsed[0], parsed[1], item.size
        except ObjectNotFound:
            return

    def collect(
        self,
        base: Any,
        supports_undo: bool,
        *,
        dry_run: bool = False,
        progress: Callable[[int], Any] | None = None,
    ) -> GCResult:
        """Streams the backend listing (never holding it all) and deletes in batches.

        With an undoing base a revision stays while ``loadSerial`` finds it; otherwise only the
        current revision of each live object stays.
        """
        if not self._running.acquire(blocking=False):
            raise StorageTransactionError("an orphan collection is already running")
        t0 = time.perf_counter()
        res = GCResult(dry_run=dry_run)
        try:
            last = u64(base.lastTransaction())
            batch: list[str] = []
            for oid, group in itertools.groupby(self._iter_blobs(), key=lambda entry: entry[1]):
                revisions = list(group)
                doomed = self._doomed(base, supports_undo, oid, revisions, last, res)
                for name, _oid, tid, size in revisions:
                    if name not in doomed:
                        res.kept += 1
                        continue
                    res.deleted += 1
                    res.deleted_bytes += size
                    if len(res.deleted_names) < MAX_REPORTED_NAMES:
                        res.deleted_names.append(name)
                    if not dry_run:
                        batch.append(name)
                        self.cache.discard(blob_key(oid, tid))
                if progress is not None:
                    progress(len(revisions))
                if len(batch) >= DELETE_BATCH:
                    self.backend.delete_many(batch, missing_ok=True)
                    batch = []
            if batch:
                self.backend.delete_many(batch, missing_ok=True)
        finally:
            self._running.release()
        res.seconds = time.perf_counter() - t0
        log.debug(
            "gc: examined %d, deleted %d (%d bytes), kept %d%s in %.3f s",
            res.examined,
            res.deleted,
            res.deleted_bytes,
            res.kept,
            " (dry run)" if dry_run else "",
            res.seconds,
        )
        return res

    def _doomed(
        self,
        base: Any,
        supports_undo: bool,
        oid: bytes,
        revisions: list[tuple[str, bytes, bytes, int]],
        last: int,
        res: GCResult,
    ) -> set[str]:
        in_flight = self.in_flight()
        candidates = []
        for name, _oid, tid, _size in revisions:
            res.examined += 1
            if u64(tid) > last or name in in_flight:
                res.skipped_in_flight += 1
                continue
            candidates.append((name, tid))
        if not candidates:
            return set()
        doomed: set[str] = set()
        if supports_undo:
            for name, tid in candidates:
                try:
                    base.loadSerial(oid, tid)
                except (POSKeyError, KeyError):
                    doomed.add(name)
        else:
            try:
                current = load_current(base, oid)[1]
            except (POSKeyError, KeyError):
                current = None
            for name, tid in candidates:
                if tid != current:
                    doomed.add(name)
        return doomed
