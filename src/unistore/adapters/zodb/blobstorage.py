"""A ZODB storage wrapper that keeps blobs in any unistore backend (S3, SFTP, rclone, posixfs, ...).

The pickles stay in the wrapped base storage (FileStorage, MappingStorage, MVCCMappingStorage,
RelStorage, ...); every blob revision is one object ``blobs/{oid_hex}/{tid_hex}.blob`` in the
backend (zodb-s3blobs' layout, so its buckets keep working), read through a local
:class:`~unistore.adapters.zodb.cache.BlobCache`.

Two-phase commit:

* ``storeBlob``/``restoreBlob`` store the record in the base storage and move the blob file into the
  staging directory (the storage's ``temporaryDirectory()``). When the transaction id is already
  known (FileStorage, MappingStorage, restores) the upload starts at once in the background.
* ``tpc_vote`` votes the base first (conflicts fail fast, before any upload), learns the transaction
  id (for RelStorage it asks that storage instance, and only that one, to lock early), starts the
  remaining uploads and undo copies and waits until all of them are done, concurrently.
* ``tpc_finish`` finishes the base, then only moves the staged files into the cache (best effort,
  nothing there can fail the commit).
* ``tpc_abort`` aborts the base, waits for uploads in flight and deletes whatever was uploaded.

Nothing is readable under a revision's name before that revision is committed by the base: another
connection only asks for ``(oid, tid)`` pairs it loaded from the base.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import IO, Any

import zope.interface
from ZODB.blob import BlobFile, copyTransactionsFromTo, rename_or_copy_blob
from ZODB.interfaces import IBlobStorage, IBlobStorageRestoreable, IStorageRestoreable
from ZODB.POSException import POSKeyError, StorageTransactionError

from ...backends.base import Backend
from ...errors import ConfigError, ObjectNotFound
from .backends import close_all, open_owned
from .cache import DEFAULT_CACHE_SIZE, BlobCache
from .layout import BLOB_ROOT, blob_key, blob_name, oid_hex, parse_blob_name
from .packing import GCResult, OrphanCollector
from .tempfiles import OwnedTempDir

__all__ = ["BLOB_ROOT", "GCResult", "S3BlobStorage", "blob_name", "parse_blob_name"]

log = logging.getLogger("unistore.adapters.zodb.blobstorage")

FETCH_CHUNK = 8 * 1024 * 1024


class _Shared:
    """What all instances (``new_instance()``) of one wrapped storage share."""

    def __init__(
        self,
        backend: Backend,
        download_backend: Backend,
        cache: BlobCache,
        staging: OwnedTempDir,
        upload_workers: int,
        owned: list[Backend],
    ):
        self.backend = backend
        self.download_backend = download_backend
        self.cache = cache
        self.staging = staging
        self.staging_dir = staging.directory
        self.owned = owned  # backends closed with the storage
        self.upload_workers = upload_workers
        self.executor = ThreadPoolExecutor(max_workers=upload_workers, thread_name_prefix="unistore-zodb")
        self.lock = threading.Lock()
        self.in_flight: set[str] = set()  # backend names of revisions not yet committed or aborted
        self.collector = OrphanCollector(backend, cache, self.in_flight_now)
        self.closed = False

    def in_flight_now(self) -> set[str]:
        with self.lock:
            return set(self.in_flight)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.executor.shutdown(wait=True)
        self.staging.close()
        self.cache.close()
        close_all(self.owned)


class _Txn:
    """Blob work of one storage transaction."""

    def __init__(self, transaction: Any, tid: bytes | None):
        self.transaction = transaction
        self.tid = tid
        self.staged: list[tuple[bytes, bytes | None, str]] = []  # (oid, tid or None, staged path)
        self.copies: list[tuple[bytes, bytes]] = []  # (oid, source tid) for undo
        self.futures: list[Future[str | None]] = []
        self.started = 0  # how many of staged were submitted
        self.names: list[str] = []  # names registered as in flight
        self.uploaded: set[str] = set()
        self.lock = threading.Lock()


class _FSHelper:
    """What ZODB.blob.copyTransactionsFromTo needs of a destination's ``fshelper``."""

    def __init__(self, temp_dir: str):
        self.temp_dir = temp_dir


