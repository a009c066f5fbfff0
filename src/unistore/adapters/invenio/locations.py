"""Where a file lives: Invenio file URIs -> (opened unistore backend, backend name).

Three kinds of URI reach the storage:

- ``s3://bucket/key`` (invenio-s3's form, also ``s3://bucket/prefix/...``): one S3 backend per
  bucket, configured from invenio-s3's config keys (``S3_ENDPOINT_URL``, ``S3_ACCESS_KEY_ID``, ...),
  and the backend name is the object key, so existing buckets and file records keep working;
- a plain absolute path or ``file:///path`` (invenio-files-rest's local locations): a ``file://``
  backend rooted at the location's directory;
- any unistore URL (``s3:http://host:9000/bucket/prefix``, ``sftp://user@host/path``, ...): the
  backend that URL names, rooted at the location URI.

A file's URI is ``<location uri>/ab/cd/<rest of the file id>/data``. To find the root of a URI
that is not ``s3://``, the storage matches it against the URIs of the ``Location`` table (and
``UNISTORE_INVENIO_ROOTS``), longest first; a URI under no known root is split two levels up
(``<root>/<dir>/data``). Opened backends are cached per process and shared by every storage
object (unistore backends are thread-safe).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...backends.base import Backend
from ...errors import BackendDoesNotExist, ConfigError
from ...url import open_backend, redact

log = logging.getLogger("unistore.adapters.invenio.locations")

MiB = 1024 * 1024

#: invenio-s3's config keys and their defaults (used when invenio-s3 is not installed)
S3_DEFAULTS: dict[str, Any] = {
    "S3_ENDPOINT_URL": None,
    "S3_REGION_NAME": None,
    "S3_CA_BUNDLE": None,
    "S3_ACCESS_KEY_ID": None,
    "S3_SECRET_ACCESS_KEY": None,
    "S3_SIGNATURE_VERSION": "s3v4",
    "S3_URL_EXPIRATION": 60,
    "S3_UPLOAD_URL_EXPIRATION": 3600 * 24 * 7,
    "S3_DEFAULT_BLOCK_SIZE": 5 * MiB,
    "S3_MAXIMUM_NUMBER_OF_PARTS": 10000,
    "S3_CONFIG_EXTRA": {},
}

#: this adapter's own keys
DEFAULTS: dict[str, Any] = {
    # extra keyword options for every backend (e.g. {"workers": 16})
    "UNISTORE_INVENIO_BACKEND_OPTIONS": {},
    # roots of unistore-URL locations not in the Location table
    "UNISTORE_INVENIO_ROOTS": [],
    # answer downloads with a redirect to a presigned URL where the backend presigns
    "UNISTORE_INVENIO_REDIRECT_DOWNLOADS": True,
    # direct multipart uploads: seconds until an unfinished upload is cleaned up
    "UNISTORE_INVENIO_MULTIPART_EXPIRATION": None,  # None: S3_MULTIPART_UPLOAD_EXPIRATION or 86400
    # URL prefix of the direct multipart blueprint
    "UNISTORE_INVENIO_MULTIPART_URL_PREFIX": "/multipart",
    # delete the data of a permanently deleted object version (invenio-files-rest keeps it)
    "UNISTORE_INVENIO_DELETE_DATA": True,
}

# S3_CONFIG_EXTRA (botocore Config keyword arguments) -> S3Backend options
_CONFIG_EXTRA = {
    "connect_timeout": "connect_timeout",
    "read_timeout": "read_timeout",
    "max_pool_connections": "max_pool_connections",
}


def setting(config: Mapping[str, Any], key: str) -> Any:
    """``config[key]``, or this adapter's (or invenio-s3's) default."""
    if key in config:
        return config[key]
    if key in DEFAULTS:
        return DEFAULTS[key]
    return S3_DEFAULTS.get(key)


def s3_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """S3Backend options from invenio-s3's config keys (path addressing, as invenio-s3 hard-codes)."""
    opts: dict[str, Any] = {"addressing_style": "path"}
    key, secret = setting(config, "S3_ACCESS_KEY_ID"), setting(config, "S3_SECRET_ACCESS_KEY")
    if key and secret:
        opts["access_key"], opts["secret_key"] = key, secret
    if setting(config, "S3_REGION_NAME"):
        opts["region"] = setting(config, "S3_REGION_NAME")
    if setting(config, "S3_CA_BUNDLE"):
        opts["verify"] = setting(config, "S3_CA_BUNDLE")
    signature = setting(config, "S3_SIGNATURE_VERSION")
    if signature not in (None, "s3v4", "v4"):
        raise ConfigError(f"S3_SIGNATURE_VERSION {signature!r}: unistore signs with s3v4 only")
    extra = setting(config, "S3_CONFIG_EXTRA") or {}
    for name, option in _CONFIG_EXTRA.items():
        if name in extra:
            opts[option] = extra[name]
    retries = extra.get("retries") or {}
    if "max_attempts" in retries:
        opts["max_attempts"] = retries["max_attempts"]
    opts.update(setting(config, "UNISTORE_INVENIO_BACKEND_OPTIONS") or {})
    return opts


@dataclass(frozen=True)
class Resolved:
    """A file URI resolved: the backend's root URL (as written in URIs), the name below it, and
    whether the backend is a flat object store (no directories to clean up)."""

    root: str
    name: str
    backend_url: str
    flat: bool


