"""ZConfig glue: the ``<s3blobstorage>`` section (``%import unistore.adapters.zodb``).

The keys are zodb-s3blobs' (see component.xml), so a zope.conf switches by changing its
``%import`` line; ``url`` selects any unistore backend instead of ``bucket-name``. No key is ever
dropped: each one given either applies or raises :class:`~unistore.errors.ConfigError` naming it.

As in zodb-s3blobs, S3 gets two clients: one for uploads, deletes and listings (``s3-connect-timeout``
60 s, ``s3-read-timeout`` 300 s) and one for the reads that fill the cache
(``s3-download-connect-timeout`` 5 s, ``s3-download-read-timeout`` 10 s,
``s3-download-max-attempts`` 2), so that a cold read of a stalled service fails within seconds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ZODB.config import BaseConfig

from ...backends.base import Backend
from ...errors import BackendAlreadyExists, BackendDoesNotExist, ConfigError
from .blobstorage import S3BlobStorage

# zodb-s3blobs' defaults of the keys that have one
UPLOAD_CONNECT_TIMEOUT = 60.0
UPLOAD_READ_TIMEOUT = 300.0
DOWNLOAD_CONNECT_TIMEOUT = 5.0
DOWNLOAD_READ_TIMEOUT = 10.0
DOWNLOAD_MAX_ATTEMPTS = 2

# ZConfig key -> S3Backend option, for the keys that tune either client
_TUNING = {
    "s3-region": "region",
    "s3-addressing-style": "addressing_style",
    "s3-sse-customer-key": "sse_customer_key",
    "s3-allow-insecure-sse-c": "allow_insecure_sse_c",
}
_CREDENTIALS = {"s3-access-key": "access_key", "s3-secret-key": "secret_key"}
_TIMEOUTS = (
    "s3-connect-timeout",
    "s3-read-timeout",
    "s3-download-connect-timeout",
    "s3-download-read-timeout",
    "s3-download-max-attempts",
)
_WHERE = ("bucket-name", "s3-prefix", "s3-endpoint-url", "s3-use-ssl")  # what a url says itself
_S3_KEYS = (*_WHERE, *_CREDENTIALS, *_TUNING, *_TIMEOUTS)
_S3_SCHEMES = ("s3", "b2")
# s3:[cred@][proto://host]/bucket...: credentials are what precedes an "@" before the endpoint or bucket
_URL_CREDENTIALS = re.compile(r"^[a-z0-9]+:(?:[^@/]|/(?!/))*?@(?:https?://|/)", re.IGNORECASE)


def _given(section: Any) -> dict[str, Any]:
    """The S3 keys this section sets (ZConfig gives None for every key left out)."""
    given = {}
    for key in _S3_KEYS:
        value = getattr(section, key.replace("-", "_"))
        if value is not None:
            given[key] = value
    return given


def _names(keys: Any) -> str:
    return ", ".join(sorted(keys))


def _client_options(given: dict[str, Any], upload_workers: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """S3Backend options of the upload client and of the download client."""
    common = {option: given[key] for key, option in _TUNING.items() if key in given}
    common.update({option: given[key] for key, option in _CREDENTIALS.items() if key in given})
    upload = dict(
        common,
        connect_timeout=given.get("s3-connect-timeout", UPLOAD_CONNECT_TIMEOUT),
        read_timeout=given.get("s3-read-timeout", UPLOAD_READ_TIMEOUT),
        workers=upload_workers,
    )
    attempts = given.get("s3-download-max-attempts", DOWNLOAD_MAX_ATTEMPTS)
    if attempts < 1:
        raise ConfigError(f"s3-download-max-attempts must be at least 1, not {attempts}")
    download = dict(
        common,
        connect_timeout=given.get("s3-download-connect-timeout", DOWNLOAD_CONNECT_TIMEOUT),
        read_timeout=given.get("s3-download-read-timeout", DOWNLOAD_READ_TIMEOUT),
        max_attempts=attempts,
    )
    for key in _TIMEOUTS[:4]:
        if key in given and given[key] <= 0:
            raise ConfigError(f"{key} must be a positive number of seconds, not {given[key]}")
    return upload, download


Backends = tuple[Backend, Backend | None, Callable[[], Backend] | None]  # upload, download, bucket root


def _from_url(url: str, given: dict[str, Any], upload_workers: int) -> Backends:
    from ...url import open_backend

    conflicting = [key for key in _WHERE if key in given]
    if conflicting:
        raise ConfigError(
            f"<s3blobstorage>: {_names(conflicting)} conflict with url (the url gives the bucket, prefix and "
            "endpoint): drop them or drop url"
        )
    scheme = url.partition(":")[0].lower()
    if scheme not in _S3_SCHEMES:
        if given:
            raise ConfigError(
                f"<s3blobstorage>: {_names(given)} apply only to an s3: or b2: url, not to a {scheme}: url"
            )
        return open_backend(url), None, None
    creds = [key for key in _CREDENTIALS if key in given]
    if creds and _URL_CREDENTIALS.match(url):
        raise ConfigError(f"<s3blobstorage>: {_names(creds)} conflict with the credentials in url: give them once")
    upload, download = _client_options(given, upload_workers)
    backend = open_backend(url, **upload)
    prefix = str(getattr(backend, "prefix", ""))
    stripped = url.rstrip("/")
    root = None
    if prefix and stripped.endswith("/" + prefix):
        root_url = stripped[: -len(prefix) - 1]
        root = lambda: open_backend(root_url, **upload)  # noqa: E731
    return backend, open_backend(url, **download), root


def _from_keys(section: Any, given: dict[str, Any]) -> Backends:
    from ...backends.s3 import S3Backend

    bucket = given.pop("bucket-name", None)
    if not bucket:
        raise ConfigError("<s3blobstorage> needs either url or bucket-name")
    creds = [key for key in _CREDENTIALS if key in given]
    if len(creds) == 1:
        raise ConfigError(f"<s3blobstorage>: {creds[0]} is given without its pair: give both or neither")
    use_ssl = given.get("s3-use-ssl")
    endpoint = given.get("s3-endpoint-url")
    if endpoint and endpoint.startswith(("http://", "https://")):
        if use_ssl is not None and use_ssl != endpoint.startswith("https://"):
            raise ConfigError(
                f"<s3blobstorage>: s3-use-ssl {'true' if use_ssl else 'false'} conflicts with s3-endpoint-url "
                f"{endpoint}: drop s3-use-ssl or change the endpoint's scheme"
            )
    elif endpoint:
        endpoint = ("http://" if use_ssl is False else "https://") + endpoint
    upload, download = _client_options(given, section.upload_workers)
    where: dict[str, Any] = {"endpoint_url": endpoint, "use_ssl": True if use_ssl is None else use_ssl}
    prefix = given.get("s3-prefix", "")
    return (
        S3Backend(bucket, prefix, **where, **upload),
        S3Backend(bucket, prefix, **where, **download),
        (lambda: S3Backend(bucket, "", **where, **upload)) if prefix.strip("/") else None,
    )


def backends_from_section(section: Any) -> Backends:
    """The (unopened) backends a section describes: for uploads, for downloads (None: the same one),
    and a factory of the bucket's root (None unless the backend is a prefix in an S3 bucket)."""
    given = _given(section)
    if section.upload_workers < 1:
        raise ConfigError(f"upload-workers must be at least 1, not {section.upload_workers}")
    if section.url:
        return _from_url(section.url, given, section.upload_workers)
    return _from_keys(section, given)


