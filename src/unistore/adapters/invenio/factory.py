"""The storage factory, called exactly as invenio-files-rest calls ``FILES_REST_STORAGE_FACTORY``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app

from ...backends.base import MULTIPART
from . import locations
from .rdm import UnistoreMultipartFileStorage
from .storage import UnistoreFileStorage


def storage_factory(
    fileinstance: Any = None,
    default_location: str | None = None,
    default_storage_class: str | None = None,
    filestorage_class: type[UnistoreFileStorage] | None = None,
    fileurl: str | None = None,
    size: int | None = None,
    modified: datetime | None = None,
    clean_dir: bool = True,
    **kwargs: Any,
) -> UnistoreFileStorage:
    """A storage for ``fileinstance`` (its URI, or a new ``<location>/ab/cd/<id>/data``) or ``fileurl``.

    The class is :class:`UnistoreMultipartFileStorage` where the backend has multipart uploads, else
    :class:`UnistoreFileStorage`; a ``filestorage_class`` that subclasses one of them is used as is.
    """
    from invenio_files_rest.helpers import make_path

    root = None
    if fileinstance is not None:
        size = fileinstance.size
        modified = fileinstance.updated
        if fileinstance.uri:
            fileurl = fileinstance.uri
        else:
            if not default_location:
                raise ValueError("a new file instance needs default_location")
            root = default_location.rstrip("/")
            fileurl = make_path(
                root,
                str(fileinstance.id),
                "data",
                current_app.config["FILES_REST_STORAGE_PATH_DIMENSIONS"],
                current_app.config["FILES_REST_STORAGE_PATH_SPLIT_LENGTH"],
            )
    if not fileurl:
        raise ValueError("give a file instance or a fileurl")
    resolved = locations.resolve(fileurl, current_app.config, root=root)
    backend = locations.backend_for(resolved, current_app.config)
    cls: type[UnistoreFileStorage]
    if filestorage_class is not None and issubclass(filestorage_class, UnistoreFileStorage):
        cls = filestorage_class
    else:
        cls = UnistoreMultipartFileStorage if backend.supports(MULTIPART) else UnistoreFileStorage
    return cls(
        fileurl,
        size=size,
        modified=modified,
        backend=backend,
        name=resolved.name,
        flat=resolved.flat,
        clean_dir=clean_dir,
    )
