"""CompressLayer: zstd compression of values, chunked so partial loads stay partial.

Format (version 1) of a stored value::

    header   "UNSZ" | version (1 byte) | chunk exponent (1 byte, 18: 256 KiB)
    chunks   each 256 KiB of plaintext (the last may be shorter), zstd-compressed, or stored raw
             when compression would not make it smaller
    index    one 4-byte big-endian length per chunk, the top bit set for a raw chunk
    footer   plaintext size (8 bytes) | chunk count (4 bytes) | "UNSZ"

A partial load reads the tail (footer and index; one read for values up to 64 MiB) and then only
the chunks the range touches. Values stored before the layer was added (no header and footer) are
read as they are. ``info()`` reports the plaintext size (it reads the footer); ``list()`` does too
when ``exact_sizes`` is true (the default: one small read per item, concurrent), else it reports
stored sizes. With encryption, compress first: ``CompressLayer(EncryptLayer(backend, key=...))``.
"""

from __future__ import annotations

import io
import struct
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import IO

import zstandard

from ..backends.base import Backend, ItemInfo, ObjectMeta, StoreMeta, Value, resolve_range
from ..backends.capabilities import METADATA, OBJECT_LOCK, SERVER_SIDE_COPY, SSE_C, STORAGE_CLASS, TAGS
from ..errors import ConfigError, IntegrityError, ObjectNotFound
from .base import Layer
from .chunked import ChunkedReader

MAGIC = b"UNSZ"
VERSION = 1
CHUNK_EXP = 18
CHUNK = 1 << CHUNK_EXP
HEADER = MAGIC + bytes([VERSION, CHUNK_EXP])
FOOTER_SIZE = 16
RAW_FLAG = 0x80000000
TAIL_GUESS = 16 * 1024  # one tail read holds the index of up to 4,092 chunks (about 1 GiB of plaintext)
BATCH = 16  # chunks per backend read when streaming


