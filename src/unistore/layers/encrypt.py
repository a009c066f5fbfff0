"""EncryptLayer: client-side AES-256-GCM encryption of values, chunked so partial loads stay partial.

Format (version 1) of a stored value::

    header   "UNSE" | version (1 byte) | chunk exponent (1 byte, 16: 64 KiB) | key id (8 bytes)
    frame 0  nonce (12 random bytes) | ciphertext of plaintext chunk 0 | GCM tag (16 bytes)
    frame 1  ...

Every plaintext chunk is 64 KiB except the last (an empty value is one empty chunk). Each frame is
authenticated with associated data = header | chunk index (8 bytes) | final flag (1 byte) | the
item's name without the soft-delete suffix. So a flipped byte, a frame reordered, a value truncated
at a frame boundary (the new last frame lacks the final flag), a value moved or swapped to another
name, or a wrong key raise :class:`~unistore.errors.IntegrityError`, never wrong bytes. Soft delete
and undelete stay renames (the suffix is not bound); a ``move`` that changes the bound name
re-encrypts the value, streamed. Names stay in plain text; only values are encrypted.

The stored size is a function of the plaintext size, so ``info()`` and ``list()`` report plaintext
sizes without reading anything. A partial load reads the header and only the frames it needs.
Capabilities that would bypass the layer (presigned URLs, multipart primitives, server-side copy,
checksums of the ciphertext) are not passed on.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..backends.base import Backend, ItemInfo, ObjectMeta, StoreMeta, Value, resolve_range
from ..backends.capabilities import METADATA, OBJECT_LOCK, SSE_C, STORAGE_CLASS, TAGS
from ..errors import ConfigError, IntegrityError, ObjectNotFound
from ..names import DEL_SUFFIX
from .base import Layer
from .chunked import ChunkedReader
from .keys import KeySource, key_from_env, key_id, resolve_key

MAGIC = b"UNSE"
VERSION = 1
CHUNK_EXP = 16
CHUNK = 1 << CHUNK_EXP
HEADER_SIZE = 4 + 1 + 1 + 8
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE
FRAME = CHUNK + OVERHEAD
BATCH_FRAMES = 64  # frames per backend read when streaming (4 MiB)


def chunk_count(plain_size: int) -> int:
    """Frames of a value of ``plain_size`` bytes (at least one)."""
    return max(1, -(-plain_size // CHUNK))


def stored_size(plain_size: int) -> int:
    """Bytes stored for a value of ``plain_size`` bytes."""
    return HEADER_SIZE + chunk_count(plain_size) * OVERHEAD + plain_size


def plain_size(stored: int) -> int | None:
    """The plaintext size of a stored value of ``stored`` bytes, or None if no value has that size."""
    body = stored - HEADER_SIZE
    if body < OVERHEAD:
        return None
    full, rest = divmod(body, FRAME)
    if rest == 0:
        return full * CHUNK
    if rest < OVERHEAD:
        return None
    return full * CHUNK + rest - OVERHEAD


def bound_name(name: str) -> str:
    """The part of a name that is bound into the ciphertext (the soft-delete suffix is not)."""
    return name.removesuffix(DEL_SUFFIX)


class _Sealer:
    """Encrypts or decrypts the frames of one value."""

    def __init__(self, aead: AESGCM, header: bytes, name: str) -> None:
        self.aead = aead
        self.header = header
        self.name = name
        self.name_bytes = bound_name(name).encode()

    def _aad(self, index: int, final: bool) -> bytes:
        return self.header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00") + self.name_bytes

    def seal(self, index: int, chunk: bytes | memoryview, final: bool) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self.aead.encrypt(nonce, chunk, self._aad(index, final))

    def seal_into(self, index: int, chunk: memoryview, final: bool, out: memoryview) -> None:
        """Encrypt one chunk into ``out`` (nonce, ciphertext, tag: ``len(chunk) + OVERHEAD`` bytes)."""
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        self.aead.encrypt_into(nonce, chunk, self._aad(index, final), out[NONCE_SIZE:])

    def open(self, index: int, frame: bytes | memoryview, final: bool) -> bytes:
        if len(frame) < OVERHEAD:
            raise IntegrityError(f"{self.name}: chunk {index} is truncated")
        view = memoryview(frame)
        try:
            return self.aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], self._aad(index, final))
        except InvalidTag:
            raise IntegrityError(
                f"{self.name}: chunk {index} failed authentication (damaged, truncated, moved from another name, "
                "or encrypted with another key)"
            ) from None

    def open_into(self, index: int, frame: memoryview, final: bool, out: memoryview) -> None:
        """Decrypt one frame into ``out`` (exactly its plaintext length): no allocation per chunk."""
        if len(frame) < OVERHEAD:
            raise IntegrityError(f"{self.name}: chunk {index} is truncated")
        try:
            self.aead.decrypt_into(frame[:NONCE_SIZE], frame[NONCE_SIZE:], self._aad(index, final), out)
        except InvalidTag:
            raise IntegrityError(
                f"{self.name}: chunk {index} failed authentication (damaged, truncated, moved from another name, "
                "or encrypted with another key)"
            ) from None

    def open_maybe_final(self, index: int, frame: bytes | memoryview) -> bytes:
        """Open the last frame of a read that may or may not have reached the value's end."""
        try:
            return self.open(index, frame, False)
        except IntegrityError:
            return self.open(index, frame, True)


