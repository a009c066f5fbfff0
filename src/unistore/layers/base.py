"""Layer: a Backend that wraps another Backend and forwards everything to it.

Subclasses override only the operations they add behaviour to (stats, emulation, retry, ...).
Layers compose: ``StatsLayer(RetryLayer(S3Backend(...)))``.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any, BinaryIO

from ..backends.base import Backend, ItemInfo, Value


class Layer(Backend):
    """Forwards every Backend operation and capability to ``inner``."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.inner!r}>"

    # state and capability queries follow the wrapped backend
    @property
    def opened(self) -> bool:  # type: ignore[override]
        return self.inner.opened

    @property  # type: ignore[override]
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.capabilities

    @property  # type: ignore[override]
    def precreate_dirs(self) -> bool:  # type: ignore[override]
        return self.inner.precreate_dirs

    @property
    def bulk_workers(self) -> int:  # type: ignore[override]
        return self.inner.bulk_workers

    def supports(self, capability: str) -> bool:
        return self.inner.supports(capability)

    def require(self, capability: str) -> None:
        self.inner.require(capability)

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

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        return self.inner.list_recursive(name)

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self.inner.store_file(name, file, size=size)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        return self.inner.load_file(name, file, offset=offset, size=size)

    def open_reader(self, name: str) -> BinaryIO:
        return self.inner.open_reader(name)

    def copy(self, src: str, dst: str) -> None:
        self.inner.copy(src, dst)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        return self.inner.hash(name, algorithm)

    def quota(self) -> dict[str, int]:
        return self.inner.quota()

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        self.inner.store_many(items)

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        return self.inner.load_many(names)

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        return self.inner.delete_many(names, missing_ok=missing_ok)

    def presign(self, name: str, *, method: str = "GET", expires: int = 3600) -> str:
        return self.inner.presign(name, method=method, expires=expires)

    def get_tags(self, name: str) -> dict[str, str]:
        return self.inner.get_tags(name)

    def put_tags(self, name: str, tags: Mapping[str, str]) -> None:
        self.inner.put_tags(name, tags)

    def delete_tags(self, name: str) -> None:
        self.inner.delete_tags(name)

    def set_retention(self, name: str, mode: str, until: datetime) -> None:
        self.inner.set_retention(name, mode, until)

    def get_retention(self, name: str) -> tuple[str, datetime] | None:
        return self.inner.get_retention(name)

    def set_legal_hold(self, name: str, on: bool) -> None:
        self.inner.set_legal_hold(name, on)

    def get_legal_hold(self, name: str) -> bool:
        return self.inner.get_legal_hold(name)

    def create_multipart(self, name: str) -> str:
        return self.inner.create_multipart(name)

    def presign_part(self, name: str, upload_id: str, part_number: int, *, expires: int = 3600) -> str:
        return self.inner.presign_part(name, upload_id, part_number, expires=expires)

    def list_parts(self, name: str, upload_id: str) -> builtins.list[dict[str, Any]]:
        return self.inner.list_parts(name, upload_id)

    def complete_multipart(self, name: str, upload_id: str, parts: builtins.list[dict[str, Any]] | None = None) -> None:
        self.inner.complete_multipart(name, upload_id, parts)

    def abort_multipart(self, name: str, upload_id: str) -> None:
        self.inner.abort_multipart(name, upload_id)

    def list_multipart_uploads(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        return self.inner.list_multipart_uploads(prefix)

    def __getattr__(self, attr: str) -> Any:
        # backend-specific extras (e.g. S3Backend.find_by_tag) stay reachable through layers
        if attr == "inner":
            raise AttributeError(attr)
        return getattr(self.inner, attr)