@zope.interface.implementer(IBlobStorage)
class S3BlobStorage:
    """Wrap ``base_storage`` so that its blobs live in a unistore backend.

    ``backend`` is a :class:`~unistore.backends.base.Backend` (opened here if it is not open yet)
    or a backend URL such as ``s3:key:secret@https://host/bucket/prefix``. A backend that does not
    exist (a missing bucket or directory) is an error (:class:`~unistore.errors.BackendDoesNotExist`)
    unless ``create`` is true. ``download_backend`` (optional) is a second backend on the same
    objects, used for the reads that fill the cache, e.g. an S3 client with short timeouts
    (zodb-s3blobs' download client); by default reads use ``backend``.

    ``cache_dir`` holds the local read cache (at most ``cache_size`` bytes); ``staging_dir``
    (default ``cache_dir/tmp``) is where blobs wait between ``storeBlob`` and the end of the
    transaction, and is the storage's ``temporaryDirectory()``: keep it on the same file system as
    the ZODB client's temp files. Both may be shared by several processes; at open, staged blobs and
    partial downloads left by processes that ended are removed, those of live processes are not.
    ``upload_workers`` uploads run at once per storage. ``close()`` closes the backends given as
    URLs (or all of them when ``owns_backend`` is true).
    """

    def __init__(
        self,
        base_storage: Any,
        backend: Backend | str,
        cache_dir: str,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        staging_dir: str | None = None,
        upload_workers: int = 8,
        create: bool = False,
        download_backend: Backend | str | None = None,
        owns_backend: bool | None = None,
        _shared: _Shared | None = None,
    ):
        if _shared is None:
            _shared = _open_shared(
                base_storage,
                backend,
                download_backend,
                cache_dir,
                cache_size=cache_size,
                staging_dir=staging_dir,
                upload_workers=upload_workers,
                create=create,
                owns_backend=owns_backend,
            )
            self._is_root = True
        else:
            self._is_root = False
        self._base = base_storage
        self._shared = _shared
        self._txn: _Txn | None = None
        self.fshelper = _FSHelper(_shared.staging_dir)
        try:
            self._supports_undo = bool(base_storage.supportsUndo())
        except AttributeError:
            self._supports_undo = False
        provided = [IBlobStorage]
        if IStorageRestoreable.providedBy(base_storage):
            provided.append(IBlobStorageRestoreable)
        zope.interface.directlyProvides(self, *provided, zope.interface.providedBy(base_storage))

    # ------------------------------------------------------------------ proxy basics
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._base, name)

    def __len__(self) -> int:
        return len(self._base)

    def __repr__(self) -> str:
        return f"<S3BlobStorage {self._shared.backend!r} over {self._base!r}>"

    @property
    def base(self) -> Any:
        """The wrapped storage."""
        return self._base

    @property
    def backend(self) -> Backend:
        return self._shared.backend

    @property
    def download_backend(self) -> Backend:
        """The backend the cache is filled from (``backend`` unless a download backend was given)."""
        return self._shared.download_backend

    @property
    def upload_workers(self) -> int:
        return self._shared.upload_workers

    @property
    def cache(self) -> BlobCache:
        return self._shared.cache

    def temporaryDirectory(self) -> str:
        return self._shared.staging_dir

    # ------------------------------------------------------------------ instances
    def _wrap(self, instance: Any) -> S3BlobStorage:
        return S3BlobStorage(instance, self._shared.backend, self._shared.cache.directory, _shared=self._shared)

    def new_instance(self, *args: Any, **kw: Any) -> S3BlobStorage:
        return self._wrap(self._base.new_instance(*args, **kw))

    def before_instance(self, *args: Any, **kw: Any) -> S3BlobStorage:
        return self._wrap(self._base.before_instance(*args, **kw))

    def undo_instance(self) -> S3BlobStorage:
        make = getattr(self._base, "undo_instance", None) or self._base.new_instance
        return self._wrap(make())

    def release(self) -> None:
        rel = getattr(self._base, "release", None)
        if rel is not None:
            rel()

    def close(self) -> None:
        self._base.close()
        if self._is_root:
            self._shared.close()

    def copyTransactionsFrom(self, other: Any) -> None:
        copyTransactionsFromTo(other, self)

    # ------------------------------------------------------------------ reading
    def _fetcher(self, oid: bytes, serial: bytes) -> Callable[[IO[bytes]], None]:
        name = blob_name(oid, serial)
        backend = self._shared.download_backend

        def fetch(file: IO[bytes]) -> None:
            # ranged loads: a blob smaller than FETCH_CHUNK costs exactly one GET (no HEAD first),
            # a larger one streams in FETCH_CHUNK pieces without being held in memory
            offset = 0
            while True:
                chunk = backend.load(name, offset=offset, size=FETCH_CHUNK)
                file.write(chunk)
                offset += len(chunk)
                if len(chunk) < FETCH_CHUNK:
                    return

        return fetch

    def loadBlob(self, oid: bytes, serial: bytes) -> str:
        """The path of a local, read-only file holding blob revision ``(oid, serial)``."""
        try:
            return self._shared.cache.get(blob_key(oid, serial), self._fetcher(oid, serial))
        except ObjectNotFound:
            raise POSKeyError("No blob file", oid, serial) from None

    def openCommittedBlobFile(self, oid: bytes, serial: bytes, blob: Any = None) -> Any:
        """An open file of the committed revision; the file cannot be evicted while open."""
        if blob is None:

            def opener(path: str) -> Any:
                return open(path, "rb")
        else:

            def opener(path: str) -> Any:
                return BlobFile(path, "r", blob)

        try:
            return self._shared.cache.open(blob_key(oid, serial), self._fetcher(oid, serial), opener)
        except ObjectNotFound:
            raise POSKeyError("No blob file", oid, serial) from None

    # ------------------------------------------------------------------ two-phase commit
    def tpc_begin(self, transaction: Any, *args: Any, **kw: Any) -> Any:
        result = self._base.tpc_begin(transaction, *args, **kw)
        tid = args[0] if args else kw.get("tid")
        if tid is None:
            tid = self._known_tid()
        with self._shared.lock:
            self._txn = _Txn(transaction, tid)
        return result

    def _known_tid(self) -> bytes | None:
        """The transaction id right after tpc_begin, for storages that choose it there."""
        from ZODB.BaseStorage import BaseStorage
        from ZODB.MappingStorage import MappingStorage

        if isinstance(self._base, (BaseStorage, MappingStorage)):
            tid = getattr(self._base, "_tid", None)
            return tid if isinstance(tid, bytes) else None
        return None

    def _current(self, transaction: Any) -> _Txn:
        txn = self._txn
        if txn is None or txn.transaction is not transaction:
            raise StorageTransactionError(self, transaction)
        return txn

    def storeBlob(
        self, oid: bytes, oldserial: bytes, data: bytes, blobfilename: str, version: str, transaction: Any
    ) -> None:
        assert not version, "versions are not supported"
        self._base.store(oid, oldserial, data, "", transaction)
        self._stage(oid, None, blobfilename, transaction)

    def restoreBlob(
        self, oid: bytes, serial: bytes, data: bytes, blobfilename: str, prev_txn: bytes | None, transaction: Any
    ) -> None:
        self._base.restore(oid, serial, data, "", prev_txn, transaction)
        self._stage(oid, serial, blobfilename, transaction)

    def _stage(self, oid: bytes, tid: bytes | None, blobfilename: str, transaction: Any) -> None:
        txn = self._current(transaction)
        staged = self._shared.staging.path(f"{oid_hex(oid)}-{uuid.uuid4().hex}", ".staged")
        rename_or_copy_blob(blobfilename, staged, chmod=False)
        with txn.lock:
            txn.staged.append((oid, tid, staged))
            if tid is not None or txn.tid is not None:
                self._submit_staged(txn)

    def _submit_staged(self, txn: _Txn) -> None:
        """Start the uploads of staged blobs whose tid is known (caller holds txn.lock)."""
        while txn.started < len(txn.staged):
            oid, tid, path = txn.staged[txn.started]
            tid = tid or txn.tid
            if tid is None:
                return
            txn.started += 1
            name = blob_name(oid, tid)
            self._register(txn, name)
            txn.futures.append(self._shared.executor.submit(self._upload, txn, name, path))

    def _register(self, txn: _Txn, name: str) -> None:
        with self._shared.lock:
            self._shared.in_flight.add(name)
        txn.names.append(name)

    def _upload(self, txn: _Txn, name: str, path: str) -> str:
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            self._shared.backend.store_file(name, f, size=size)
        with txn.lock:
            txn.uploaded.add(name)
        log.debug("uploaded %s: %d bytes in %.3f s", name, size, time.perf_counter() - t0)
        return name

    def _copy(self, txn: _Txn, src: str, dst: str) -> str | None:
        t0 = time.perf_counter()
        try:
            self._shared.backend.copy(src, dst)
        except ObjectNotFound:
            return None  # the undone record was no blob revision
        with txn.lock:
            txn.uploaded.add(dst)
        log.debug("copied %s -> %s in %.3f s", src, dst, time.perf_counter() - t0)
        return dst

    def undo(self, transaction_id: bytes, transaction: Any) -> Any:
        """Undo in the base, then carry each affected blob's restored revision to the new tid.

        As ZODB's own BlobStorage does: for every object of the undone transaction that has a blob
        revision there, the revision before it (or, when the undone transaction created the object,
        that revision itself, for a later redo) is copied (server-side where the backend can) to the
        undo transaction's tid, during the vote.
        """
        result = self._base.undo(transaction_id, transaction)
        txn = self._current(transaction)
        undone_tid = base64.decodebytes(transaction_id + b"\n")
        if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bytes):
            txn.tid = txn.tid or result[0]  # ZODB style: (undo tid, oids)
            oids = list(result[1])
        else:  # RelStorage returns nothing: read the undone transaction's oids from the base
            oids = self._oids_of(undone_tid)
        backend = self._shared.backend
        pairs: list[tuple[bytes, bytes]] = []
        for oid in oids:
            if not backend.info(blob_name(oid, undone_tid)).exists:
                continue  # the undone transaction stored no blob for this object
            try:
                before = self._base.loadBefore(oid, undone_tid)
            except POSKeyError:
                before = None
            pairs.append((oid, undone_tid if before is None else before[1]))
        with txn.lock:
            txn.copies.extend(pairs)
        return result

    def _oids_of(self, tid: bytes) -> list[bytes]:
        it = self._base.iterator(tid, tid)
        try:
            return [record.oid for trans in it if trans.tid == tid for record in trans]
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _committing_tid(self) -> bytes:
        """The tid of the transaction being voted, for storages that choose it late (RelStorage).

        RelStorage picks its tid when it locks the database; we ask this storage instance to do that
        now, in tpc_vote (its own "lock early" path), instead of patching RelStorage process-wide.
        """
        phase = getattr(self._base, "_tpc_phase", None)
        lock = getattr(phase, "committing_tid_lock", None)
        if lock is None and hasattr(phase, "_lock_and_move"):
            phase._lock_and_move(vote_only=True)  # type: ignore[union-attr]
            lock = phase.committing_tid_lock  # type: ignore[union-attr]
        if lock is None:
            raise StorageTransactionError(f"cannot learn the transaction id of {self._base!r} during the vote")
        return lock.tid  # type: ignore[no-any-return]

    def tpc_vote(self, transaction: Any) -> Any:
        result = self._base.tpc_vote(transaction)
        txn = self._current(transaction)
        if not txn.staged and not txn.copies:
            return result
        t0 = time.perf_counter()
        with txn.lock:
            if txn.tid is None:
                txn.tid = self._committing_tid()
            self._submit_staged(txn)
            for oid, src_tid in txn.copies:
                dst = blob_name(oid, txn.tid)
                self._register(txn, dst)
                txn.futures.append(self._shared.executor.submit(self._copy, txn, blob_name(oid, src_tid), dst))
            txn.copies = []
            futures = list(txn.futures)
        done, _ = wait(futures)
        for fut in done:
            fut.result()  # raise the first failure; ZODB then calls tpc_abort, which cleans up
        log.debug(
            "vote: %d blob uploads/copies for tid %s in %.3f s",
            len(futures),
            oid_hex(txn.tid),
            time.perf_counter() - t0,
        )
        return result

    def _take(self, transaction: Any) -> _Txn | None:
        """This transaction's blob work, read before the base releases its commit lock.

        Once the base has finished or aborted, another thread's tpc_begin may already have installed
        its own state, so the state is looked up first and cleared only if it is still ours.
        """
        txn = self._txn
        return txn if txn is not None and txn.transaction is transaction else None

    def _clear(self, txn: _Txn) -> None:
        with self._shared.lock:
            if self._txn is txn:
                self._txn = None

    def tpc_finish(self, transaction: Any, f: Any = None) -> Any:
        txn = self._take(transaction)
        tid = self._base.tpc_finish(transaction) if f is None else self._base.tpc_finish(transaction, f)
        if txn is not None:
            self._clear(txn)
            try:
                self._finish_blobs(txn, tid)
            except Exception:  # never fail a commit that the base has made durable
                log.exception("moving committed blobs into the cache failed (they will be downloaded)")
        return tid

    def _finish_blobs(self, txn: _Txn, tid: bytes) -> None:
        cache = self._shared.cache
        for oid, staged_tid, path in txn.staged:
            cache.add(blob_key(oid, staged_tid or tid), path)
        self._unregister(txn)

    def _unregister(self, txn: _Txn) -> None:
        with self._shared.lock:
            self._shared.in_flight.difference_update(txn.names)

    def tpc_abort(self, transaction: Any, *args: Any, **kw: Any) -> Any:
        txn = self._take(transaction)
        try:
            return self._base.tpc_abort(transaction, *args, **kw)
        finally:
            if txn is not None:
                self._clear(txn)
                self._abort_blobs(txn)

    def _abort_blobs(self, txn: _Txn) -> None:
        for fut in txn.futures:
            fut.cancel()
        wait(txn.futures)
        with txn.lock:
            uploaded = sorted(txn.uploaded)
        if uploaded:
            try:
                self._shared.backend.delete_many(uploaded, missing_ok=True)
            except Exception:
                log.exception("could not delete %d uploaded blobs of an aborted transaction", len(uploaded))
        for _oid, _tid, path in txn.staged:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self._unregister(txn)

    # ------------------------------------------------------------------ pack / garbage collection
    def pack(self, packtime: float, referencesf: Any, *args: Any, **kw: Any) -> Any:
        result = self._base.pack(packtime, referencesf, *args, **kw)
        self.collect_garbage()
        return result

    def collect_garbage(self, *, dry_run: bool = False, progress: Callable[[int], Any] | None = None) -> GCResult:
        """Delete blob revisions the base storage no longer references (after its pack).

        Keeps every revision newer than the last committed transaction or still in flight here;
        with an undoing base a revision stays while ``loadSerial`` finds it, otherwise only the
        current revision of each live object stays. See :class:`~.packing.OrphanCollector`.
        """
        return self._shared.collector.collect(self._base, self._supports_undo, dry_run=dry_run, progress=progress)


