"""Direct multipart uploads: the client sends the parts straight to S3 through presigned URLs.

oarepo-s3's feature on the current stack. A :class:`MultipartUpload` given to a bucket (or to a
record's files, which store it through ``ObjectVersion.set_contents``) makes the storage start an
S3 multipart upload instead of reading a stream; :func:`start` does that for a bucket and records
the upload's state in two object-version tags (``unistore_multipart``: JSON with the upload id,
size, part size and part count; ``unistore_multipart_expires``: an ISO timestamp with time zone).
Until completion the file instance is neither readable nor frozen. :func:`complete` checks the
client's part list against S3's, the number of parts and the declared size, then completes;
:func:`abort` aborts the S3 upload and removes the object version and its file. Both send
signals before and after, as oarepo-s3 did. Uploads started by oarepo-s3 (its
``oarepo_s3_multipart_config`` tags) are understood too, so they can be completed or cleaned up.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import ceil
from typing import Any

from blinker import Namespace
from flask import current_app

from ...backends.base import Backend
from ...errors import ObjectNotFound, UploadNotFound
from . import locations

log = logging.getLogger("unistore.adapters.invenio.multipart")

MiB = 1024 * 1024
STATE_TAG = "unistore_multipart"
EXPIRES_TAG = "unistore_multipart_expires"
OAREPO_STATE_TAG = "oarepo_s3_multipart_config"
OAREPO_EXPIRES_TAG = "oarepo_s3_multipart_expiration"

_signals = Namespace()
before_upload_complete = _signals.signal("unistore-before-upload-complete")
"""Sent with the ObjectVersion before completion (``state``, ``parts``); a receiver may raise to refuse."""
after_upload_complete = _signals.signal("unistore-after-upload-complete")
"""Sent with the ObjectVersion after completion (``state``, ``checksum``)."""
before_upload_abort = _signals.signal("unistore-before-upload-abort")
"""Sent with the ObjectVersion before an abort (``state``)."""
after_upload_abort = _signals.signal("unistore-after-upload-abort")
"""Sent with the ObjectVersion after an abort (``state``)."""


class MultipartError(Exception):
    """A request that cannot be honoured (answered with HTTP 400 by the views)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class MultipartUpload:
    """What a client wants to upload directly; passed to the storage in place of a stream."""

    key: str
    base_uri: str | None = None
    expires: int = 86400
    size: int | None = None
    content_type: str = "application/octet-stream"
    part_size: int | None = None
    # set by the storage when it started the S3 upload
    upload_id: str | None = None
    name: str | None = None
    fileurl: str | None = None


def expiration_seconds() -> int:
    cfg = current_app.config
    value = locations.setting(cfg, "UNISTORE_INVENIO_MULTIPART_EXPIRATION")
    if value is None:
        value = cfg.get("S3_MULTIPART_UPLOAD_EXPIRATION", 86400)
    return int(value)


def choose_part_size(size: int, part_size: int | None) -> tuple[int, int]:
    """(part size, number of parts) for ``size`` bytes: at least 5 MiB (S3's minimum) and at most
    S3_MAXIMUM_NUMBER_OF_PARTS parts."""
    cfg = current_app.config
    max_parts = int(locations.setting(cfg, "S3_MAXIMUM_NUMBER_OF_PARTS"))
    if part_size is None:
        part_size = max(int(locations.setting(cfg, "S3_DEFAULT_BLOCK_SIZE")), ceil(size / max_parts))
    part_size = int(part_size)
    if part_size < 5 * MiB:
        raise MultipartError(f"part size {part_size}: at least {5 * MiB} bytes")
    if part_size > 5 * 1024 * MiB:
        raise MultipartError("part size: at most 5 GiB")
    parts = max(1, ceil(size / part_size))
    if parts > max_parts:
        raise MultipartError(f"{parts} parts of {part_size} bytes: at most {max_parts} parts")
    return part_size, parts


