"""Layer: a Backend that wraps another Backend. Layers are closed.

A layer forwards to ``inner`` only

- the primitives: ``create destroy open close mkdir rmdir info load store delete move list`` (a
  subclass overrides those it adds behaviour to), ``quota``, and the state queries ``opened``,
  ``precreate_dirs``, ``bulk_workers``;
- the derived operations named in its class attribute :attr:`Layer.forward` (none by default):
  ``list_recursive store_file load_file open_reader copy hash stat store_with_meta store_many
  load_many delete_many gather defrag``;
- the optional capabilities named in its class attribute :attr:`Layer.honours` (none by default):
  the layer claims ``inner.capabilities & honours``, and only those capability methods reach the
  inner backend.

Every other operation runs the generic :class:`~unistore.backends.base.Backend` code on the layer
itself, that is through the layer's own primitives, so nothing bypasses a layer: not a bulk call,
not a capability (a presigned URL would bypass an encryption layer) and not an attribute of the
inner backend (there is no ``__getattr__``). ``unwrap()`` reaches the inner backend on purpose.

Transparent layers (stats, retry, emulate, chaos) honour every capability and forward the
efficient paths, wrapping each in their behaviour. Layers compose:
``StatsLayer(RetryLayer(S3Backend(...)))``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any, BinaryIO, ClassVar

from ..backends.base import Backend, ItemInfo, ObjectMeta, StoreMeta, Value
from ..backends.capabilities import CAPABILITIES, MULTIPART, OBJECT_LOCK, PRESIGN, TAGS

#: every derived operation a layer may forward
DERIVED_OPS = frozenset(
    {
        "list_recursive",
        "store_file",
        "load_file",
        "open_reader",
        "copy",
        "hash",
        "stat",
        "store_with_meta",
        "store_many",
        "load_many",
        "delete_many",
        "gather",
        "defrag",
    }
)
#: for layers that change nothing about the bytes (stats, retry, emulate, chaos)
ALL_CAPABILITIES = CAPABILITIES


class Layer(Backend):
    """Wraps ``inner``; forwards the primitives, ``forward`` and the capabilities in ``honours``."""

    #: derived operations sent straight to ``inner`` (others run the generic code on the layer)
    forward: ClassVar[frozenset[str]] = frozenset()
    #: optional capabilities this layer passes on (it claims ``inner.capabilities & honours``)
    honours: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, inner: Backend) -> None:
        unknown = self.forward - DERIVED_OPS
        if unknown:
            raise TypeError(f"{type(self).__name__}.forward names unknown operations: {sorted(unknown)}")
        self.inner = inner

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.inner!r}>"

    def unwrap(self) -> Backend:
        """The wrapped backend (reaching past this layer is a decision, never an accident)."""
        return self.inner

    # ----------------------------------------------------------------- state and capabilities
    @property
    def opened(self) -> bool:  # type: ignore[override]
        return self.inner.opened

    @property  # type: ignore[override]
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.capabilities & self.honours

    @property  # type: ignore[override]
    def precreate_dirs(self) -> bool:  # type: ignore[override]
        return self.inner.precreate_dirs

    @property
    def bulk_workers(self) -> int:  # type: ignore[override]
        return self.inner.bulk_workers

    @property
    def backend_name(self) -> str:
        return f"{type(self).__name__}({self.inner.backend_name})"

    # ----------------------------------------------------------------- primitives
    def create(self) -> None:
        self.inner.create()

    def destroy(self) -> None:
        self.inner.destroy()

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def mkdir(self, name: str) -> None:
        self.inner.mkdir(name)

    def rmdir(self, name: str) -> None:
        self.inner.rmdir(name)

    def info(self, name: str) -> ItemInfo:
        return self.inner.info(name)

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        return self.inner.load(name, size=size, offset=offset)

    def store(self, name: str, value: Value) -> None:
        self.inner.store(name, value)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def move(self, curr_name: str, new_name: str) -> None:
        self.inner.move(curr_name, new_name)

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self.inner.list(name)

    def quota(self) -> dict[str, int]:
        return self.inner.quota()

    # ----------------------------------------------------------------- derived operations
    def _fwd(self, op: str) -> bool:
        return op in self.forward

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        if self._fwd("list_recursive"):
            return self.inner.list_recursive(name)
        return Backend.list_recursive(self, name)

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        if self._fwd("store_file"):
            return self.inner.store_file(name, file, size=size)
        return Backend.store_file(self, name, file, size=size)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        if self._fwd("load_file"):
            return self.inner.load_file(name, file, offset=offset, size=size)
        return Backend.load_file(self, name, file, offset=offset, size=size)

    def open_reader(self, name: str) -> BinaryIO:
        if self._fwd("open_reader"):
            return self.inner.open_reader(name)
        return Backend.open_reader(self, name)

    def copy(self, src: str, dst: str) -> None:
        if self._fwd("copy"):
            return self.inner.copy(src, dst)
        return Backend.copy(self, src, dst)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        if self._fwd("hash"):
            return self.inner.hash(name, algorithm)
        return Backend.hash(self, name, algorithm)

    def stat(self, name: str) -> ObjectMeta:
        if self._fwd("stat"):
            return self.inner.stat(name)
        return Backend.stat(self, name)

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        if self._fwd("store_with_meta"):
            return self.inner.store_with_meta(name, data, meta, size=size)
        return Backend.store_with_meta(self, name, data, meta, size=size)

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        if self._fwd("store_many"):
            return self.inner.store_many(items)
        return Backend.store_many(self, items)

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        if self._fwd("load_many"):
            return self.inner.load_many(names)
        return Backend.load_many(self, names)

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        if self._fwd("delete_many"):
            return self.inner.delete_many(names, missing_ok=missing_ok)
        return Backend.delete_many(self, names, missing_ok=missing_ok)

    def gather(self, sources: Iterable[tuple[str, int, int]]) -> bytes:
        if self._fwd("gather"):
            return self.inner.gather(sources)
        return Backend.gather(self, sources)

    def defrag(
        self,
        sources: Iterable[tuple[str, int, int]],
        *,
        target: str | None = None,
        algorithm: str | None = None,
        namespace: str | None = None,
        levels: int = 0,
    ) -> str:
        if self._fwd("defrag"):
            return self.inner.defrag(sources, target=target, algorithm=algorithm, namespace=namespace, levels=levels)
        return Backend.defrag(self, sources, target=target, algorithm=algorithm, namespace=namespace, levels=levels)

    # ----------------------------------------------------------------- capabilities (gated)
    def _gate(self, capability: str) -> Backend:
        self.require(capability)
        return self.inner

    def presign(
        self,
        name: str,
        *,
        method: str = "GET",
        expires: int = 3600,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str:
        return self._gate(PRESIGN).presign(
            name, method=method, expires=expires, content_type=content_type, content_disposition=content_disposition
        )

    def get_tags(self, name: str) -> dict[str, str]:
        return self._gate(TAGS).get_tags(name)

    def put_tags(self, name: str, tags: Mapping[str, str]) -> None:
        self._gate(TAGS).put_tags(name, tags)

    def delete_tags(self, name: str) -> None:
        self._gate(TAGS).delete_tags(name)

    def update_tags(self, name: str, tags: Mapping[str, str | None]) -> dict[str, str]:
        return self._gate(TAGS).update_tags(name, tags)

    def find_by_tag(self, key: str, value: str | None = None, prefix: str = "") -> Iterator[str]:
        return self._gate(TAGS).find_by_tag(key, value, prefix)

    def set_retention(self, name: str, mode: str, until: datetime) -> None:
        self._gate(OBJECT_LOCK).set_retention(name, mode, until)

    def get_retention(self, name: str) -> tuple[str, datetime] | None:
        return self._gate(OBJECT_LOCK).get_retention(name)

    def clear_retention(self, name: str) -> None:
        self._gate(OBJECT_LOCK).clear_retention(name)

    def set_legal_hold(self, name: str, on: bool) -> None:
        self._gate(OBJECT_LOCK).set_legal_hold(name, on)

    def get_legal_hold(self, name: str) -> bool:
        return self._gate(OBJECT_LOCK).get_legal_hold(name)

    def create_multipart(self, name: str, *, meta: StoreMeta | None = None) -> str:
        return self._gate(MULTIPART).create_multipart(name, meta=meta)

    def upload_part(
        self, name: str, upload_id: str, part_number: int, data: Value | IO[bytes], *, size: int | None = None
    ) -> str:
        return self._gate(MULTIPART).upload_part(name, upload_id, part_number, data, size=size)

    def presign_part(self, name: str, upload_id: str, part_number: int, *, expires: int = 3600) -> str:
        return self._gate(MULTIPART).presign_part(name, upload_id, part_number, expires=expires)

    def list_parts(self, name: str, upload_id: str) -> builtins.list[dict[str, Any]]:
        return self._gate(MULTIPART).list_parts(name, upload_id)

    def complete_multipart(
        self, name: str, upload_id: str, parts: builtins.list[dict[str, Any]] | None = None
    ) -> str:
        return self._gate(MULTIPART).complete_multipart(name, upload_id, parts)

    def abort_multipart(self, name: str, upload_id: str) -> None:
        self._gate(MULTIPART).abort_multipart(name, upload_id)

    def list_multipart_uploads(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        return self._gate(MULTIPART).list_multipart_uploads(prefix)

    def abort_stale_multipart(self, older_than: float, prefix: str = "") -> int:
        return self._gate(MULTIPART).abort_stale_multipart(older_than, prefix)
