"""S3 fault tests on a private SeaweedFS that the tests kill and restart (by PID)."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.seaweedfs import SeaweedFS, start_seaweedfs
from unistore.backends.s3 import S3Backend
from unistore.errors import BackendConnectionError, BackendError

MiB = 1024 * 1024


@pytest.fixture
def private_seaweedfs(tmp_path: Path) -> Iterator[SeaweedFS]:
    with start_seaweedfs(tmp_path / "weed") as server:
        yield server


class KillingReader(io.RawIOBase):
    """Yields ``total`` bytes; kills the server once ``kill_after`` bytes have been read."""

    def __init__(self, server: SeaweedFS, total: int, kill_after: int) -> None:
        self.server = server
        self.left = total
        self.read_so_far = 0
        self.kill_after = kill_after
        self.block = os.urandom(MiB)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.read_so_far >= self.kill_after:
            self.server.kill()
        n = min(len(buffer), self.left, MiB)
        buffer[:n] = self.block[:n]
        self.left -= n
        self.read_so_far += n
        return n


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_server_killed_during_multipart_upload(private_seaweedfs: SeaweedFS, engine: str) -> None:
    sw = private_seaweedfs
    bucket = sw.new_bucket()
    url = sw.url(bucket, "fault")
    options: dict[str, Any] = dict(
        engine=engine, connect_timeout=2, read_timeout=5, max_attempts=2, multipart_chunksize=5 * MiB, workers=2
    )
    be = S3Backend.from_url(url, **options)
    be.create()
    be.open()
    be.store("before", b"still here")
    reader = KillingReader(sw, total=64 * MiB, kill_after=12 * MiB)
    t0 = time.monotonic()
    with pytest.raises(BackendConnectionError):
        be.store_file("partial", reader)  # type: ignore[arg-type]
    elapsed = time.monotonic() - t0
    # bounded by the configured timeouts and attempts, not hanging (generous margin for a busy machine)
    assert elapsed < (2 + 5) * 2 * 3 + 10
    assert sw.proc is not None and sw.proc.poll() is not None  # the server really died
    be.close()
    sw.start()  # same ports, same data
    with S3Backend.from_url(url, engine=engine) as after:
        assert not after.info("partial").exists  # no partial object ever became visible
        assert after.load("before") == b"still here"
    raw = sw.client()
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=bucket, Prefix="fault/").get("Contents", [])]
    assert "fault/partial" not in keys


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_retry_recovers_transient_outage(private_seaweedfs: SeaweedFS, engine: str) -> None:
    sw = private_seaweedfs
    bucket = sw.new_bucket()
    url = sw.url(bucket, "retry")
    be = S3Backend.from_url(url, engine=engine, connect_timeout=2, read_timeout=10, max_attempts=10)
    be.create()
    be.open()
    be.store("idem", b"value survives")
    sw.kill()
    restarted = threading.Event()
    failure: list[BaseException] = []

    def restart() -> None:
        try:
            time.sleep(0.5)
            sw.start()
        except BaseException as e:  # noqa: BLE001
            failure.append(e)
        finally:
            restarted.set()

    t = threading.Thread(target=restart)
    t.start()
    try:
        assert be.load("idem") == b"value survives"  # GET retried until the server is back
        assert be.info("idem").size == len(b"value survives")
    finally:
        t.join()
        be.close()
    assert restarted.is_set() and failure == []


class FailingReader(io.RawIOBase):
    """Yields ``fail_after`` bytes, then fails like a broken disk."""

    def __init__(self, fail_after: int) -> None:
        self.left = fail_after
        self.block = os.urandom(MiB)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            raise OSError("simulated read error")
        n = min(len(buffer), self.left, MiB)
        buffer[:n] = self.block[:n]
        self.left -= n
        return n


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_failed_multipart_upload_is_aborted(seaweedfs: SeaweedFS, engine: str) -> None:
    bucket = seaweedfs.new_bucket()
    be = S3Backend.from_url(seaweedfs.url(bucket, "abort"), engine=engine, multipart_chunksize=5 * MiB, workers=2)
    be.create()
    with be:
        with pytest.raises((OSError, BackendError)):
            be.store_file("broken", FailingReader(17 * MiB))  # type: ignore[arg-type]
        assert not be.info("broken").exists
        assert be.list_multipart_uploads() == []  # the parts already sent were freed
    raw = seaweedfs.client()
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    be.destroy()


class FreezingReader(io.RawIOBase):
    """Yields ``total`` bytes; freezes the server (SIGSTOP) once ``freeze_after`` bytes were read."""

    def __init__(self, server: SeaweedFS, total: int, freeze_after: int) -> None:
        self.server = server
        self.left = total
        self.read_so_far = 0
        self.freeze_after = freeze_after
        self.frozen_at: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.read_so_far >= self.freeze_after and self.frozen_at is None:
            assert self.server.proc is not None
            os.kill(self.server.proc.pid, signal.SIGSTOP)
            self.frozen_at = time.monotonic()
        n = min(len(buffer), self.left, MiB)
        buffer[:n] = b"f" * n
        self.left -= n
        self.read_so_far += n
        return n


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_store_file_against_a_frozen_server_ends_within_the_configured_bound(
    private_seaweedfs: SeaweedFS, engine: str
) -> None:
    """The bound of docs/s3.md: max_attempts x (connect_timeout + read_timeout) plus backoff
    (botocore: under 1 s before the second try); the failure path adds no timeout of its own."""
    sw = private_seaweedfs
    connect_timeout, read_timeout, attempts = 1.0, 3.0, 2
    bound = attempts * (connect_timeout + read_timeout) + 1.0
    url = sw.url(sw.new_bucket(), "frozen")
    options: dict[str, Any] = dict(
        engine=engine,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_attempts=attempts,
        multipart_chunksize=5 * MiB,
        workers=2,
    )
    be = S3Backend.from_url(url, **options)
    be.create()
    be.open()
    reader = FreezingReader(sw, total=64 * MiB, freeze_after=12 * MiB)
    assert sw.proc is not None
    try:
        with pytest.raises(BackendConnectionError):
            be.store_file("partial", reader)  # type: ignore[arg-type]
        assert reader.frozen_at is not None
        elapsed = time.monotonic() - reader.frozen_at
    finally:
        os.kill(sw.proc.pid, signal.SIGCONT)
    # 3 s of slack for a busy machine; the old failure path (one more try, then an abort listing
    # with its own tries) took 18 s and more here
    assert elapsed < bound + 3.0, f"store_file ended {elapsed:.1f}s after the freeze (bound {bound}s)"
    be.close()
    with S3Backend.from_url(url, engine=engine) as after:
        assert not after.info("partial").exists
        after.abort_stale_multipart(older_than=0)  # what the dead server kept (the abort runs in the background)
        assert after.list_multipart_uploads() == []
