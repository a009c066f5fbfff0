"""S3 multipart: the upload primitives, failed and interrupted ``store_file`` (only its own upload
is aborted, Ctrl-C leaves nothing), and the clean-up of uploads left by killed processes."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.seaweedfs import SeaweedFS
from unistore.backends.s3 import S3Backend
from unistore.errors import BackendError, UploadNotFound

MiB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def mp_backend(seaweedfs: SeaweedFS) -> Iterator[S3Backend]:
    be = S3Backend.from_url(
        seaweedfs.url(seaweedfs.new_bucket(), "mp"), multipart_chunksize=5 * MiB, multipart_threshold=5 * MiB
    )
    be.create()
    with be:
        yield be
    be.destroy()


class FailingReader(io.RawIOBase):
    """Yields ``fail_after`` bytes, then fails like a broken disk."""

    def __init__(self, fail_after: int) -> None:
        self.left = fail_after

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError("simulated read error")
        n = min(len(buffer), self.left, MiB)
        buffer[:n] = b"r" * n
        self.left -= n
        return n


def test_primitives_etags_and_aware_datetimes(mp_backend: S3Backend) -> None:
    be = mp_backend
    part1, part2 = os.urandom(5 * MiB), b"tail"
    uid = be.create_multipart("obj")
    e1 = be.upload_part("obj", uid, 1, part1)
    e2 = be.upload_part("obj", uid, 2, io.BytesIO(part2))
    assert (e1, e2) == (hashlib.md5(part1).hexdigest(), hashlib.md5(part2).hexdigest())  # unquoted
    [pending] = be.list_multipart_uploads("obj")
    assert pending["upload_id"] == uid and pending["initiated"].tzinfo is not None
    assert [p["etag"] for p in be.list_parts("obj", uid)] == [e1, e2]
    etag = be.complete_multipart("obj", uid)
    expected = hashlib.md5(bytes.fromhex(e1) + bytes.fromhex(e2)).hexdigest() + "-2"
    assert etag == expected
    meta = be.stat("obj")
    assert meta.etag == expected and meta.size == len(part1) + len(part2)
    assert "md5" not in meta.checksums  # a multipart ETag is no md5 of the content
    assert be.load("obj") == part1 + part2
    with pytest.raises(UploadNotFound):  # not ObjectNotFound: the item may well exist
        be.abort_multipart("obj", "no-such-upload")
    with pytest.raises(UploadNotFound):
        be.list_parts("obj", "no-such-upload")


def test_failed_store_file_aborts_only_its_own_upload(mp_backend: S3Backend, seaweedfs: SeaweedFS) -> None:
    be = mp_backend
    raw = seaweedfs.client()
    # a concurrent writer of the same key (another process), started just now
    other = raw.create_multipart_upload(Bucket=be.bucket, Key="mp/shared")["UploadId"]
    part = raw.upload_part(Bucket=be.bucket, Key="mp/shared", UploadId=other, PartNumber=1, Body=b"o" * (5 * MiB))
    with pytest.raises((OSError, BackendError)):
        be.store_file("shared", FailingReader(12 * MiB))  # type: ignore[arg-type]
    pending = raw.list_multipart_uploads(Bucket=be.bucket).get("Uploads", [])
    assert [u["UploadId"] for u in pending] == [other]  # ours aborted, theirs untouched
    assert not be.info("shared").exists
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    raw.complete_multipart_upload(Bucket=be.bucket, Key="mp/shared", UploadId=other, MultipartUpload=parts)
    assert be.load("shared") == b"o" * (5 * MiB)


def test_abort_stale_multipart(mp_backend: S3Backend) -> None:
    be = mp_backend
    ids = {be.create_multipart(f"stale/{i}") for i in range(3)}
    keep = be.create_multipart("other/x")
    assert be.abort_stale_multipart(older_than=3600) == 0  # all are young
    time.sleep(1.5)  # the services report Initiated to the second
    assert be.abort_stale_multipart(older_than=1, prefix="stale/") == 3
    left = be.list_multipart_uploads()
    assert [u["upload_id"] for u in left] == [keep] and not ids & {u["upload_id"] for u in left}
    assert be.abort_stale_multipart(older_than=0) == 1
    assert be.list_multipart_uploads() == []


CHILD = textwrap.dedent(
    """
    import io, sys, time
    from unistore.backends.s3 import S3Backend

    MiB = 1024 * 1024

    class Slow(io.RawIOBase):
        def __init__(self):
            self.sent = 0
        def readable(self):
            return True
        def readinto(self, buffer):
            if self.sent >= 12 * MiB and self.sent - len(buffer) < 12 * MiB:
                print("sending", flush=True)
            if self.sent >= 400 * MiB:
                return 0
            time.sleep(0.02)
            n = min(len(buffer), MiB)
            buffer[:n] = b"s" * n
            self.sent += n
            return n

    url, engine = sys.argv[1], sys.argv[2]
    be = S3Backend.from_url(url, engine=engine, multipart_chunksize=5 * MiB, workers=2)
    be.open()
    try:
        be.store_file("interrupted", Slow())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    print("completed", flush=True)
    """
)


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_ctrl_c_during_store_file_aborts_and_leaves_nothing(seaweedfs: SeaweedFS, engine: str) -> None:
    bucket = seaweedfs.new_bucket()
    url = seaweedfs.url(bucket, "int")
    S3Backend.from_url(url).create()
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, engine], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "sending"  # parts are on their way
        os.kill(child.pid, signal.SIGINT)
        sent = time.monotonic()
        out, _ = child.communicate(timeout=60)
        reported = time.monotonic() - sent
        assert child.returncode == 3 and out.split() == ["interrupted"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    raw = seaweedfs.client()
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # aborted before it said so
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket, Prefix="int/").get("Contents", [])]
    assert "int/interrupted" not in keys
    assert reported < 10, f"the abort took {reported:.1f}s after SIGINT"  # a bound (about 1 s), not a speed test
