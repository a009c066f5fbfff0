"""Stream adaptors of the S3 backend: bounded, memoryview and chunk-iterator readers, and the tests
that tell a regular file (readable by path, writable by position) from any other stream."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


class LimitedReader(io.RawIOBase):
    """Reads at most ``limit`` bytes from ``file``."""

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self.file = file
        self.left = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.left:
            size = self.left
        data = self.file.read(size) if size else b""
        self.left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class ViewReader(io.RawIOBase):
    """A readable stream over a memoryview, without copying the whole value."""

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self.view) - self.pos)
        buffer[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n


class IterReader(io.RawIOBase):
    """A raw readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


class PrefixedReader(io.RawIOBase):
    """``prefix`` (already read from ``file``), then the rest of ``file``."""

    def __init__(self, prefix: bytes, file: IO[bytes]) -> None:
        self.prefix = memoryview(prefix)
        self.file = file

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self.prefix:
            if size is None or size < 0:
                size = len(self.prefix)
            out = bytes(self.prefix[:size])
            self.prefix = self.prefix[size:]
            return out
        return self.file.read(-1 if size is None else size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def read_full(file: IO[bytes], n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at EOF (a raw stream may return short reads)."""
    first = file.read(n)
    if not first or len(first) == n:
        return first or b""
    chunks = [first]
    got = len(first)
    while got < n:
        more = file.read(n - got)
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


def remaining_size(file: IO[bytes]) -> int | None:
    """Bytes left in ``file`` from its position, if it is a regular file (else None)."""
    try:
        pos = file.tell()
        st = os.fstat(file.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return st.st_size - pos
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


def whole_file_path(file: IO[bytes], size: int | None) -> Path | None:
    """The path of ``file`` if it is a regular file read from its start to its end."""
    try:
        name = getattr(file, "name", None)
        if not isinstance(name, str) or file.tell() != 0:
            return None
        st = os.fstat(file.fileno())
        on_disk = os.stat(name)
        if (st.st_dev, st.st_ino) != (on_disk.st_dev, on_disk.st_ino) or not stat.S_ISREG(st.st_mode):
            return None
        if size is not None and size != st.st_size:
            return None
        return Path(name)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


def regular_fd(file: IO[bytes]) -> int | None:
    """The descriptor of ``file`` if it is a regular, seekable file (for positional reads and writes)."""
    try:
        fd = file.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        file.flush()
        return fd
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
