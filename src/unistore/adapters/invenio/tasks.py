"""Celery tasks: clean up expired direct uploads, delete removed files' data, compute checksums.

Schedule the cleanup with Celery beat, e.g. hourly::

    CELERY_BEAT_SCHEDULE = {
        "unistore-multipart-cleanup": {
            "task": "unistore.adapters.invenio.tasks.cleanup_expired_multipart_uploads",
            "schedule": 3600,
        },
    }
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import shared_task

log = logging.getLogger("unistore.adapters.invenio.tasks")


@shared_task(ignore_result=False)
def cleanup_expired_multipart_uploads(now: str | None = None) -> list[str]:
    """Abort every expired direct upload in S3 (freeing its parts) and remove its object version and
    file record; returns the keys cleaned up. Idempotent: an upload already gone from S3 only has
    its records removed, and a second run finds nothing. ``now`` (ISO) is for tests."""
    from invenio_db import db
    from invenio_files_rest.models import ObjectVersionTag

    from . import multipart

    at = datetime.fromisoformat(now) if now else datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    done: list[str] = []
    tags = (
        db.session.query(ObjectVersionTag)
        .filter(ObjectVersionTag.key.in_([multipart.EXPIRES_TAG, multipart.OAREPO_EXPIRES_TAG]))
        .all()
    )
    for tag in tags:
        obj = tag.object_version
        expires = multipart.expires_of(obj)
        state = multipart.state_of(obj)
        if expires is None or expires > at or state is None:
            continue
        try:
            multipart.abort(obj, state)
            db.session.commit()
            done.append(f"{obj.bucket_id}/{obj.key}")
        except Exception:
            db.session.rollback()
            log.exception("cleanup of the upload of %s failed", obj.key)
    return done


@shared_task(ignore_result=True)
def delete_file_data(file_id: str) -> bool:
    """Delete a file instance and its data once no object version refers to it (the data of a
    permanently deleted version, which invenio-files-rest's ``remove_file_data`` keeps)."""
    from invenio_db import db
    from invenio_files_rest.models import FileInstance, ObjectVersion

    f = db.session.get(FileInstance, uuid.UUID(file_id))
    if f is None:
        return False
    if db.session.query(ObjectVersion).filter_by(file_id=f.id).count():
        return False
    if f.multipart_objects:
        return False
    storage = f.storage()
    db.session.delete(f)
    db.session.commit()
    storage.delete()
    return True


@shared_task(ignore_result=False)
def compute_checksum(file_id: str) -> str | None:
    """Replace a file's ``etag:`` checksum (a direct upload's) by its md5, read once."""
    from invenio_db import db
    from invenio_files_rest.models import FileInstance

    f: Any = db.session.get(FileInstance, uuid.UUID(file_id))
    if f is None or not f.readable:
        return None
    f.checksum = f.storage().checksum(verify=True)
    db.session.commit()
    return str(f.checksum)
