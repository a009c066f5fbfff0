"""The Backend ABC: what every storage driver implements, plus generic fallbacks.

A backend maps relative ``/``-separated names (see :func:`unistore.names.check_name`) to bytes. The
core operations keep borgstore's names and semantics. On top of them the base class offers generic,
overridable implementations of streaming (``store_file``/``load_file``), bulk operations
(``store_many``/``load_many``/``delete_many``), recursive listing, hashing and copying, so that a
backend only overrides what it can do better. Optional capabilities (presigned URLs, tags, object
lock, multipart primitives, server-side copy, SSE-C, storage classes) are declared in
:attr:`Backend.capabilities`; calling one a backend lacks raises :class:`CapabilityNotSupported`.

Every backend must be safe to call from many threads at once.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, BinaryIO, ClassVar, NamedTuple

from ..errors import BackendMustBeOpen, ObjectNotFound, ReadRangeError
from ..hashing import new_hash
from ..names import check_name, join, nest
from .capabilities import (
    CAPABILITIES,
    CHECKSUMS,
    METADATA,
    MULTIPART,
    OBJECT_LOCK,
    PRESIGN,
    SERVER_SIDE_COPY,
    SSE_C,
    STORAGE_CLASS,
    TAGS,
    CapabilityMethods,
    ObjectMeta,
    StoreMeta,
)

#: bytes-like values accepted by ``store``
Value = bytes | bytearray | memoryview

CHUNK_SIZE = 8 * 1024 * 1024

# capability names and records live in .capabilities; re-exported here for existing imports
__all__ = [
    "CAPABILITIES", "CHECKSUMS", "METADATA", "MULTIPART", "OBJECT_LOCK", "PRESIGN", "SERVER_SIDE_COPY", "SSE_C",
    "STORAGE_CLASS", "TAGS", "Backend", "ItemInfo", "ObjectMeta", "StoreMeta", "Value", "as_bytes_view",
    "copy_stream", "ordered_map", "resolve_range",
]


class ItemInfo(NamedTuple):
    """What a backend knows about one item or directory (borgstore's field order)."""

    name: str
    exists: bool
    size: int = 0
    directory: bool = False
    atime: float = 0
    mtime: float = 0


def as_bytes_view(value: Value) -> memoryview:
    """A flat byte view of ``value`` (no copy); ``len()`` of it is the number of bytes."""
    view = memoryview(value)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def resolve_range(total: int, offset: int, size: int | None) -> tuple[int, int]:
    """Turn ``(offset, size)`` with a possibly negative offset into ``(start, length)`` within ``total``.

    A negative offset counts from the end. The range is clipped to the item, like a file read.
    """
    if size is not None and size < 0:
        raise ReadRangeError(f"size must be >= 0 or None, not {size}")
    start = total + offset if offset < 0 else offset
    if start < 0:
        raise ReadRangeError(f"offset {offset} lies before the start of an item of {total} bytes")
    start = min(start, total)
    end = total if size is None else min(total, start + size)
    return start, end - start


class Backend(CapabilityMethods, ABC):
    """A storage driver: relative names -> bytes. Subclasses implement the abstract methods.

    The optional capabilities (presign, tags, object lock, multipart, metadata, ...) and their
    generic versions come from :class:`~unistore.backends.capabilities.CapabilityMethods`.
    """

    #: URL schemes this backend serves (for :mod:`unistore.url`)
    schemes: ClassVar[tuple[str, ...]] = ()
    #: optional capabilities of this backend; an instance may narrow or widen them (decided at open)
    capabilities: frozenset[str] = frozenset()
    #: borgstore: ask the Store to create all nesting directories at create() time
    precreate_dirs: ClassVar[bool] = False
    #: how many threads the bulk operations use (1 = sequential)
    bulk_workers: int = 1

    opened: bool = False

    # ----------------------------------------------------------------- lifecycle
    @abstractmethod
    def create(self) -> None:
        """Create (initialize) the storage. Raises BackendAlreadyExists if it exists and is not empty."""

    @abstractmethod
    def destroy(self) -> None:
        """Remove the storage and everything in it. Raises BackendDoesNotExist if missing."""

    @abstractmethod
    def open(self) -> None:
        """Start using the storage. Raises BackendDoesNotExist if it was never created."""

    @abstractmethod
    def close(self) -> None:
        """Stop using the storage and release its resources."""

    def __enter__(self) -> Backend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if not self.opened:
            raise BackendMustBeOpen(f"{self!r} must be opened first")

    # ----------------------------------------------------------------- core operations
    @abstractmethod
    def mkdir(self, name: str) -> None:
        """Create directory ``name`` and missing parents (no error if it exists)."""

    @abstractmethod
    def rmdir(self, name: str) -> None:
        """Remove the empty directory ``name``."""

    @abstractmethod
    def info(self, name: str) -> ItemInfo:
        """Describe ``name``; ``exists=False`` if it does not exist (no exception)."""

    @abstractmethod
    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        """Return the bytes of ``name`` from ``offset`` (negative: from the end), at most ``size``."""

    @abstractmethod
    def store(self, name: str, value: Value) -> None:
        """Store ``value`` as ``name`` atomically (readers see the old or the new value, never a mix)."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete item ``name``; ObjectNotFound if it does not exist."""

    @abstractmethod
    def move(self, curr_name: str, new_name: str) -> None:
        """Rename ``curr_name`` to ``new_name``, replacing an existing target."""

    @abstractmethod
    def list(self, name: str) -> Iterator[ItemInfo]:
        """List directory ``name`` non-recursively, sorted by name, without temp/hidden items.

        Raises ObjectNotFound if the directory does not exist.
        """

    # ----------------------------------------------------------------- generic extras
    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        """Yield every item (no directories) below ``name``, sorted, with names relative to ``name``.

        The default recursion lists each directory; backends with flat namespaces (S3) override it
        with one paginated prefix listing.
        """
        # sorted by full name: a directory "b" sorts as "b/", after an item "b-c" ("-" < "/")
        for item in sorted(self.list(name), key=lambda i: i.name + "/" if i.directory else i.name):
            if item.directory:
                for sub in self.list_recursive(join(name, item.name)):
                    yield sub._replace(name=f"{item.name}/{sub.name}")
            else:
                yield item

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        """Store the contents of a binary file object (read from its current position).

        The fallback reads the file into memory; backends that can stream override it.
        """
        self.store(name, file.read() if size is None else file.read(size))

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        """Write the bytes of ``name`` (or a range of them) to ``file``; return the number written.

        The fallback reads in ranged chunks of CHUNK_SIZE, so no value has to fit in memory.
        """
        info = self.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(name)
        start, length = resolve_range(info.size, offset, size)
        written = 0
        while written < length:
            chunk = self.load(name, offset=start + written, size=min(CHUNK_SIZE, length - written))
            if not chunk:
                raise ReadRangeError(f"{name}: item shrank while reading at {start + written}")
            file.write(chunk)
            written += len(chunk)
        return written

    def open_reader(self, name: str) -> BinaryIO:
        """A readable binary stream of ``name``. The fallback loads the value into memory."""
        return io.BytesIO(self.load(name))

    def copy(self, src: str, dst: str) -> None:
        """Copy item ``src`` to ``dst``; server-side where the backend supports SERVER_SIDE_COPY."""
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as tmp:  # in memory up to 16 MiB
            self.load_file(src, tmp)
            tmp.seek(0)
            self.store_file(dst, tmp)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        """Hex digest of the item's content (streamed); hashlib's algorithms and ``blake3``."""
        h = new_hash(algorithm)
        self.load_file(name, _HashSink(h))  # type: ignore[arg-type]
        return h.hexdigest()

    def gather(self, sources: Iterable[tuple[str, int, int]]) -> bytes:
        """Read several byte ranges ``(name, offset, size)`` and return them concatenated, in order.

        borgstore's semantics: names are backend names, ``offset`` may be negative (from the end),
        ``size`` is the exact number of bytes wanted; a short read raises ReadRangeError. The ranges
        are read concurrently on backends that gain from it (``bulk_workers``).
        """
        ranges = validate_sources(sources)

        def one(source: tuple[str, int, int]) -> bytes:
            name, offset, size = source
            if size == 0:
                return b""
            chunk = self.load(name, offset=offset, size=size)
            if len(chunk) != size:
                raise ReadRangeError(f"{name}: asked for {size} bytes at offset {offset}, got {len(chunk)}")
            return chunk

        return b"".join(self._map(one, ranges))

    def defrag(
        self,
        sources: Iterable[tuple[str, int, int]],
        *,
        target: str | None = None,
        algorithm: str | None = None,
        namespace: str | None = None,
        levels: int = 0,
    ) -> str:
        """Create ``target`` from byte ranges of other items, in order; return the target's name.

        borgstore's semantics: without ``target``, its name is the hex digest (``algorithm``) of the
        new content, under ``namespace`` and nested ``levels`` deep. The generic version gathers the
        ranges concurrently into a spool file (memory up to 16 MiB), hashing on the way, then
        stores it; the sources are left alone (deleting them is the caller's job).
        """
        ranges = validate_sources(sources)
        if target is None and algorithm is None:
            raise ValueError("defrag needs a target or an algorithm to name the target")
        h = new_hash(algorithm) if target is None and algorithm is not None else None
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as tmp:
            size = 0
            for start in range(0, len(ranges), 64):
                part = self.gather(ranges[start : start + 64])
                tmp.write(part)
                size += len(part)
                if h is not None:
                    h.update(part)
            if target is None:
                assert h is not None
                target = join((namespace or "").strip("/"), h.hexdigest())
                if levels:
                    target = nest(target, levels)
            tmp.seek(0)
            self.store_file(target, tmp, size=size)  # type: ignore[arg-type]
        return target

    def quota(self) -> dict[str, int]:
        """``{"limit": bytes, "usage": bytes}``; -1 means not set / not tracked."""
        return {"limit": -1, "usage": -1}

    # ----------------------------------------------------------------- bulk operations
    def _map(self, func: Any, items: Iterable[Any]) -> Iterator[Any]:
        if self.bulk_workers <= 1:
            return map(func, items)
        return _ordered_pool_map(func, items, self.bulk_workers)

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        """Store many ``(name, value)`` pairs, concurrently where the backend gains from it."""
        pairs = items.items() if isinstance(items, Mapping) else items
        for _ in self._map(lambda pair: self.store(pair[0], pair[1]), pairs):
            pass

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, value)`` for each name, in the order given."""
        return self._map(lambda n: (n, self.load(n)), names)

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        """Delete many items; return how many were deleted."""

        def one(n: str) -> int:
            try:
                self.delete(n)
            except ObjectNotFound:
                if not missing_ok:
                    raise
                return 0
            return 1

        return sum(self._map(one, names))

    # ----------------------------------------------------------------- helpers for subclasses
    @staticmethod
    def _name(name: str, *, allow_root: bool = False) -> str:
        return check_name(name, allow_root=allow_root)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class _HashSink:
    def __init__(self, h: Any):
        self.h = h

    def write(self, data: bytes) -> int:
        self.h.update(data)
        return len(data)


def validate_sources(sources: Iterable[Any]) -> list[tuple[str, int, int]]:
    """``(name, offset, size)`` tuples (lists from JSON too) as a list; ValueError naming a bad one."""
    result = []
    for source in sources:
        try:
            name, offset, size = source
        except (TypeError, ValueError):
            raise ValueError(f"a source must be a (name, offset, size) tuple, not {source!r}") from None
        if not isinstance(name, str):
            raise ValueError(f"a source name must be a str, not {name!r}")
        if not isinstance(offset, int) or isinstance(offset, bool):
            raise ValueError(f"a source offset must be an int, not {offset!r}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"a source size must be an int >= 0, not {size!r}")
        result.append((name, offset, size))
    return result


def ordered_map(pool: ThreadPoolExecutor, func: Any, items: Iterable[Any], window: int) -> Iterator[Any]:
    """map() on ``pool``: results in input order, at most ``window`` calls submitted ahead."""
    pending: deque[Any] = deque()
    try:
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()


def _ordered_pool_map(func: Any, items: Iterable[Any], workers: int) -> Iterator[Any]:
    """ordered_map() on a thread pool of its own, which lives as long as the iteration."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unistore-bulk") as pool:
        yield from ordered_map(pool, func, items, workers * 4)


def copy_stream(src: IO[bytes], dst: IO[bytes], length: int | None = None) -> int:
    """Copy ``length`` bytes (all when None) from ``src`` to ``dst``; return the number copied."""
    if length is None:
        before = dst.tell() if dst.seekable() else None
        shutil.copyfileobj(src, dst, CHUNK_SIZE)
        return (dst.tell() - before) if before is not None else -1
    copied = 0
    while copied < length:
        chunk = src.read(min(CHUNK_SIZE, length - copied))
        if not chunk:
            break
        dst.write(chunk)
        copied += len(chunk)
    return copied
