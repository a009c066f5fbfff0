"""The ZODB adapter's own promises: configuration, layout, two-phase commit, cache, garbage collection."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import hypothesis
import hypothesis.strategies
import pytest
import transaction
import ZODB
import ZODB.config
from ZODB.blob import Blob
from ZODB.Connection import TransactionMetaData
from ZODB.FileStorage import FileStorage
from ZODB.MappingStorage import MappingStorage
from ZODB.POSException import POSKeyError
from ZODB.serialize import referencesf
from ZODB.utils import p64, u64

from unistore.adapters.zodb import BlobCache, S3BlobStorage, blob_name, parse_blob_name
from unistore.backends.posixfs import PosixFS
from unistore.errors import PermissionDenied
from unistore.layers.stats import StatsLayer

from .zodb_storages import commit_blob

# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["posixfs", "s3"])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "posixfs":
        return f"file://{tmp_path}/store"
    server = request.getfixturevalue("seaweedfs")
    return server.url(server.new_bucket(), "site/prefix")  # type: ignore[no-any-return]


# ----------------------------------------------------------------------------------------------- names


@hypothesis.given(
    oid=hypothesis.strategies.integers(0, 2**64 - 1),
    tid=hypothesis.strategies.integers(0, 2**64 - 1),
    other=hypothesis.strategies.integers(0, 2**64 - 1),
)
def test_each_revision_has_exactly_one_name(oid: int, tid: int, other: int) -> None:
    """blob_name is one-to-one and parse_blob_name inverts it: two revisions never share a name."""
    name = blob_name(p64(oid), p64(tid))
    assert parse_blob_name(name.removeprefix("blobs/")) == (p64(oid), p64(tid))
    if other != tid:
        assert blob_name(p64(oid), p64(other)) != name
    if other != oid:
        assert blob_name(p64(other), p64(tid)) != name


@pytest.mark.parametrize(
    "spelling",
    [
        "01/3.blob",
        "1/03.blob",
        "A/3.blob",
        "1/3F.blob",
        "0x1/3.blob",
        "1_0/3.blob",
        "+1/3.blob",
        " 1/3.blob",
        "1/3.blob ",
        "1/-3.blob",
        f"{2**64:x}/1.blob",
        "1/.blob",
        "/3.blob",
        "1/3.blob/x",
        "1/2/3.blob",
    ],
)
def test_names_blob_name_never_writes_are_no_revisions(spelling: str) -> None:
    """Only names blob_name() writes are revisions (so gc and migrate never take another name for one)."""
    assert parse_blob_name(spelling) is None


def test_blob_names_are_zodb_s3blobs_layout() -> None:
    assert blob_name(p64(1), p64(0x3F2A)) == "blobs/1/3f2a.blob"
    assert blob_name(p64(0), p64(0)) == "blobs/0/0.blob"
    assert parse_blob_name("ff/10.blob") == (p64(255), p64(16))
    assert parse_blob_name("ff/10.txt") is None
    assert parse_blob_name("zz/10.blob") is None


# ----------------------------------------------------------------------------------------------- 2PC


def test_commit_uploads_all_blobs_and_finish_fills_cache(url: str, tmp_path: Any) -> None:
    storage = S3BlobStorage(FileStorage(str(tmp_path / "Data.fs")), url, str(tmp_path / "cache"), create=True)
    db = ZODB.DB(storage)
    try:
        with db.transaction() as conn:
            for i in range(10):
                conn.root()[f"b{i}"] = Blob(f"blob {i}".encode() * 100)
        conn = db.open()
        for i in range(10):
            blob = conn.root()[f"b{i}"]
            blob._p_activate()
            name = blob_name(blob._p_oid, blob._p_serial)
            assert storage.backend.load(name) == f"blob {i}".encode() * 100
            path = storage.cache.path((f"{u64(blob._p_oid):x}", f"{u64(blob._p_serial):x}"))
            assert os.path.exists(path)  # moved into the cache by tpc_finish: warm at once
        conn.close()
        assert os.listdir(storage.temporaryDirectory()) == []
    finally:
        db.close()


def test_uncommitted_blob_is_invisible_and_abort_deletes_it(url: str, tmp_path: Any) -> None:
    storage = S3BlobStorage(MappingStorage(), url, str(tmp_path / "cache"), create=True)
    db = ZODB.DB(storage)
    try:
        oid, old_tid = commit_blob(db, "b", b"committed")
        data, serial = storage.load(oid)
        t = TransactionMetaData()
        storage.tpc_begin(t)
        (tmp_path / "upload").write_bytes(b"not yet committed")
        storage.storeBlob(oid, serial, data, str(tmp_path / "upload"), "", t)
        storage.tpc_vote(t)
        new_tid = storage._tid  # MappingStorage chose it in tpc_begin
        assert storage.backend.info(blob_name(oid, new_tid)).exists  # uploaded by the vote
        # another connection still sees the committed revision only
        tm = transaction.TransactionManager()
        other = db.open(transaction_manager=tm)
        with other.root()["b"].open() as f:
            assert f.read() == b"committed"
        assert other.root()["b"]._p_serial == old_tid
        other.close()
        storage.tpc_abort(t)
        assert not storage.backend.info(blob_name(oid, new_tid)).exists
        assert os.listdir(storage.temporaryDirectory()) == []
        with pytest.raises(POSKeyError):
            storage.loadBlob(oid, new_tid)
    finally:
        db.close()


def test_failed_upload_fails_the_vote_and_abort_removes_the_others(tmp_path: Any) -> None:
    # oid 2's directory is read-only in the backend: its upload fails, oid 1's succeeds first
    backend = PosixFS(tmp_path / "store", permissions={"": "lrwWD", "blobs/2": "lr"})
    storage = S3BlobStorage(MappingStorage(), backend, str(tmp_path / "cache"), create=True)
    db = ZODB.DB(storage)
    try:
        conn = db.open()
        conn.root()["a"] = Blob(b"a" * 1000)
        conn.root()["b"] = Blob(b"b" * 1000)
        with pytest.raises(PermissionDenied):
            transaction.commit()
        transaction.abort()
        assert list(backend.list_recursive("blobs")) == []  # oid 1's upload was deleted again
        assert "a" not in conn.root()
        assert os.listdir(storage.temporaryDirectory()) == []
        conn.close()
    finally:
        db.close()


def test_restore_and_copy_transactions_carry_blobs(url: str, tmp_path: Any) -> None:
    src = ZODB.DB(FileStorage(str(tmp_path / "src.fs"), blob_dir=str(tmp_path / "src-blobs")))
    oid, tid = commit_blob(src, "b", b"from a blob directory")
    commit_blob(src, "b", b"second revision")
    dst = S3BlobStorage(FileStorage(str(tmp_path / "dst.fs")), url, str(tmp_path / "cache"), create=True)
    try:
        dst.copyTransactionsFrom(src.storage)
        with open(dst.loadBlob(oid, tid), "rb") as f:
            assert f.read() == b"from a blob directory"
        assert dst.lastTransaction() == src.storage.lastTransaction()
    finally:
        src.close()
        dst.close()


# ----------------------------------------------------------------------------------------------- cache


def test_cold_read_is_one_get_and_cached_files_are_read_only(url: str, tmp_path: Any) -> None:
    writer = S3BlobStorage(MappingStorage(), url, str(tmp_path / "cache-w"), create=True)
    db = ZODB.DB(writer)
    oid, tid = commit_blob(db, "b", b"x" * 100_000)
    from unistore import open_backend

    stats = StatsLayer(open_backend(url))
    reader = S3BlobStorage(MappingStorage(), stats, str(tmp_path / "cache-r"))
    try:
        stats.reset()
        path = reader.loadBlob(oid, tid)
        counts = stats.stats
        assert counts.get("load_calls") == 1 and counts.get("info_calls", 0) == 0, counts
        assert open(path, "rb").read() == b"x" * 100_000
        assert os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) == 0
        reader.loadBlob(oid, tid)
        with reader.openCommittedBlobFile(oid, tid) as f:
            assert f.read(1) == b"x"
        assert stats.stats.get("load_calls") == 1  # warm reads touch no backend
        with pytest.raises(POSKeyError):
            reader.loadBlob(oid, p64(u64(tid) + 1))
    finally:
        db.close()
        reader.close()
        stats.close()


def test_eviction_keeps_size_and_never_pulls_an_open_file(tmp_path: Any) -> None:
    cache = BlobCache(str(tmp_path / "cache"), size_limit=50_000, grace=0)

    def filler(data: bytes) -> Any:
        return lambda f: f.write(data)

    first = cache.open(("1", "1"), filler(b"1" * 20_000), lambda p: open(p, "rb"))
    for i in range(2, 12):
        cache.get((str(i), "1"), filler(bytes([i]) * 20_000))
        assert cache.total_size <= 50_000 + 20_000
    assert ("1", "1") not in cache  # evicted (least recently used)
    assert first.read() == b"1" * 20_000  # but the open reader still reads all of it
    first.close()
    on_disk = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache.blob_dir) for f in fs)
    assert on_disk <= 50_000


def test_grace_keeps_recently_handed_out_paths(tmp_path: Any) -> None:
    cache = BlobCache(str(tmp_path / "cache"), size_limit=30_000, grace=60)
    path = cache.get(("1", "1"), lambda f: f.write(b"a" * 20_000))
    cache.get(("2", "1"), lambda f: f.write(b"b" * 20_000))
    assert os.path.exists(path)  # over the limit, but handed out a moment ago


_READER = textwrap.dedent(
    """
    import sys, threading
    from ZODB.MappingStorage import MappingStorage
    from ZODB.utils import p64
    from unistore.adapters.zodb import S3BlobStorage

    url, cache_dir, revisions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    storage = S3BlobStorage(MappingStorage(), url, cache_dir, cache_size=300_000)
    errors = []

    def expected(tid):
        return (b"revision %d " % tid) * 5000

    def work(seed):
        try:
            for i in range(60):
                tid = 1 + (seed * 7 + i) % revisions
                with storage.openCommittedBlobFile(p64(1), p64(tid)) as f:
                    if f.read() != expected(tid):
                        errors.append(("open", tid))
                with open(storage.loadBlob(p64(1), p64(tid)), "rb") as f:
                    if f.read() != expected(tid):
                        errors.append(("path", tid))
        except Exception as e:
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    storage.close()
    print("ERRORS", errors)
    sys.exit(1 if errors else 0)
    """
)


def test_many_threads_and_processes_read_revisions_of_one_blob(url: str, tmp_path: Any) -> None:
    """Cold and warm reads of one blob's revisions from 3 processes x 8 threads, with eviction."""
    from unistore import open_backend

    revisions = 6
    backend = open_backend(url)
    try:
        backend.create()
    except Exception:
        pass
    backend.open()
    for tid in range(1, revisions + 1):
        backend.store(f"blobs/1/{tid:x}.blob", (b"revision %d " % tid) * 5000)
    backend.close()
    cache_dir = str(tmp_path / "shared-cache")
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), url, cache_dir, str(revisions)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    try:
        outputs = [p.communicate(timeout=240)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    # no cache entry holds another revision's bytes
    cache = BlobCache(cache_dir, size_limit=10**9)
    for tid in range(1, revisions + 1):
        path = cache.path(("1", f"{tid:x}"))
        if os.path.exists(path):
            assert open(path, "rb").read() == (b"revision %d " % tid) * 5000
    assert os.listdir(cache.incoming) == []


def test_threads_share_one_download(tmp_path: Any) -> None:
    """8 threads ask for one cold revision at once: one download, all get the same complete file.

    The download holds until every other thread is inside ``get`` waiting for it (seen in the
    threads' stacks) or has started a download of its own, so the threads really race.
    """
    cache = BlobCache(str(tmp_path / "cache"))
    calls: list[int] = []
    start = threading.Barrier(8)
    threads: list[threading.Thread] = []

    def others_waiting() -> int:
        frames = sys._current_frames()
        count = 0
        for t in threads:
            frame = frames.get(t.ident) if t.ident is not None and t is not threading.current_thread() else None
            while frame is not None:
                name = frame.f_code.co_name
                if (name == "result" and "concurrent/futures" in frame.f_code.co_filename) or name == "fetch":
                    count += 1
                    break
                frame = frame.f_back
        return count

    def fetch(f: Any) -> None:
        calls.append(1)
        deadline = time.monotonic() + 10  # reached only when the threads do not share the download
        while others_waiting() < 7 and time.monotonic() < deadline:
            time.sleep(0.005)
        f.write(b"shared")

    results: list[str] = []

    def reader() -> None:
        start.wait()
        results.append(cache.get(("1", "2"), fetch))

    threads.extend(threading.Thread(target=reader) for _ in range(8))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(results) == 8 and len(set(results)) == 1
    assert open(results[0], "rb").read() == b"shared"


# ----------------------------------------------------------------------------------------------- pack / gc


def test_pack_collects_orphans_but_keeps_live_and_in_flight(url: str, tmp_path: Any) -> None:
    storage = S3BlobStorage(MappingStorage(), url, str(tmp_path / "cache"), create=True)
    db = ZODB.DB(storage)

    def names() -> set[str]:
        return {item.name for item in storage.backend.list_recursive("blobs")}

    def rel(oid: bytes, tid: bytes) -> str:
        return f"{u64(oid):x}/{u64(tid):x}.blob"

    try:
        oid, tid1 = commit_blob(db, "b", b"one")
        _, tid2 = commit_blob(db, "b", b"two")
        oid_gone, tid_gone = commit_blob(db, "gone", b"gone")
        with db.transaction() as conn:
            del conn.root()["gone"]
        # dry run: reports the superseded revision (MappingStorage keeps no undo history), deletes nothing
        dry = storage.collect_garbage(dry_run=True)
        assert dry.deleted == 1 and dry.deleted_names == [f"blobs/{rel(oid, tid1)}"]
        assert rel(oid, tid1) in names()
        # a transaction in flight during the pack: voted (uploaded), not finished
        data, serial = storage.load(oid)
        t = TransactionMetaData()
        storage.tpc_begin(t)
        (tmp_path / "f").write_bytes(b"in flight")
        storage.storeBlob(oid, serial, data, str(tmp_path / "f"), "", t)
        storage.tpc_vote(t)
        tid3 = storage._tid
        assert rel(oid, tid3) in names()
        storage.pack(time.time() + 1, referencesf)
        after = names()
        assert rel(oid, tid2) in after  # current revision kept
        assert rel(oid, tid1) not in after  # superseded revision collected
        assert rel(oid_gone, tid_gone) not in after  # object removed by the pack: collected
        assert rel(oid, tid3) in after  # in flight: untouched
        storage.tpc_finish(t)
        with open(storage.loadBlob(oid, tid3), "rb") as f:
            assert f.read() == b"in flight"
    finally:
        db.close()


def test_pack_with_undoing_base_keeps_revisions_history_needs(url: str, tmp_path: Any) -> None:
    storage = S3BlobStorage(FileStorage(str(tmp_path / "Data.fs")), url, str(tmp_path / "cache"), create=True)
    db = ZODB.DB(storage)
    try:
        oid, tid1 = commit_blob(db, "b", b"one")
        _, tid2 = commit_blob(db, "b", b"two")
        result = storage.collect_garbage()
        assert result.deleted == 0 and result.kept == 2  # FileStorage can still load both
        time.sleep(0.01)
        db.pack(time.time() + 1)
        names = {item.name for item in storage.backend.list_recursive("blobs")}
        assert names == {f"{u64(oid):x}/{u64(tid2):x}.blob"}
    finally:
        db.close()


def test_concurrent_commits_from_many_threads(url: str, tmp_path: Any) -> None:
    """Threads commit blobs through one FileStorage at once: every revision lands, nothing leaks."""
    storage = S3BlobStorage(FileStorage(str(tmp_path / "Data.fs")), url, str(tmp_path / "cache"), create=True)
    db = ZODB.DB(storage)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for rev in range(6):
                commit_blob(db, f"t{n}", b"%d:%d " % (n, rev) * 2000)
        except BaseException as e:  # reported below
            errors.append(e)

    try:
        with db.transaction() as conn:  # the root changes once; afterwards each thread has its own blob
            for n in range(6):
                conn.root()[f"t{n}"] = Blob()
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        conn = db.open()
        for n in range(6):
            with conn.root()[f"t{n}"].open() as f:
                assert f.read() == b"%d:%d " % (n, 5) * 2000
        conn.close()
        assert os.listdir(storage.temporaryDirectory()) == []
        assert storage._shared.in_flight == set()
        assert len(list(storage.backend.list_recursive("blobs"))) == 6 + 36
    finally:
        db.close()


def test_refuses_a_base_that_stores_blobs_itself(tmp_path: Any) -> None:
    from unistore.errors import ConfigError

    base = FileStorage(str(tmp_path / "Data.fs"), blob_dir=str(tmp_path / "blobs"))
    try:
        with pytest.raises(ConfigError, match="without blob-dir"):
            S3BlobStorage(base, "memory://refused", str(tmp_path / "cache"))
    finally:
        base.close()


def test_keeps_the_base_interfaces_visible(tmp_path: Any) -> None:
    from ZODB.interfaces import (
        IBlobStorage,
        IBlobStorageRestoreable,
        IMVCCStorage,
        IStorageIteration,
        IStorageUndoable,
    )
    from ZODB.tests.MVCCMappingStorage import MVCCMappingStorage

    fs = S3BlobStorage(FileStorage(str(tmp_path / "Data.fs")), "memory://ifaces", str(tmp_path / "c1"), create=True)
    mvcc = S3BlobStorage(MVCCMappingStorage(), "memory://ifaces2", str(tmp_path / "c2"), create=True)
    try:
        for iface in (IBlobStorage, IBlobStorageRestoreable, IStorageUndoable, IStorageIteration):
            assert iface.providedBy(fs), iface
        assert fs.supportsUndo() and not IMVCCStorage.providedBy(fs)
        assert IMVCCStorage.providedBy(mvcc) and IBlobStorage.providedBy(mvcc)
        instance = mvcc.new_instance()
        assert isinstance(instance, S3BlobStorage) and IMVCCStorage.providedBy(instance)
        assert instance.temporaryDirectory() == mvcc.temporaryDirectory()
        instance.release()
    finally:
        fs.close()
        mvcc.close()


def test_pack_like_zodbs_blob_packing_doctest(url: str, tmp_path: Any) -> None:
    """ZODB's blob_packing.txt (undoing part), checked against the backend instead of a blob dir."""

    def new_time() -> float:
        """A pack time after every commit so far and before the next (ZODB's own sleeps 1 s each)."""
        now = time.time()
        time.sleep(0.01)
        return now

    storage = S3BlobStorage(FileStorage(str(tmp_path / "Data.fs")), url, str(tmp_path / "cache"), create=True)
    db = ZODB.DB(storage)
    try:
        conn = db.open()
        root = conn.root()
        blob = Blob()
        tids, times = [], []
        for i in range(5):
            transaction.begin()
            times.append(new_time())
            with blob.open("w") as f:
                f.write(b"this is blob data %d" % i)
            if i:
                tids.append(blob._p_serial)
            else:
                root["blob"] = blob
            transaction.commit()
        blob._p_activate()
        tids.append(blob._p_serial)
        oid = blob._p_oid

        def present() -> list[bool]:
            return [storage.backend.info(blob_name(oid, tid)).exists for tid in tids]

        assert present() == [True] * 5
        expected = [
            [True, True, True, True, True],  # pack to just before the first revision
            [True, True, True, True, True],  # ... the second: the first is still current then
            [False, True, True, True, True],
            [False, False, True, True, True],
            [False, False, False, True, True],
        ]
        for packtime, after in zip(times, expected, strict=True):
            storage.pack(packtime, referencesf)
            assert present() == after
        storage.pack(new_time(), referencesf)
        assert present() == [False, False, False, False, True]
        transaction.begin()
        del root["blob"]
        transaction.commit()
        storage.pack(new_time(), referencesf)
        assert present() == [False] * 5
        assert not os.path.exists(os.path.dirname(storage.cache.path((f"{u64(oid):x}", "0"))))
    finally:
        db.close()
