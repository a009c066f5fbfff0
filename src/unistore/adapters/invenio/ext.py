"""The Flask extension (entry points ``invenio_base.apps`` / ``invenio_base.api_apps``).

The storage factory works without it (a site switches from invenio-s3 by changing
``FILES_REST_STORAGE_FACTORY`` only); the extension adds the config defaults and, with
``UNISTORE_INVENIO_DELETE_DATA``, deletes the data of object versions deleted for good.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from . import locations


class UnistoreInvenio:
    """Invenio extension of unistore's storage."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        for key, value in {**locations.S3_DEFAULTS, **locations.DEFAULTS}.items():
            app.config.setdefault(key, value)
        from invenio_files_rest.signals import file_deleted

        file_deleted.connect(_on_file_deleted, weak=False)
        app.extensions["unistore-invenio"] = self


def _on_file_deleted(sender: Any, obj: Any = None, **kwargs: Any) -> None:
    """A version deleted for good (not a delete marker) leaves its file: delete it when unused."""
    from flask import current_app
    from invenio_db import db
    from invenio_files_rest.models import ObjectVersion

    if obj is None or not obj.file_id or not locations.setting(current_app.config, "UNISTORE_INVENIO_DELETE_DATA"):
        return
    factory = current_app.config.get("FILES_REST_STORAGE_FACTORY")
    if not (isinstance(factory, str) and factory.startswith("unistore.")):
        return  # another storage: leave its files alone
    still = (
        db.session.query(ObjectVersion)
        .filter_by(bucket_id=obj.bucket_id, key=obj.key, version_id=obj.version_id)
        .count()
    )
    if still:
        return  # a delete marker was added; the version and its file stay
    from .tasks import delete_file_data

    # after invenio-files-rest's own remove_file_data, queued before this (it finds the file
    # frozen and leaves it; were the file record gone first, that task would fail on None)
    delete_file_data.apply_async((str(obj.file_id),), countdown=3)