def _raises(func: Callable[[], Any]) -> bool:
    try:
        func()
    except Exception:
        return True
    return False


def _open_shared(
    base_storage: Any,
    backend: Backend | str,
    download_backend: Backend | str | None,
    cache_dir: str,
    *,
    cache_size: int,
    staging_dir: str | None,
    upload_workers: int,
    create: bool,
    owns_backend: bool | None,
) -> _Shared:
    if IBlobStorage.providedBy(base_storage) and not _raises(base_storage.temporaryDirectory):
        raise ConfigError("the base storage stores blobs itself: configure it without blob-dir")
    if isinstance(upload_workers, bool) or not isinstance(upload_workers, int) or upload_workers < 1:
        raise ConfigError(f"upload-workers must be a whole number >= 1, not {upload_workers!r}")
    owned: list[Backend] = []
    try:
        be = open_owned(backend, create, owned, owns_backend)
        dl = be if download_backend is None else open_owned(download_backend, False, owned, owns_backend)
        cache_dir = os.path.abspath(cache_dir)
        staging = OwnedTempDir(staging_dir or os.path.join(cache_dir, "tmp"), (".staged",))
        staging.sweep()  # staged blobs of processes that ended (a crash between storeBlob and finish)
        try:
            cache = BlobCache(cache_dir, cache_size)
        except BaseException:
            staging.close()
            raise
    except BaseException:
        close_all(owned)
        raise
    return _Shared(be, dl, cache, staging, upload_workers, owned)
