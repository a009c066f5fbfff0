"""Helpers shared by the ZODB adapter tests: base storage factories and a ZODB suite runner.

Not a test module itself (its name does not start with ``test_``).
"""

from __future__ import annotations

import os
import re
import unittest
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from ZODB.tests import (
    BasicStorage,
    HistoryStorage,
    IteratorStorage,
    MTStorage,
    PackableStorage,
    RevisionStorage,
    Synchronization,
)

from unistore.adapters.zodb import S3BlobStorage

BackendFactory = Callable[[], str]  # returns a fresh, empty backend URL

# ZODB's generic storage test mixins that every base runs (a base adds those for what it supports
# beyond them: undo, conflict resolution)
STORAGE_MIXINS: tuple[type, ...] = (
    BasicStorage.BasicStorage,
    HistoryStorage.HistoryStorage,
    IteratorStorage.IteratorStorage,
    IteratorStorage.ExtendedIteratorStorage,
    MTStorage.MTStorage,
    PackableStorage.PackableStorageWithOptionalGC,
    RevisionStorage.RevisionStorage,
    Synchronization.SynchronizedStorage,
)


def mapping_base(name: str) -> Any:
    from ZODB.MappingStorage import MappingStorage

    return MappingStorage(name)


def mvcc_mapping_base(name: str) -> Any:
    from ZODB.tests.MVCCMappingStorage import MVCCMappingStorage

    return MVCCMappingStorage(name)


def file_base(name: str, **kw: Any) -> Any:
    from ZODB.FileStorage import FileStorage

    return FileStorage(f"{name}.fs", **kw)


BASES: dict[str, Callable[[str], Any]] = {
    "mapping": mapping_base,
    "mvccmapping": mvcc_mapping_base,
    "filestorage": file_base,
}


def wrap(base: Any, url: str, blob_dir: str, **kw: Any) -> S3BlobStorage:
    """The adapter over ``base``, blobs in ``url`` (created when missing), cache in ``blob_dir``
    (staging ``blob_dir/tmp``)."""
    kw.setdefault("create", True)
    return S3BlobStorage(base, url, os.path.abspath(blob_dir), **kw)


def iter_tests(suite: unittest.TestSuite | unittest.TestCase) -> Iterator[unittest.TestCase]:
    if isinstance(suite, unittest.TestSuite):
        for sub in suite:
            yield from iter_tests(sub)
    else:
        yield suite


_FAILED_EXAMPLE = re.compile(r"Failed example:\n((?:    .*\n)+)")


def failure_signature(text: str) -> list[str]:
    """The failing doctest examples of a failure report, or its last line for other failures."""
    examples = [" ".join(m.group(1).split()) for m in _FAILED_EXAMPLE.finditer(text)]
    if examples:
        return sorted(examples)
    return [text.strip().splitlines()[-1] if text.strip() else "?"]


def run_zodb_suite(suite: unittest.TestSuite) -> tuple[int, dict[str, list[str]]]:
    """Run a ZODB test suite (honouring its layer's per-test hooks); return (tests run, failures).

    ``failures`` maps each failing test's id to :func:`failure_signature` of its report.
    """
    layer = getattr(suite, "layer", None)
    if layer is not None and hasattr(layer, "setUp"):
        layer.setUp()
    run = 0
    failures: dict[str, list[str]] = {}
    cwd = os.getcwd()
    try:
        for test in iter_tests(suite):
            if layer is not None and hasattr(layer, "testSetUp"):
                layer.testSetUp()
            result = unittest.TestResult()
            try:
                test(result)
            finally:
                if layer is not None and hasattr(layer, "testTearDown"):
                    layer.testTearDown()
                os.chdir(cwd)
            run += result.testsRun
            for _t, text in result.failures + result.errors:
                failures.setdefault(test.id(), []).extend(failure_signature(text))
    finally:
        if layer is not None and hasattr(layer, "tearDown"):
            layer.tearDown()
    return run, failures


def check_blob_suite(
    suite: Callable[[Any], unittest.TestSuite], ours: Any, baseline: Any, min_run: int
) -> dict[str, list[str]] | None:
    """Run ``suite(ours)``: at least ``min_run`` tests, none failing. As root (which fails examples of
    a plain blob storage too) the baseline ``suite(baseline)`` runs as well, and ours may fail only
    examples the baseline fails in the same run; then the baseline's failures are returned.

    The asserts carry their values: pytest does not rewrite asserts outside test modules.
    """
    run, failures = run_zodb_suite(suite(ours))
    assert run >= min_run, (run, min_run)
    if os.geteuid() != 0:
        assert failures == {}, failures
        return None
    base_run, base_failures = run_zodb_suite(suite(baseline))
    assert base_run == run, (base_run, run)
    for test_id, examples in failures.items():
        assert test_id in base_failures, (test_id, examples)
        assert set(examples) <= set(base_failures[test_id]), (test_id, examples, base_failures[test_id])
    return base_failures


def unique(prefix: str = "z") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def commit_blob(db: Any, key: str, data: bytes) -> tuple[bytes, bytes]:
    """Commit ``data`` as the blob ``root[key]`` of ``db`` (in a connection of its own); its (oid, tid)."""
    import transaction
    from ZODB.blob import Blob

    tm = transaction.TransactionManager()
    conn = db.open(transaction_manager=tm)
    try:
        if key not in conn.root():
            conn.root()[key] = Blob()
        with conn.root()[key].open("w") as f:
            f.write(data)
        tm.commit()
        blob = conn.root()[key]
        blob._p_activate()  # committed blobs are ghosted; load the committed state
        return blob._p_oid, blob._p_serial
    finally:
        conn.close()