class _EncryptingReader(ChunkedReader):
    """The stored form of a plaintext stream, one frame at a time.

    Rewindable to its start when the source is seekable (so RetryLayer can retry a store_file).
    """

    def __init__(self, sealer: _Sealer, src: IO[bytes], size: int | None) -> None:
        super().__init__(src, size, CHUNK)
        self.sealer = sealer
        self.origin = src.tell() if src.seekable() else None
        self._reset()

    def _reset(self) -> None:
        self.left = self.size
        self.out = bytearray(self.sealer.header)
        self.index = 0
        self.pos = 0
        self.done = False
        self.pending = self._chunk()

    def _fill(self, n: int) -> None:
        while len(self.out) < n and not self.done:
            current = self.pending
            # a short chunk ends the stream; after a full one, look ahead to know whether it was the last
            following = self._chunk() if len(current) == CHUNK else b""
            final = not following
            self.out += self.sealer.seal(self.index, current, final)
            self.index += 1
            self.pending = following
            self.done = final

    def seekable(self) -> bool:
        return self.origin is not None

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.origin is None or whence != io.SEEK_SET or offset not in (0, self.pos):
            raise io.UnsupportedOperation("an encrypting stream can only be rewound to its start")
        if offset == 0 and self.pos != 0:
            self.src.seek(self.origin)
            self._reset()
        return self.pos