class _Codec:
    """Per-thread zstd contexts (zstandard's are not thread-safe)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.local = threading.local()

    def compress(self, data: bytes | memoryview) -> tuple[bytes, bool]:
        """``(stored bytes, raw?)`` for one chunk."""
        cctx = getattr(self.local, "cctx", None)
        if cctx is None:
            cctx = self.local.cctx = zstandard.ZstdCompressor(level=self.level)
        packed = cctx.compress(bytes(data))
        if len(packed) >= len(data):
            return bytes(data), True
        return packed, False

    def decompress(self, name: str, data: bytes | memoryview, raw: bool) -> bytes:
        if raw:
            return bytes(data)
        dctx = getattr(self.local, "dctx", None)
        if dctx is None:
            dctx = self.local.dctx = zstandard.ZstdDecompressor()
        try:
            return dctx.decompress(bytes(data), max_output_size=CHUNK)
        except zstandard.ZstdError as e:
            raise IntegrityError(f"{name}: a compressed chunk is damaged ({e})") from None


class _Index:
    """The parsed footer and index of one stored value."""

    def __init__(self, plain: int, entries: list[int]) -> None:
        self.plain = plain
        self.lengths = [e & ~RAW_FLAG for e in entries]
        self.raw = [bool(e & RAW_FLAG) for e in entries]
        self.starts = []
        pos = len(HEADER)
        for n in self.lengths:
            self.starts.append(pos)
            pos += n
        self.body_end = pos

    @property
    def stored(self) -> int:
        return self.body_end + 4 * len(self.lengths) + FOOTER_SIZE


def _parse_tail(tail: bytes, stored: int) -> tuple[int, int] | None:
    """``(plain size, chunk count)`` if ``tail`` ends with a valid footer, else None (a legacy value)."""
    if len(tail) < FOOTER_SIZE or tail[-4:] != MAGIC or stored < len(HEADER) + FOOTER_SIZE:
        return None
    plain, count = struct.unpack(">QI", tail[-FOOTER_SIZE:-4])
    if count != max(1, -(-plain // CHUNK)) and not (plain == 0 and count == 0):
        return None
    if len(HEADER) + 4 * count + FOOTER_SIZE > stored:
        return None
    return plain, count


class _CompressingReader(ChunkedReader):
    """The stored form of a plaintext stream: header, chunks, then the index and footer."""

    def __init__(self, codec: _Codec, src: IO[bytes], size: int | None) -> None:
        super().__init__(src, size, CHUNK)
        self.codec = codec
        self.out = bytearray(HEADER)
        self.entries: list[int] = []
        self.plain = 0
        self.done = False

    def _fill(self, n: int) -> None:
        while len(self.out) < n and not self.done:
            chunk = self._chunk()
            if chunk or not self.entries:
                stored, raw = self.codec.compress(chunk)
                self.out += stored
                self.entries.append(len(stored) | (RAW_FLAG if raw else 0))
                self.plain += len(chunk)
            if len(chunk) < CHUNK:
                self.out += b"".join(struct.pack(">I", e) for e in self.entries)
                self.out += struct.pack(">QI", self.plain, len(self.entries)) + MAGIC
                self.done = True


class CompressLayer(Layer):
    """Compresses every value with zstd at ``level`` (1-22, default 3); see the module docstring."""

    forward = frozenset({"delete_many", "copy"})  # the stored form does not depend on the name
    honours = frozenset({TAGS, OBJECT_LOCK, METADATA, STORAGE_CLASS, SSE_C, SERVER_SIDE_COPY})

    def __init__(self, inner: Backend, *, level: int = 3, exact_sizes: bool = True) -> None:
        super().__init__(inner)
        if not 1 <= level <= 22:
            raise ConfigError(f"zstd level must be between 1 and 22, not {level}")
        self.level = level
        self.exact_sizes = exact_sizes
        self._codec = _Codec(level)

    def __repr__(self) -> str:
        return f"<CompressLayer zstd:{self.level} {self.inner!r}>"

    # ----------------------------------------------------------------- format
    def _encode(self, value: Value) -> bytes:
        reader = _CompressingReader(self._codec, io.BytesIO(memoryview(value).cast("B")), None)
        return reader.read()

    def _decode(self, name: str, blob: bytes) -> bytes:
        if blob[: len(HEADER)] != HEADER:
            return blob  # stored before the layer was added
        parsed = _parse_tail(blob[-FOOTER_SIZE:], len(blob))
        if parsed is None:
            return blob
        index = self._index_from(name, blob, len(blob), parsed)
        view = memoryview(blob)
        return b"".join(
            self._codec.decompress(name, view[s : s + n], r)
            for s, n, r in zip(index.starts, index.lengths, index.raw, strict=True)
        )

    def _index_from(self, name: str, tail: bytes, stored: int, parsed: tuple[int, int]) -> _Index:
        plain, count = parsed
        need = 4 * count + FOOTER_SIZE
        raw = tail[-need:-FOOTER_SIZE] if count else b""
        index = _Index(plain, list(struct.unpack(f">{count}I", raw)))
        if index.stored != stored:
            raise IntegrityError(f"{name}: compressed value is damaged (its index does not match its size)")
        return index

    def _read_index(self, name: str) -> _Index | None:
        """The index of a stored value (None for a value stored without the layer)."""
        info = self.inner.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(name)
        stored = info.size
        tail = self.inner.load(name, offset=max(0, stored - TAIL_GUESS))
        parsed = _parse_tail(tail, stored)
        if parsed is None:
            return None
        need = 4 * parsed[1] + FOOTER_SIZE
        if need > len(tail):
            tail = self.inner.load(name, offset=stored - need)
        if stored <= TAIL_GUESS and tail[: len(HEADER)] != HEADER:
            return None
        return self._index_from(name, tail, stored, parsed)

    # ----------------------------------------------------------------- primitives
    def info(self, name: str) -> ItemInfo:
        info = self.inner.info(name)
        if not info.exists or info.directory:
            return info
        return self._sized(info, name)

    def _sized(self, info: ItemInfo, name: str) -> ItemInfo:
        try:
            index = self._read_index(name)
        except ObjectNotFound:
            return info
        return info if index is None else info._replace(size=index.plain)

    def _exact(self, base: str, items: Iterator[ItemInfo]) -> Iterator[ItemInfo]:
        if not self.exact_sizes:
            return items

        def one(item: ItemInfo) -> ItemInfo:
            if item.directory:
                return item
            return self._sized(item, f"{base}/{item.name}" if base else item.name)

        return self._map(one, items)

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self._exact(name.strip("/"), self.inner.list(name))

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        return self._exact(name.strip("/"), self.inner.list_recursive(name))

    def store(self, name: str, value: Value) -> None:
        self.inner.store(name, self._encode(value))

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        if size is None and offset == 0:
            return self._decode(name, self.inner.load(name))
        index = self._read_index(name)
        if index is None:
            return self.inner.load(name, size=size, offset=offset)
        start, length = resolve_range(index.plain, offset, size)
        out = io.BytesIO()
        self._copy_range(name, index, start, length, out)
        return out.getvalue()

    def _copy_range(self, name: str, index: _Index, start: int, length: int, file: IO[bytes]) -> int:
        if length == 0:
            return 0
        first, last = start // CHUNK, (start + length - 1) // CHUNK
        written = 0
        i = first
        while i <= last:
            j = min(last, i + BATCH - 1)
            lo = index.starts[i]
            hi = index.starts[j] + index.lengths[j]
            blob = memoryview(self.inner.load(name, offset=lo, size=hi - lo))
            if len(blob) != hi - lo:
                raise IntegrityError(f"{name}: compressed value shrank while reading")
            for k in range(i, j + 1):
                s = index.starts[k] - lo
                plain = self._codec.decompress(name, blob[s : s + index.lengths[k]], index.raw[k])
                skip = start - k * CHUNK if k == first else 0
                piece = plain[skip : skip + (length - written)]
                file.write(piece)
                written += len(piece)
            i = j + 1
        return written

    # ----------------------------------------------------------------- streaming and metadata
    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self.inner.store_file(name, _CompressingReader(self._codec, file, size))  # type: ignore[arg-type]

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        index = self._read_index(name)
        if index is None:
            return self.inner.load_file(name, file, offset=offset, size=size)
        start, length = resolve_range(index.plain, offset, size)
        return self._copy_range(name, index, start, length, file)

    def stat(self, name: str) -> ObjectMeta:
        meta = self.inner.stat(name)
        index = self._read_index(name)
        if index is None:
            return meta
        return replace(meta, size=index.plain, etag=None, checksums={})

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            self.inner.store_with_meta(name, self._encode(data), meta)
        else:
            self.inner.store_with_meta(name, _CompressingReader(self._codec, data, size), meta)  # type: ignore[arg-type]

    # ----------------------------------------------------------------- bulk
    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self.inner.store_many((n, self._encode(v)) for n, v in pairs)

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for name, blob in self.inner.load_many(names):
            yield name, self._decode(name, blob)