def start(bucket: Any, key: str, size: int, content_type: str | None = None, part_size: int | None = None) -> Any:
    """Create object version ``key`` in ``bucket`` whose content the client uploads to S3 directly.

    Returns the ObjectVersion; its state is in :func:`state_of`.
    """
    from invenio_db import db
    from invenio_files_rest.models import ObjectVersion, ObjectVersionTag

    if not size or int(size) <= 0:
        raise MultipartError("size: a positive number of bytes is required")
    size = int(size)
    part_size, parts = choose_part_size(size, part_size)
    expires = expiration_seconds()
    mu = MultipartUpload(
        key=key,
        base_uri=bucket.location.uri,
        expires=expires,
        size=size,
        content_type=content_type or "application/octet-stream",
        part_size=part_size,
    )
    with db.session.begin_nested():
        obj = ObjectVersion.create(bucket, key)
        obj.set_contents(mu, size=size)
        # not readable until completed, and still writable (so the usual cleanup may delete it)
        obj.file.readable = False
        obj.file.writable = True
        state = {
            "upload_id": mu.upload_id,
            "key": mu.name,
            "size": size,
            "part_size": part_size,
            "parts": parts,
            "content_type": mu.content_type,
        }
        until = datetime.now(UTC) + timedelta(seconds=expires)
        ObjectVersionTag.create(obj, STATE_TAG, json.dumps(state))
        ObjectVersionTag.create(obj, EXPIRES_TAG, until.isoformat())
    return obj


def state_of(obj: Any) -> dict[str, Any] | None:
    """The upload state of an object version (ours or oarepo-s3's), or None if it has none."""
    tags = obj.get_tags()
    raw = tags.get(STATE_TAG) or tags.get(OAREPO_STATE_TAG)
    if not raw:
        return None
    state: dict[str, Any] = json.loads(raw)
    state.setdefault("upload_id", state.get("uploadId"))
    state.setdefault("size", obj.file.size if obj.file else None)
    return state


def expires_of(obj: Any) -> datetime | None:
    """When the upload expires (naive timestamps, as oarepo-s3 wrote them, are UTC)."""
    tags = obj.get_tags()
    raw = tags.get(EXPIRES_TAG) or tags.get(OAREPO_EXPIRES_TAG)
    if not raw:
        return None
    at = datetime.fromisoformat(raw)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _storage(obj: Any) -> Any:
    return obj.file.storage()


def _backend_and_name(obj: Any) -> tuple[Backend, str]:
    storage = _storage(obj)
    return storage.backend, storage.name


def check_upload_id(state: dict[str, Any], upload_id: str) -> None:
    if state.get("upload_id") != upload_id:
        raise MultipartError("no such upload", status=404)


def presign_parts(obj: Any, state: dict[str, Any], part_numbers: list[int]) -> dict[str, str]:
    """Presigned PUT URLs for the parts, valid for S3_UPLOAD_URL_EXPIRATION seconds."""
    backend, name = _backend_and_name(obj)
    parts = int(state.get("parts") or 10000)
    expires = int(locations.setting(current_app.config, "S3_UPLOAD_URL_EXPIRATION"))
    expires = min(expires, 7 * 24 * 3600)  # S3's longest presign
    urls = {}
    for n in part_numbers:
        if not 1 <= n <= parts:
            raise MultipartError(f"part number {n}: between 1 and {parts}")
        urls[str(n)] = backend.presign_part(name, state["upload_id"], n, expires=expires)
    return urls


def uploaded_parts(obj: Any, state: dict[str, Any]) -> list[dict[str, Any]]:
    """The parts S3 holds so far, in S3's shape (``PartNumber``, ``ETag``, ``Size``)."""
    backend, name = _backend_and_name(obj)
    try:
        parts = backend.list_parts(name, state["upload_id"])
    except (ObjectNotFound, UploadNotFound) as e:
        raise MultipartError("the upload is gone (completed, aborted or expired)", status=404) from e
    return [{"PartNumber": int(p["part_number"]), "ETag": _quoted(p["etag"]), "Size": int(p["size"])} for p in parts]