class EncryptLayer(Layer):
    """Encrypts every value with AES-256-GCM (see the module docstring for the format).

    ``key`` (32 bytes, a key file path, or a callable returning 32 bytes), ``key_file`` or ``key_env``
    (an environment variable holding hex or base64) give the current key: new values are encrypted
    with it. ``old_keys`` still decrypt (key rotation; see :meth:`reencrypt`).
    """

    forward = frozenset({"delete_many"})
    honours = frozenset({TAGS, OBJECT_LOCK, METADATA, STORAGE_CLASS, SSE_C})

    def __init__(
        self,
        inner: Backend,
        key: KeySource | None = None,
        *,
        key_file: str | os.PathLike[str] | None = None,
        key_env: str | None = None,
        old_keys: Sequence[KeySource] = (),
    ) -> None:
        super().__init__(inner)
        given = [k for k in (key, key_file, key_env) if k is not None]
        if len(given) != 1:
            raise ConfigError("give exactly one of key, key_file and key_env")
        if key_env is not None:
            current = key_from_env(key_env)
        else:
            current = resolve_key(key if key is not None else key_file)  # type: ignore[arg-type]
        self.key_id = key_id(current)
        self._aeads = {self.key_id: AESGCM(current)}
        for old in old_keys:
            raw = resolve_key(old)
            self._aeads.setdefault(key_id(raw), AESGCM(raw))
        self._header = MAGIC + bytes([VERSION, CHUNK_EXP]) + self.key_id

    def __repr__(self) -> str:
        return f"<EncryptLayer key_id={self.key_id.hex()} {self.inner!r}>"

    # ----------------------------------------------------------------- framing
    def _sealer(self, name: str) -> _Sealer:
        return _Sealer(self._aeads[self.key_id], self._header, name)

    def _reader(self, name: str, header: bytes) -> _Sealer:
        if len(header) < HEADER_SIZE or header[:4] != MAGIC:
            raise IntegrityError(f"{name}: not a value encrypted by unistore (or its header is damaged)")
        if header[4] != VERSION or header[5] != CHUNK_EXP:
            raise IntegrityError(f"{name}: unsupported encryption format {header[4]}/{header[5]}")
        aead = self._aeads.get(bytes(header[6:HEADER_SIZE]))
        if aead is None:
            raise IntegrityError(f"{name}: encrypted with an unknown key (key id {bytes(header[6:14]).hex()})")
        return _Sealer(aead, bytes(header[:HEADER_SIZE]), name)

    def _encrypt(self, name: str, value: Value) -> bytes:
        view = memoryview(value).cast("B")
        sealer = self._sealer(name)
        n = chunk_count(len(view))
        out = bytearray(stored_size(len(view)))
        target = memoryview(out)
        target[:HEADER_SIZE] = self._header
        for i in range(n):
            chunk = view[i * CHUNK : (i + 1) * CHUNK]
            start = HEADER_SIZE + i * FRAME
            sealer.seal_into(i, chunk, i == n - 1, target[start : start + len(chunk) + OVERHEAD])
        return bytes(out)

    def _decrypt(self, name: str, blob: bytes) -> bytes:
        sealer = self._reader(name, blob[:HEADER_SIZE])
        body = memoryview(blob)[HEADER_SIZE:]
        if plain_size(len(blob)) is None:
            raise IntegrityError(f"{name}: stored value has an impossible size (truncated?)")
        n = -(-len(body) // FRAME)
        total = plain_size(len(blob)) or 0
        out = bytearray(total)
        view = memoryview(out)
        for i in range(n):
            frame = body[i * FRAME : (i + 1) * FRAME]
            sealer.open_into(i, frame, i == n - 1, view[i * CHUNK : i * CHUNK + len(frame) - OVERHEAD])
        return bytes(out)

    def _plain_info(self, info: ItemInfo) -> ItemInfo:
        if not info.exists or info.directory:
            return info
        size = plain_size(info.size)
        return info if size is None else info._replace(size=size)

    # ----------------------------------------------------------------- primitives
    def info(self, name: str) -> ItemInfo:
        return self._plain_info(self.inner.info(name))

    def list(self, name: str) -> Iterator[ItemInfo]:
        return (self._plain_info(i) for i in self.inner.list(name))

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        return (self._plain_info(i) for i in self.inner.list_recursive(name))

    def store(self, name: str, value: Value) -> None:
        self.inner.store(name, self._encrypt(name, value))

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        if size is None and offset == 0:
            return self._decrypt(name, self.inner.load(name))
        n_frames = None
        if size is not None and size < 0 or offset < 0:
            # relative to the end: the end must be the real one, so the final chunk is checked exactly
            total = self._size_of(name)
            offset, size = resolve_range(total, offset, size)
            n_frames = chunk_count(total)
        return self._load_range(name, offset, size, n_frames)

    def _size_of(self, name: str) -> int:
        info = self.inner.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(name)
        size = plain_size(info.size)
        if size is None:
            raise IntegrityError(f"{name}: stored value has an impossible size (truncated?)")
        return size

    def _load_range(self, name: str, offset: int, size: int | None, n_frames: int | None = None) -> bytes:
        first = offset // CHUNK
        last = None if size is None else (offset + max(size, 1) - 1) // CHUNK
        want = None if last is None else (last - first + 1) * FRAME
        if first == 0:
            blob = self.inner.load(name, size=None if want is None else HEADER_SIZE + want)
            header, body = blob[:HEADER_SIZE], memoryview(blob)[HEADER_SIZE:]
        else:
            header = self.inner.load(name, size=HEADER_SIZE)
            body = memoryview(self.inner.load(name, offset=HEADER_SIZE + first * FRAME, size=want))
        sealer = self._reader(name, header)
        if not body:
            return b""  # the range starts after the last chunk: nothing to read (clipped)
        frames = [body[i : i + FRAME] for i in range(0, len(body), FRAME)]
        reached_end = want is None or len(body) < want
        out = []
        for j, frame in enumerate(frames):
            index = first + j
            is_last = j == len(frames) - 1
            if n_frames is not None:
                out.append(sealer.open(index, frame, index == n_frames - 1))
            elif not is_last:
                out.append(sealer.open(index, frame, False))
            elif reached_end:
                out.append(sealer.open(index, frame, True))
            else:
                out.append(sealer.open_maybe_final(index, frame))
        plain = b"".join(out)
        local = offset - first * CHUNK
        return plain[local:] if size is None else plain[local : local + size]

    def move(self, curr_name: str, new_name: str) -> None:
        if bound_name(curr_name) == bound_name(new_name):
            self.inner.move(curr_name, new_name)  # soft delete / undelete: the bound name stays
            return
        self.copy(curr_name, new_name)  # re-encrypts for the new name, streamed through a spool file
        self.inner.delete(curr_name)

    # ----------------------------------------------------------------- streaming
    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        reader = _EncryptingReader(self._sealer(name), file, size)
        self.inner.store_file(name, reader, size=None if size is None else stored_size(size))  # type: ignore[arg-type]

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        total = self._size_of(name)
        start, length = resolve_range(total, offset, size)
        if total == 0:
            self._decrypt(name, self.inner.load(name))  # authenticate even an empty value
            return 0
        if length == 0:
            return 0
        sealer = self._reader(name, self.inner.load(name, size=HEADER_SIZE))
        n_frames = chunk_count(total)
        first, last = start // CHUNK, (start + length - 1) // CHUNK
        written = 0
        index = first
        while index <= last:
            count = min(BATCH_FRAMES, last - index + 1)
            body = memoryview(self.inner.load(name, offset=HEADER_SIZE + index * FRAME, size=count * FRAME))
            for j in range(count):
                frame = body[j * FRAME : (j + 1) * FRAME]
                plain = sealer.open(index + j, frame, index + j == n_frames - 1)
                lo = start - (index + j) * CHUNK if index + j == first else 0
                piece = plain[lo : lo + (length - written)]
                file.write(piece)
                written += len(piece)
            index += count
        return written

    def copy(self, src: str, dst: str) -> None:
        with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as tmp:
            n = self.load_file(src, tmp)  # type: ignore[arg-type]
            tmp.seek(0)
            self.store_file(dst, tmp, size=n)  # type: ignore[arg-type]

    def stat(self, name: str) -> ObjectMeta:
        meta = self.inner.stat(name)
        size = plain_size(meta.size)
        # the ETag and checksums are the ciphertext's: meaningless to a reader of the plaintext
        return replace(meta, size=meta.size if size is None else size, etag=None, checksums={})

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            self.inner.store_with_meta(name, self._encrypt(name, data), meta)
            return
        reader = _EncryptingReader(self._sealer(name), data, size)
        self.inner.store_with_meta(name, reader, meta, size=None if size is None else stored_size(size))  # type: ignore[arg-type]

    # ----------------------------------------------------------------- bulk
    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self.inner.store_many((n, self._encrypt(n, v)) for n, v in pairs)

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        for name, blob in self.inner.load_many(names):
            yield name, self._decrypt(name, blob)

    # ----------------------------------------------------------------- key rotation
    def key_id_of(self, name: str) -> bytes:
        """The id of the key that encrypted ``name`` (reads its header only)."""
        header = self.inner.load(name, size=HEADER_SIZE)
        if len(header) < HEADER_SIZE or header[:4] != MAGIC:
            raise IntegrityError(f"{name}: not a value encrypted by unistore")
        return bytes(header[6:HEADER_SIZE])

    def reencrypt(self, prefix: str = "", progress: Any = None) -> tuple[int, int]:
        """Rewrite every item below ``prefix`` not encrypted with the current key; return (rewritten, kept).

        Resumable: items already under the current key are only read (their header) and kept.
        Soft-deleted items are rewritten too. ``progress`` (e.g. a tqdm bar) gets ``update(1)`` per item.
        """
        base = prefix.strip("/")
        rewritten = kept = 0
        names = [f"{base}/{i.name}" if base else i.name for i in self.inner.list_recursive(base)]
        for name in names:
            if self.key_id_of(name) == self.key_id:
                kept += 1
            else:
                with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as tmp:
                    n = self.load_file(name, tmp)  # type: ignore[arg-type]
                    tmp.seek(0)
                    self.store_file(name, tmp, size=n)  # type: ignore[arg-type]
                rewritten += 1
            if progress is not None:
                progress.update(1)
        return rewritten, kept
