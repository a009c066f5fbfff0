"""ZODB adapter: keep a ZODB's blobs in any unistore backend (S3, SFTP, rclone, posixfs, ...).

``%import unistore.adapters.zodb`` in a ZConfig file (zope.conf) makes the ``<s3blobstorage>``
section available; in Python use :class:`S3BlobStorage` directly. See docs/zodb.md.
"""

from .blobstorage import GCResult, S3BlobStorage, blob_name, parse_blob_name
from .cache import BlobCache

__all__ = ["BlobCache", "GCResult", "S3BlobStorage", "blob_name", "parse_blob_name"]