def _quoted(etag: str) -> str:
    return '"' + etag.strip('"') + '"'


def complete(obj: Any, state: dict[str, Any], parts: list[dict[str, Any]] | None) -> str:
    """Check the client's parts against S3's, then complete; returns the checksum ``etag:<etag>``."""
    from invenio_db import db
    from invenio_files_rest.models import ObjectVersionTag

    uploaded = {p["PartNumber"]: p for p in uploaded_parts(obj, state)}
    if parts is None:
        parts = [{"PartNumber": n, "ETag": p["ETag"]} for n, p in sorted(uploaded.items())]
    try:
        given = sorted(((int(p["PartNumber"]), str(p["ETag"]).strip('"')) for p in parts), key=lambda t: t[0])
    except (KeyError, TypeError, ValueError) as e:
        raise MultipartError('parts: a list of {"PartNumber": n, "ETag": "..."}') from e
    numbers = [n for n, _ in given]
    if len(set(numbers)) != len(numbers):
        raise MultipartError("parts: a part number is given twice")
    for n, etag in given:
        have = uploaded.get(n)
        if have is None:
            raise MultipartError(f"part {n} was not uploaded")
        if have["ETag"].strip('"') != etag:
            raise MultipartError(f"part {n}: ETag {etag} does not match the uploaded part")
    expected = state.get("parts")
    if expected is not None and len(given) != int(expected):
        raise MultipartError(f"{len(given)} parts given, the upload was declared with {expected}")
    total = sum(uploaded[n]["Size"] for n in numbers)
    if state.get("size") is not None and total != int(state["size"]):
        raise MultipartError(f"the parts hold {total} bytes, the upload was declared with {state['size']}")
    before_upload_complete.send(obj, state=state, parts=given)
    backend, name = _backend_and_name(obj)
    etag = backend.complete_multipart(
        name, state["upload_id"], [{"part_number": n, "etag": e} for n, e in given]
    ).strip('"')
    size = backend.stat(name).size
    checksum = f"etag:{etag}"
    with db.session.begin_nested():
        obj.file.size = size
        obj.file.checksum = checksum
        obj.file.readable = True
        obj.file.writable = False
        for tag in (STATE_TAG, EXPIRES_TAG, OAREPO_STATE_TAG, OAREPO_EXPIRES_TAG):
            ObjectVersionTag.delete(obj, tag)
    after_upload_complete.send(obj, state=state, checksum=checksum)
    return checksum


def abort(obj: Any, state: dict[str, Any]) -> None:
    """Abort the S3 upload (its parts are freed) and remove the object version and its file."""
    before_upload_abort.send(obj, state=state)
    backend, name = _backend_and_name(obj)
    try:
        backend.abort_multipart(name, state["upload_id"])
    except (ObjectNotFound, UploadNotFound):
        pass  # gone already: only the records are left
    remove_version(obj)
    after_upload_abort.send(obj, state=state)


def remove_version(obj: Any) -> None:
    """Delete an object version for good, with its file instance and data when nothing else uses it."""
    from invenio_db import db
    from invenio_files_rest.models import FileInstance, ObjectVersion, ObjectVersionTag

    file_id = obj.file_id
    storage = obj.file.storage() if obj.file is not None else None
    with db.session.begin_nested():
        was_head = obj.is_head
        bucket, key = obj.bucket, obj.key
        ObjectVersionTag.delete(obj)
        obj.remove()
        if was_head:
            latest = ObjectVersion.get_versions(bucket, key, desc=True).first()
            if latest:
                latest.is_head = True
        if file_id is not None and not db.session.query(ObjectVersion).filter_by(file_id=file_id).count():
            f = db.session.get(FileInstance, file_id)
            if f is not None:
                db.session.delete(f)
        else:
            storage = None
    if storage is not None:
        storage.delete()