def open_existing(backend: Backend, bucket_root: Callable[[], Backend] | None, create: bool) -> None:
    """Open ``backend``; a missing bucket (or directory) is an error unless ``create``.

    A new prefix in an existing bucket is no missing bucket: its marker is created (S3 reports a
    prefix without objects as a storage that does not exist).
    """
    try:
        backend.open()
        return
    except BackendDoesNotExist as e:
        if not create and not (bucket_root is not None and _opens(bucket_root())):
            raise BackendDoesNotExist(
                f"{backend!r} does not exist ({e}): create the bucket, or set create-bucket true in <s3blobstorage>"
            ) from None
    try:
        backend.create()
    except BackendAlreadyExists:  # another process created it a moment ago
        pass
    backend.open()


def _opens(backend: Backend) -> bool:
    try:
        backend.open()
    except BackendDoesNotExist:
        return False
    backend.close()
    return True


class S3BlobStorageFactory(BaseConfig):
    """ZConfig datatype of ``<s3blobstorage>``: opens the base storage, then wraps it."""

    def open(self) -> S3BlobStorage:
        section = self.config
        backend, download, bucket_root = backends_from_section(section)
        open_existing(backend, bucket_root, section.create_bucket)
        try:
            base = section.base.open()
        except BaseException:
            backend.close()
            raise
        try:
            return S3BlobStorage(
                base,
                backend,
                section.cache_dir,
                cache_size=section.cache_size,
                staging_dir=section.staging_dir,
                upload_workers=section.upload_workers,
                download_backend=download,
                owns_backend=True,
            )
        except BaseException:
            base.close()
            raise
