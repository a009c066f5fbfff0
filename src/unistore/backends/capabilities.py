"""Optional capabilities of a backend: names, metadata records and the methods behind them.

A capability is a string (``PRESIGN``, ``TAGS``, ...). Each backend *instance* decides which it has
(an S3 bucket without object lock does not claim ``object_lock``; an S3 backend with an SSE-C key
claims ``sse_c`` and not ``presign``), so ask ``backend.supports(name)`` rather than the class.
Calling a method of a capability the backend lacks raises
:class:`~unistore.errors.CapabilityNotSupported`, which names the backend and the capability.

Where a capability can be built from others, :class:`CapabilityMethods` has a generic version that
backends may override with a faster one: ``update_tags`` (get + put), ``find_by_tag`` (a concurrent
tag scan over ``list_recursive``), ``abort_stale_multipart`` (list + abort) and ``stat`` (from
``info``, without checksums).
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

from ..errors import CapabilityNotSupported, ObjectNotFound, UploadNotFound

if TYPE_CHECKING:
    from .base import ItemInfo, Value

PRESIGN = "presign"  #: presigned URLs for GET and PUT
TAGS = "tags"  #: per-item key/value tags
OBJECT_LOCK = "object_lock"  #: retention and legal hold
MULTIPART = "multipart"  #: multipart-upload primitives (create, part, presign part, complete, abort)
SERVER_SIDE_COPY = "server_side_copy"  #: copy() without moving the bytes through the client
SSE_C = "sse_c"  #: server-side encryption with a customer-provided key
STORAGE_CLASS = "storage_class"  #: a storage class per item
METADATA = "metadata"  #: content type, content disposition and user metadata stored with an item
CHECKSUMS = "checksums"  #: stat() reports the ETag and checksums without reading the value

CAPABILITIES = frozenset(
    {PRESIGN, TAGS, OBJECT_LOCK, MULTIPART, SERVER_SIDE_COPY, SSE_C, STORAGE_CLASS, METADATA, CHECKSUMS}
)


@dataclass(frozen=True)
class ObjectMeta:
    """What :meth:`~unistore.backends.base.Backend.stat` knows about one item.

    ``etag`` is unquoted, as the service reports it (S3: the md5 of a single-part upload, or
    ``<md5 of the part md5s>-<parts>``). ``checksums`` maps algorithm names to hex digests known
    without reading the value (``{"md5": ...}`` where the ETag is a plain md5).
    """

    name: str
    size: int
    mtime: float = 0.0
    etag: str | None = None
    checksums: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    content_disposition: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    storage_class: str | None = None


@dataclass(frozen=True)
class StoreMeta:
    """What to store with an item (see ``store_with_meta``); false when nothing is set."""

    content_type: str | None = None
    content_disposition: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    storage_class: str | None = None

    def __bool__(self) -> bool:
        return bool(self.content_type or self.content_disposition or self.metadata or self.storage_class)

    def needs(self) -> builtins.list[str]:
        """The capabilities a backend needs to store this record."""
        caps = []
        if self.content_type or self.content_disposition or self.metadata:
            caps.append(METADATA)
        if self.storage_class:
            caps.append(STORAGE_CLASS)
        return caps


class CapabilityMethods:
    """The optional-capability half of the Backend interface (mixed into Backend)."""

    capabilities: frozenset[str] = frozenset()

    if TYPE_CHECKING:  # provided by Backend

        def info(self, name: str) -> ItemInfo: ...
        def list_recursive(self, name: str) -> Iterator[ItemInfo]: ...
        def store(self, name: str, value: Value) -> None: ...
        def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None: ...
        def _map(self, func: Any, items: Any) -> Iterator[Any]: ...

    # ----------------------------------------------------------------- queries
    @property
    def backend_name(self) -> str:
        """How errors name this backend."""
        return type(self).__name__

    def supports(self, capability: str) -> bool:
        """True if this backend instance has the optional ``capability``."""
        return capability in self.capabilities

    def require(self, capability: str) -> None:
        """Raise CapabilityNotSupported unless this backend instance has ``capability``."""
        if capability not in self.capabilities:
            raise CapabilityNotSupported(self.backend_name, capability)

    def _unsupported(self, capability: str) -> CapabilityNotSupported:
        return CapabilityNotSupported(self.backend_name, capability)

    # ----------------------------------------------------------------- metadata and checksums
    def stat(self, name: str) -> ObjectMeta:
        """Size, mtime, ETag, checksums and stored metadata of an item, without reading its value.

        Raises ObjectNotFound for a missing item or a directory. The generic version knows only
        size and mtime; backends with METADATA or CHECKSUMS report more.
        """
        info = self.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(name)
        return ObjectMeta(name=name, size=info.size, mtime=info.mtime)

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        """Store ``data`` (bytes-like or a binary file) with content type, disposition, metadata, class.

        Without ``meta`` (or with an empty one) this is ``store``/``store_file``. A record the backend
        cannot keep raises CapabilityNotSupported (METADATA, STORAGE_CLASS) and stores nothing.
        """
        if meta:
            for cap in meta.needs():
                self.require(cap)
            raise self._unsupported(METADATA)  # a backend claiming METADATA must override this
        if isinstance(data, bytes | bytearray | memoryview):
            self.store(name, data)
        else:
            self.store_file(name, data, size=size)

    # ----------------------------------------------------------------- presigned URLs
    def presign(
        self,
        name: str,
        *,
        method: str = "GET",
        expires: int = 3600,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str:
        """A URL allowing ``method`` (GET or PUT) on ``name`` without credentials until it expires.

        For GET, ``content_type``/``content_disposition`` set the response headers the service sends.
        """
        raise self._unsupported(PRESIGN)

    # ----------------------------------------------------------------- tags
    def get_tags(self, name: str) -> dict[str, str]:
        """The item's tags."""
        raise self._unsupported(TAGS)

    def put_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """Replace the item's tags."""
        raise self._unsupported(TAGS)

    def delete_tags(self, name: str) -> None:
        """Remove all tags of the item."""
        raise self._unsupported(TAGS)

    def update_tags(self, name: str, tags: Mapping[str, str | None]) -> dict[str, str]:
        """Merge ``tags`` into the item's tags (a None value removes that tag); return the new tags.

        The generic version reads then writes the tag set: two concurrent updates of one item can
        lose one of them (S3 has no atomic tag merge either).
        """
        self.require(TAGS)
        current = self.get_tags(name)
        for key, value in tags.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value
        self.put_tags(name, current)
        return current

    def find_by_tag(self, key: str, value: str | None = None, prefix: str = "") -> Iterator[str]:
        """Yield the names below ``prefix`` (full backend names) whose tag ``key`` is ``value``.

        With ``value=None`` every item that has the tag matches. The generic version reads the tags
        of every item concurrently (``bulk_workers``); items deleted during the scan are skipped.
        """
        self.require(TAGS)
        base = prefix.strip("/")

        def probe(item_name: str) -> str | None:
            try:
                tags = self.get_tags(item_name)
            except ObjectNotFound:
                return None
            if key in tags and (value is None or tags[key] == value):
                return item_name
            return None

        try:
            names = (f"{base}/{i.name}" if base else i.name for i in self.list_recursive(base))
            for found in self._map(probe, names):
                if found is not None:
                    yield found
        except ObjectNotFound:
            return

    # ----------------------------------------------------------------- object lock
    def set_retention(self, name: str, mode: str, until: datetime) -> None:
        """Lock the item until ``until`` (mode GOVERNANCE or COMPLIANCE)."""
        raise self._unsupported(OBJECT_LOCK)

    def get_retention(self, name: str) -> tuple[str, datetime] | None:
        """``(mode, until)`` or None."""
        raise self._unsupported(OBJECT_LOCK)

    def clear_retention(self, name: str) -> None:
        """Remove a GOVERNANCE retention (COMPLIANCE cannot be removed: PermissionDenied)."""
        raise self._unsupported(OBJECT_LOCK)

    def set_legal_hold(self, name: str, on: bool) -> None:
        """Put a legal hold on the item, or release it."""
        raise self._unsupported(OBJECT_LOCK)

    def get_legal_hold(self, name: str) -> bool:
        """True if the item is under legal hold."""
        raise self._unsupported(OBJECT_LOCK)

    # ----------------------------------------------------------------- multipart primitives
    def create_multipart(self, name: str, *, meta: StoreMeta | None = None) -> str:
        """Start a multipart upload for ``name``; return its upload id."""
        raise self._unsupported(MULTIPART)

    def upload_part(
        self, name: str, upload_id: str, part_number: int, data: Value | IO[bytes], *, size: int | None = None
    ) -> str:
        """Upload one part (numbered from 1); return its ETag (unquoted)."""
        raise self._unsupported(MULTIPART)

    def presign_part(self, name: str, upload_id: str, part_number: int, *, expires: int = 3600) -> str:
        """A URL that lets a client PUT one part of a multipart upload."""
        raise self._unsupported(MULTIPART)

    def list_parts(self, name: str, upload_id: str) -> builtins.list[dict[str, Any]]:
        """The parts uploaded so far: ``[{"part_number", "etag", "size"}]``."""
        raise self._unsupported(MULTIPART)

    def complete_multipart(
        self, name: str, upload_id: str, parts: builtins.list[dict[str, Any]] | None = None
    ) -> str:
        """Assemble the parts (all uploaded parts when ``parts`` is None); return the item's ETag."""
        raise self._unsupported(MULTIPART)

    def abort_multipart(self, name: str, upload_id: str) -> None:
        """Abort a multipart upload and free its parts."""
        raise self._unsupported(MULTIPART)

    def list_multipart_uploads(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        """Pending uploads: ``[{"name", "upload_id", "initiated"}]``, ``initiated`` an aware datetime."""
        raise self._unsupported(MULTIPART)

    def abort_stale_multipart(self, older_than: float, prefix: str = "") -> int:
        """Abort the pending uploads below ``prefix`` started more than ``older_than`` seconds ago.

        Uploads left behind by killed processes keep their parts (and their cost) forever otherwise.
        Returns how many were aborted; an upload that vanished meanwhile is not counted.
        """
        self.require(MULTIPART)
        cutoff = time.time() - older_than
        aborted = 0
        for upload in self.list_multipart_uploads(prefix):
            initiated = upload.get("initiated")
            if initiated is None or initiated.timestamp() > cutoff:
                continue
            try:
                self.abort_multipart(upload["name"], upload["upload_id"])
            except (ObjectNotFound, UploadNotFound):
                continue
            aborted += 1
        return aborted
