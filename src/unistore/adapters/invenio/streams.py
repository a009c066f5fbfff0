"""File-like objects between Invenio and a backend.

- :class:`CountingReader` wraps an incoming upload stream: it hashes (md5, invenio-files-rest's
  checksum) while the backend reads, enforces the size limit and the announced size with
  invenio-files-rest's exceptions, and reports progress, so nothing is read twice.
- :class:`BackendReader` is a seekable reader over a stored item (ranged loads), iterable in
  chunks, for ``open("rb")``, ranged and conditional downloads and checksums.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

from ...backends.base import Backend

MiB = 1024 * 1024
DEFAULT_CHUNK = 5 * MiB  # invenio-files-rest's default chunk size


def _size_errors() -> tuple[Any, Any, Any]:
    from invenio_files_rest.errors import FileSizeError, UnexpectedFileSizeError
    from invenio_files_rest.storage.base import check_sizelimit

    return FileSizeError, UnexpectedFileSizeError, check_sizelimit


class CountingReader(io.RawIOBase):
    """Reads ``stream`` for a backend, hashing, counting and checking limits on the way."""

    def __init__(
        self,
        stream: Any,
        *,
        size: int | None = None,
        size_limit: Any = None,
        progress_callback: Callable[[int | None, int], Any] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self._stream = stream
        self.size = size
        self.size_limit = size_limit
        self.progress_callback = progress_callback
        self.chunk_size = chunk_size or DEFAULT_CHUNK
        self.md5 = hashlib.md5()
        self.bytes_read = 0
        self.eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def read(self, n: int | None = -1) -> bytes:
        """Up to ``n`` bytes (all that is left for ``n < 0``); short only at the end of the stream."""
        if n is None or n < 0:
            parts = []
            while chunk := self._read_some(self.chunk_size):
                parts.append(chunk)
            return b"".join(parts)
        out = bytearray()
        while len(out) < n:
            chunk = self._read_some(n - len(out))
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def _read_some(self, n: int) -> bytes:
        _, _, check_sizelimit = _size_errors()
        check_sizelimit(self.size_limit, self.bytes_read, self.size)
        if self.eof:
            return b""
        chunk = self._stream.read(n)
        if not chunk:
            self.eof = True
            self._check_complete()
            if self.progress_callback:
                self.progress_callback(self.bytes_read, self.bytes_read)
            return b""
        self.bytes_read += len(chunk)
        check_sizelimit(self.size_limit, self.bytes_read, self.size)
        self.md5.update(chunk)
        if self.progress_callback:
            self.progress_callback(None, self.bytes_read)
        return bytes(chunk)

    def _check_complete(self) -> None:
        from invenio_files_rest.storage.base import check_size

        check_size(self.bytes_read, self.size)

    def drain(self) -> None:
        """Read to the end (a backend that read exactly ``size`` bytes leaves the end unseen)."""
        while self._read_some(self.chunk_size):
            pass

    @property
    def checksum(self) -> str:
        return f"md5:{self.md5.hexdigest()}"


class BackendReader(io.RawIOBase):
    """A seekable reader of one stored item; iterating it yields chunks (not lines)."""

    def __init__(self, backend: Backend, name: str, size: int, chunk_size: int | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.name = name
        self.size = size
        self.pos = 0
        self.chunk_size = chunk_size or DEFAULT_CHUNK

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self.pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self.pos = pos
        return pos

    def read(self, n: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read of a closed file")
        remaining = self.size - self.pos
        if remaining <= 0:
            return b""
        want = remaining if n is None or n < 0 else min(n, remaining)
        if want == 0:
            return b""
        data = self.backend.load(self.name, offset=self.pos, size=want)
        self.pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def __iter__(self) -> BackendReader:
        return self

    def __next__(self) -> bytes:
        chunk = self.read(self.chunk_size)
        if not chunk:
            raise StopIteration
        return chunk


class AssembledReader(io.RawIOBase):
    """Reads ``size`` bytes made of segments ``(offset, length, loader)``; gaps read as zeros.

    ``loader(offset_in_segment, n)`` returns bytes; used to put staged parts together.
    """

    def __init__(self, size: int, segments: list[tuple[int, int, Callable[[int, int], bytes]]]) -> None:
        super().__init__()
        self.size = size
        self.segments = sorted(segments, key=lambda s: s[0])
        self.pos = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if self.pos >= self.size:
            return b""
        want = self.size - self.pos if n is None or n < 0 else min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < want:
            pos = self.pos + len(out)
            seg = next((s for s in self.segments if s[0] <= pos < s[0] + s[1]), None)
            if seg is None:
                nxt = min((s[0] for s in self.segments if s[0] > pos), default=self.size)
                out += bytes(min(min(nxt, self.size) - pos, want - len(out)))
                continue
            start, length, loader = seg
            take = min(start + length - pos, want - len(out))
            data = loader(pos - start, take)
            if not data:
                raise OSError(f"segment at {start} ended early")
            out += data
        self.pos += len(out)
        return bytes(out)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)
