"""Synapse adapter: a media storage provider, the ``s3_media_upload`` tool and auto-restore.

In ``homeserver.yaml``::

    media_storage_providers:
    - module: unistore.adapters.synapse.S3StorageProviderBackend
      store_local: true
      store_remote: true
      store_synchronous: true
      config:
        bucket: media
        endpoint_url: https://s3.example.org

The provider class is imported lazily, so the upload tool and the configuration parser can be used
without loading Synapse and Twisted.
"""

from __future__ import annotations

from typing import Any

__all__ = ["S3StorageProviderBackend", "StorageProviderBackend"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from .provider import S3StorageProviderBackend

        return S3StorageProviderBackend
    raise AttributeError(name)
