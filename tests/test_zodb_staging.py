"""Temporary files after crashes: staged blobs (``cache-dir/tmp``) and partial downloads
(``cache-dir/incoming``) of processes that ended are removed at open; those of live processes,
sharing the same directories, are not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

from ZODB.MappingStorage import MappingStorage

from unistore.adapters.zodb import S3BlobStorage
from unistore.adapters.zodb.tempfiles import OwnedTempDir

from .zodb_storages import unique

# stages one blob (storeBlob, no vote) and starts a partial download, then dies or waits
_STAGER = textwrap.dedent(
    """
    import os, signal, sys
    from ZODB.Connection import TransactionMetaData
    from ZODB.MappingStorage import MappingStorage
    from ZODB.utils import p64, z64
    from unistore.adapters.zodb import S3BlobStorage

    cache_dir, blob_file, mode = sys.argv[1:4]
    storage = S3BlobStorage(MappingStorage(), "memory://stager", cache_dir, create=True)
    t = TransactionMetaData()
    storage.tpc_begin(t)
    storage.storeBlob(p64(1), z64, b"record", blob_file, "", t)
    fd, part = storage.cache._incoming.mkstemp("1-1-", ".part")  # a cold read under way
    os.write(fd, b"half a blob")
    print("STAGED", flush=True)
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    sys.stdin.read()  # alive until the test closes our stdin
    """
)


def _stager(tmp_path: Any, cache_dir: str, mode: str) -> subprocess.Popen[bytes]:
    script = tmp_path / "stager.py"
    script.write_text(_STAGER)
    blob = tmp_path / f"upload-{unique()}"
    blob.write_bytes(b"a blob in the middle of its transaction")
    proc = subprocess.Popen(
        [sys.executable, str(script), cache_dir, str(blob), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == b"STAGED\n", line + proc.stdout.read()
    return proc


def _files(directory: str, suffix: str) -> set[str]:
    return {name for name in os.listdir(directory) if name.endswith(suffix)}


def test_open_removes_what_ended_processes_staged_but_not_what_live_ones_did(tmp_path: Any) -> None:
    cache_dir = str(tmp_path / "cache")
    staging, incoming = os.path.join(cache_dir, "tmp"), os.path.join(cache_dir, "incoming")
    live = _stager(tmp_path, cache_dir, "live")
    try:
        live_files = _files(staging, ".staged") | _files(incoming, ".part")
        assert len(live_files) == 2
        crashed = _stager(tmp_path, cache_dir, "crash")  # opened (and swept) while live was alive
        assert crashed.wait(60) == -signal.SIGKILL
        crashed_files = (_files(staging, ".staged") | _files(incoming, ".part")) - live_files
        assert len(crashed_files) == 2
        # a staged blob of a version before owner tokens, an hour old; and ZODB's own temp file
        legacy = os.path.join(staging, "1-0123456789abcdef0123456789abcdef.staged")
        open(legacy, "wb").close()
        os.utime(legacy, (time.time() - 7200, time.time() - 7200))
        zodbs = os.path.join(staging, "tmpq1w2e3r4")
        open(zodbs, "wb").close()

        storage = S3BlobStorage(MappingStorage(), f"memory://{unique()}", cache_dir, create=True)
        try:
            left = _files(staging, ".staged") | _files(incoming, ".part")
            assert left == live_files  # the crashed process' files are gone, the live one's stay
            assert os.path.exists(zodbs)  # not ours to judge
        finally:
            storage.close()
    finally:
        assert live.stdin is not None
        live.stdin.close()  # it ends without cleaning up: as good as a crash for its files
        assert live.wait(60) == 0
    S3BlobStorage(MappingStorage(), f"memory://{unique()}", cache_dir, create=True).close()
    assert _files(staging, ".staged") == set() and _files(incoming, ".part") == set()


def test_owners_in_one_process_keep_each_others_files(tmp_path: Any) -> None:
    first = OwnedTempDir(str(tmp_path / "d"), (".staged",))
    path = first.path("1-a", ".staged")
    open(path, "wb").close()
    second = OwnedTempDir(str(tmp_path / "d"), (".staged",))
    assert second.sweep() == 0 and os.path.exists(path)  # first is alive (its flock is held)
    first.close()  # gone (its lock released and removed), its file left behind
    assert second.sweep() == 1 and not os.path.exists(path)
    assert os.listdir(tmp_path / "d") == []  # lock files live beside the directory, not in it
    second.close()
    assert os.listdir(tmp_path / ".d.owners") == []
