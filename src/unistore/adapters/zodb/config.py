"""ZConfig glue: the ``<s3blobstorage>`` section (``%import unistore.adapters.zodb``).

The keys are zodb-s3blobs' (see component.xml), so a zope.conf switches by changing its
``%import`` line. ``url`` selects any unistore backend instead of the ``s3-*`` keys.
"""

from __future__ import annotations

from typing import Any

from ZODB.config import BaseConfig

from ...backends.base import Backend
from ...errors import ConfigError
from .blobstorage import S3BlobStorage


def backend_from_section(section: Any) -> Backend:
    """The (unopened) backend a ``<s3blobstorage>`` section describes."""
    if section.url:
        from ...url import open_backend

        return open_backend(section.url)
    if not section.bucket_name:
        raise ConfigError("<s3blobstorage> needs either url or bucket-name")
    from ...backends.s3 import S3Backend

    endpoint = section.s3_endpoint_url
    if endpoint and not endpoint.startswith(("http://", "https://")):
        endpoint = ("https://" if section.s3_use_ssl else "http://") + endpoint
    return S3Backend(
        section.bucket_name,
        section.s3_prefix or "",
        access_key=section.s3_access_key,
        secret_key=section.s3_secret_key,
        endpoint_url=endpoint,
        region=section.s3_region,
        addressing_style=section.s3_addressing_style,
        use_ssl=section.s3_use_ssl,
        sse_customer_key=section.s3_sse_customer_key,
        connect_timeout=section.s3_connect_timeout,
        read_timeout=section.s3_read_timeout,
        max_attempts=max(1, section.s3_download_max_attempts),
        workers=max(4, section.upload_workers),
    )


class S3BlobStorageFactory(BaseConfig):
    """ZConfig datatype of ``<s3blobstorage>``: opens the base storage, then wraps it."""

    def open(self) -> S3BlobStorage:
        section = self.config
        backend = backend_from_section(section)
        base = section.base.open()
        try:
            return S3BlobStorage(
                base,
                backend,
                section.cache_dir,
                cache_size=section.cache_size,
                staging_dir=section.staging_dir,
                upload_workers=section.upload_workers,
                owns_backend=True,
            )
        except BaseException:
            base.close()
            raise
