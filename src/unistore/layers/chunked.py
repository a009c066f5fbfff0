"""ChunkedReader: the read side shared by the encrypting and compressing streams.

A subclass turns a plaintext source into its stored form chunk by chunk: it implements ``_fill(n)``
(append to ``out`` until it holds ``n`` bytes or the stream is done) and uses ``_chunk()`` to read
the next ``chunk_size`` bytes of the source (fewer only at its end, or when ``size`` runs out).
"""

from __future__ import annotations

import io
from typing import IO, Any


class ChunkedReader(io.RawIOBase):
    """A file-like object producing a transformed stream of ``src`` (at most ``size`` bytes of it)."""

    def __init__(self, src: IO[bytes], size: int | None, chunk_size: int) -> None:
        self.src = src
        self.size = size
        self.chunk_size = chunk_size
        self.left = size
        self.out = bytearray()
        self.pos = 0  # bytes handed out so far

    def _chunk(self) -> bytes:
        want = self.chunk_size if self.left is None else min(self.chunk_size, self.left)
        parts = []
        got = 0
        while got < want:
            data = self.src.read(want - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        if self.left is not None:
            self.left -= got
        return b"".join(parts)

    def _fill(self, n: int) -> None:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            self._fill(1 << 62)
            n = len(self.out)
        else:
            self._fill(n)
        data = bytes(self.out[:n])
        del self.out[:n]
        self.pos += len(data)
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
