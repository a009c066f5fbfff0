"""Parallel transfers: multipart upload of a stream, ranged parallel download, multipart copy.

One implementation serves both engines (the parts go through the boto3 client, whose per-request
cost is small against 8 MiB parts). What it guarantees:

* an upload either completes or aborts *its own* upload id (never another writer's); on Ctrl-C
  (KeyboardInterrupt) or any other exception it stops sending, waits at most
  ``ABORT_GRACE`` seconds for the parts in flight and aborts, so no object appears;
* after a connection failure the abort is sent from a background thread, so the call ends within
  its own timeouts (``max_attempts`` x (``connect_timeout`` + ``read_timeout``) plus backoff) and
  the failure path adds no timeout of its own; what a dead server keeps is found later by
  ``abort_stale_multipart``;
* at most ``workers`` parts are in memory at once.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import IO, Any

from ...errors import BackendConnectionError, ReadRangeError
from .errors import is_precondition_failed, translate
from .streams import read_full

log = logging.getLogger("unistore.backends.s3")

ABORT_GRACE = 0.5  # seconds to let parts in flight finish before aborting


class Uploader:
    """Multipart uploads and copies of one backend (``client`` is its boto3 client)."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        workers: int,
        chunksize: int,
        checksum: bool,
        sse: dict[str, Any],
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.workers = workers
        self.chunksize = chunksize
        self.checksum = checksum  # send CRC32 part checksums (checksum="when_supported")
        self.sse = sse

    # ------------------------------------------------------------------ upload of a stream
    def upload(self, key: str, name: str, file: IO[bytes], size: int | None, extra: dict[str, Any]) -> str:
        """Upload ``size`` bytes (None: to EOF) of ``file`` as ``key``; return the final ETag (quoted)."""
        args = dict(extra)
        if self.checksum:
            args["ChecksumAlgorithm"] = "CRC32"
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **args)["UploadId"]
        except Exception as e:
            raise translate(e, f"store {name}") from None
        late: list[Future[Any]] = []
        try:
            parts = self._send_parts(key, name, upload_id, file, size, late)
            return self._complete(key, name, upload_id, parts)
        except BaseException as e:
            self.abort_in_cleanup(key, upload_id, e, late)
            raise

    def _send_parts(
        self, key: str, name: str, upload_id: str, file: IO[bytes], size: int | None, late: list[Future[Any]]
    ) -> list[dict[str, Any]]:
        """Send the parts; on any exception, leave in ``late`` the parts still in flight after the grace."""
        left = size
        number = 0
        parts: list[dict[str, Any]] = []
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="unistore-s3-put")
        inflight: set[Future[dict[str, Any]]] = set()
        try:
            while True:
                want = self.chunksize if left is None else min(self.chunksize, left)
                data = read_full(file, want) if want else b""
                if not data and number > 0:
                    break
                number += 1
                inflight.add(pool.submit(self._part, key, name, upload_id, number, data))
                if left is not None:
                    left -= len(data)
                    if left == 0 or len(data) < want:
                        break
                elif len(data) < want:
                    break
                while len(inflight) >= self.workers:
                    done, inflight = _wait_any(inflight)
                    parts += [f.result() for f in done]
            while inflight:
                done, inflight = _wait_any(inflight)
                parts += [f.result() for f in done]
        except BaseException as e:
            for f in inflight:
                f.cancel()
            running = [f for f in inflight if not f.done()]
            if running and not isinstance(e, BackendConnectionError):  # a dead server: no extra wait
                wait(running, timeout=ABORT_GRACE)
            late += [f for f in running if not f.done()]
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        if left:
            raise ReadRangeError(f"{name}: the file ended {left} bytes early")
        return parts

    def _part(self, key: str, name: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        args: dict[str, Any] = dict(self.sse)
        if self.checksum:
            args["ChecksumCRC32"] = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        try:
            resp = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data, **args
            )
        except Exception as e:
            raise translate(e, f"store {name} (part {number})") from None
        part = {"PartNumber": number, "ETag": resp["ETag"]}
        if self.checksum and resp.get("ChecksumCRC32"):
            part["ChecksumCRC32"] = resp["ChecksumCRC32"]
        return part

    def _complete(self, key: str, name: str, upload_id: str, parts: list[dict[str, Any]]) -> str:
        parts.sort(key=lambda p: p["PartNumber"])
        try:
            resp = self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, **self.sse
            )
        except Exception as e:
            raise translate(e, f"store {name}") from None
        return str(resp.get("ETag", ""))

    def abort_in_cleanup(
        self, key: str, upload_id: str, error: BaseException, late: list[Future[Any]] | None = None
    ) -> None:
        """Abort ``upload_id`` after ``error``: at once, or in the background after a connection failure."""

        def abort() -> None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception as e:  # the server may be gone; abort_stale_multipart finds what is left
                log.warning("could not abort upload %s of %s: %s", upload_id, key, type(e).__name__)

        if isinstance(error, BackendConnectionError):
            threading.Thread(target=abort, name="unistore-s3-abort", daemon=True).start()
            return
        abort()
        for f in late or ():  # a part that lands after the abort may revive the upload on some services
            f.add_done_callback(lambda _f: abort())

    # ------------------------------------------------------------------ server-side multipart copy
    def copy(self, source: dict[str, Any], key: str, name: str, size: int, extra: dict[str, Any], etag: str) -> None:
        """Server-side copy of an object larger than CopyObject allows, in ranged parts."""
        part = max(self.chunksize, 256 * 1024 * 1024)
        try:
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, **extra)["UploadId"]
        except Exception as e:
            raise translate(e, f"copy {name}") from None
        copy_sse = {k: v for k, v in extra.items() if k.startswith("CopySource")}
        plain = {k: v for k, v in extra.items() if k.startswith("SSECustomer")}

        def one(number: int) -> dict[str, Any]:
            start = (number - 1) * part
            end = min(size, start + part) - 1
            try:
                resp = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                    CopySourceIfMatch=etag,
                    **copy_sse,
                    **plain,
                )
            except Exception as e:
                if is_precondition_failed(e):
                    raise  # the source changed: the caller reads it again
                raise translate(e, f"copy {name}") from None
            return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="unistore-s3-copy") as pool:
                parts = list(pool.map(one, range(1, (size + part - 1) // part + 1)))
            self._complete(key, name, upload_id, parts)
        except BaseException as e:
            self.abort_in_cleanup(key, upload_id, e)
            raise


def _wait_any(futures: set[Future[Any]]) -> tuple[set[Future[Any]], set[Future[Any]]]:
    done, pending = wait(futures, return_when=FIRST_COMPLETED)
    return done, pending


def parallel_download(
    fetch: Callable[[int, int], Any], name: str, fd: int, pos: int, start: int, length: int, part: int, workers: int
) -> int:
    """Fetch ``length`` bytes from ``start`` in ranges of ``part`` on ``workers`` threads; pwrite them at ``pos``."""

    def one(off: int) -> int:
        n = min(part, length - off)
        view = memoryview(fetch(start + off, n))
        if len(view) != n:
            raise ReadRangeError(f"{name}: short read at {start + off}")
        done = 0
        while done < n:
            done += os.pwrite(fd, view[done:], pos + off + done)
        return n

    # a private pool: load_file may itself run on the bulk pool
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unistore-s3-get") as pool:
        return sum(pool.map(one, range(0, length, part)))