def _is_path(uri: str) -> bool:
    return uri.startswith("/")


def backend_url_of_root(root: str, config: Mapping[str, Any]) -> tuple[str, bool]:
    """The unistore URL for a root as it is written in Invenio URIs, and whether it is flat."""
    if root.startswith("s3://"):
        bucket = root[len("s3://") :].strip("/")
        endpoint = (setting(config, "S3_ENDPOINT_URL") or "").rstrip("/")
        return f"s3:{endpoint}/{bucket}", True
    if _is_path(root):
        return "file://" + root, False
    scheme = root.split(":", 1)[0].lower()
    return root, scheme in ("s3", "b2")


def known_roots(config: Mapping[str, Any]) -> list[str]:
    """Location URIs plus UNISTORE_INVENIO_ROOTS, longest first."""
    roots = list(setting(config, "UNISTORE_INVENIO_ROOTS") or [])
    roots += _location_uris()
    return sorted({r.rstrip("/") for r in roots if r}, key=len, reverse=True)


_locations_cache: dict[str, Any] = {"at": 0.0, "uris": []}


def _location_uris(max_age: float = 30.0) -> list[str]:
    """URIs of invenio-files-rest's Location table (cached for ``max_age`` seconds)."""
    now = time.monotonic()
    if now - _locations_cache["at"] < max_age:
        return list(_locations_cache["uris"])
    try:
        from invenio_db import db
        from invenio_files_rest.models import Location

        uris = [uri for (uri,) in db.session.query(Location.uri).all()]
    except Exception as e:  # no app context or no table: only the configured roots
        log.debug("no Location table (%s)", e)
        return []
    _locations_cache.update(at=now, uris=uris)
    return list(uris)


def forget_locations() -> None:
    """Drop the cached Location URIs (after a location was added)."""
    _locations_cache.update(at=0.0, uris=[])


def resolve(uri: str, config: Mapping[str, Any], root: str | None = None) -> Resolved:
    """Split a file URI into its root and backend name."""
    if uri.startswith("file://") and not uri.startswith("file:///"):
        raise ConfigError(f"file URIs need an absolute path: {uri!r}")
    if uri.startswith("s3://"):
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket or not key:
            raise ConfigError(f"an s3:// file URI needs a bucket and a key: {uri!r}")
        root = f"s3://{bucket}"
    elif root is None:
        root = _match_root(uri, known_roots(config))
    root = root.rstrip("/")
    if not uri.startswith(root + "/"):
        raise ConfigError(f"file URI {redact(uri)!r} is not below its location {redact(root)!r}")
    name = uri[len(root) + 1 :].strip("/")
    url, flat = backend_url_of_root(root, config)
    return Resolved(root=root, name=name, backend_url=url, flat=flat)


def _match_root(uri: str, roots: Iterable[str]) -> str:
    for root in roots:
        if uri.startswith(root + "/") and len(uri) > len(root) + 1:
            return root
    # not below a known location: <root>/<dir>/<file>, as invenio-files-rest's pyfs storage assumes
    head = uri.rstrip("/").rsplit("/", 2)[0]
    if not head or head in ("file:", "file:/", "file://"):
        raise ConfigError(f"cannot tell the location of file URI {redact(uri)!r}")
    return head


class BackendCache:
    """Opened backends by (process, URL, options), shared by all storage objects of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backends: dict[tuple[int, str, str], Backend] = {}

    def get(self, url: str, options: Mapping[str, Any], *, create: bool = False) -> Backend:
        key = (os.getpid(), url, repr(sorted(options.items())))
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = _open(url, options, create)
                self._backends[key] = backend
            return backend

    def close_all(self) -> None:
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            try:
                backend.close()
            except Exception as e:  # closing is best effort
                log.debug("closing %r: %s", backend, e)


def _open(url: str, options: Mapping[str, Any], create: bool) -> Backend:
    backend = open_backend(url, **options)
    try:
        backend.open()
    except BackendDoesNotExist:
        if not create:
            raise  # the buckets of s3:// locations are created by the site, as with invenio-s3
        backend.create()
        backend.open()
    log.debug("opened %r", backend)
    return backend


backends = BackendCache()


def _has_s3_option(name: str) -> bool:
    try:
        import inspect

        from ...backends.s3.config import make_config  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return False
    return name in inspect.signature(make_config).parameters


def backend_for(resolved: Resolved, config: Mapping[str, Any]) -> Backend:
    """The opened backend of a resolved URI."""
    scheme = resolved.backend_url.split(":", 1)[0].lower()
    options: dict[str, Any]
    if scheme in ("s3", "b2"):
        options = s3_options(config)
        if resolved.root.startswith("s3://") and _has_s3_option("name_checks"):
            # invenio's keys (<dir>/ab/cd/<uuid>/data) never collide with directory markers, so
            # the S3 backend need not list before each upload
            options.setdefault("name_checks", False)
        if "@" in resolved.backend_url:  # the URL has its own credentials
            options.pop("access_key", None)
            options.pop("secret_key", None)
    else:
        options = dict(setting(config, "UNISTORE_INVENIO_BACKEND_OPTIONS") or {})
    # a unistore-URL or local location is created on first use; an s3:// bucket must exist
    return backends.get(resolved.backend_url, options, create=not resolved.root.startswith("s3://"))
