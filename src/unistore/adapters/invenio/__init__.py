"""Invenio adapter: invenio-files-rest storage on unistore backends, direct multipart uploads.

``FILES_REST_STORAGE_FACTORY = "unistore.adapters.invenio.storage_factory"``; see docs/invenio.md.
"""

from __future__ import annotations

from .factory import storage_factory

__all__ = ["storage_factory"]
