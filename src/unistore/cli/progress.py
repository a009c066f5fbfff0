"""Progress that moves on every backend, and Ctrl-C that ends a transfer within a second.

Backends read sources and write sinks through :class:`ProgressReader` and :class:`ProgressWriter`:
each byte that passes advances the bar (whatever the backend does inside: s3transfer multipart,
SFTP pipelining, rclone's HTTP body), and each call checks the :class:`Cancel` token, so a
cancelled transfer raises :class:`Cancelled` inside the backend's own read/write loop, where the
backend's cleanup (abort the multipart upload, remove its temp file) runs.
The bar is drawn only when stderr is a terminal, never with ``--json`` or ``-q``.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from typing import IO, Any


class Cancelled(Exception):
    """The user interrupted the transfer (raised from a read or write the backend makes)."""


class Cancel:
    """A cancellation flag shared by the transfers of one command."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("interrupted")


def human(n: float) -> str:
    """``1.5 MiB``-style size."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


class Progress:
    """Bytes and files done of a planned total; draws a tqdm bar on a terminal."""

    def __init__(self, total_bytes: int | None, total_files: int, *, enabled: bool, desc: str = "") -> None:
        self.lock = threading.Lock()
        self.bytes = 0
        self.files = 0
        self.total_files = total_files
        self.started = time.perf_counter()
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            try:
                width, rows = os.get_terminal_size(sys.stderr.fileno())
            except (OSError, ValueError):
                width, rows = 0, 0

            self.bar = tqdm(
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                file=sys.stderr,
                mininterval=0.1,
                dynamic_ncols=width > 0,
                ncols=None if width > 0 else 80,  # a terminal that reports no size still gets a bar
                nrows=None if rows > 0 else 24,
                leave=False,
            )

    @staticmethod
    def wanted(json_mode: bool, quiet: bool) -> bool:
        return not json_mode and not quiet and sys.stderr.isatty()

    def add(self, n: int) -> None:
        if n <= 0:
            return
        with self.lock:
            self.bytes += n
            if self.bar is not None:
                self.bar.update(n)

    def file_done(self) -> None:
        with self.lock:
            self.files += 1
            if self.bar is not None and self.total_files > 1:
                self.bar.set_postfix_str(f"{self.files}/{self.total_files} files", refresh=False)

    def close(self) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


class ProgressReader(io.RawIOBase):
    """A readable, seekable view of a source file that reports bytes read and honours Cancel.

    It has no ``fileno()`` on purpose: a backend must read through it, so the bar moves.
    Progress is the furthest position reached (a backend that seeks back to retry a part does not
    count it twice).
    """

    def __init__(self, f: IO[bytes], progress: Progress | None, cancel: Cancel, *, seekable: bool = True) -> None:
        super().__init__()
        self._f = f
        self._progress = progress
        self._cancel = cancel
        self._seekable = seekable and _seekable(f)
        self._pos = 0
        self._high = 0
        self._lock = threading.Lock()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def _advance(self, n: int) -> None:
        self._pos += n
        if self._pos > self._high:
            if self._progress is not None:
                self._progress.add(self._pos - self._high)
            self._high = self._pos

    def read(self, size: int | None = -1) -> bytes:
        self._cancel.check()
        with self._lock:
            data = self._f.read(-1 if size is None else size)
            self._advance(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        self._cancel.check()
        with self._lock:
            data = self._f.read(len(buffer))
            n = len(data)
            buffer[:n] = data
            self._advance(n)
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        self._cancel.check()
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        with self._lock:
            self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._f.tell() if self._seekable else self._pos

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


class ProgressWriter(io.RawIOBase):
    """A write-only, sequential (non-seekable) sink that reports bytes written and honours Cancel."""

    def __init__(self, f: IO[bytes], progress: Progress | None, cancel: Cancel) -> None:
        super().__init__()
        self._f = f
        self._progress = progress
        self._cancel = cancel
        self._lock = threading.Lock()
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._cancel.check()
        with self._lock:
            self._f.write(data)
            n = len(memoryview(data).cast("B"))
            self.written += n
        if self._progress is not None:
            self._progress.add(n)
        return n

    def flush(self) -> None:
        self._f.flush()

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fileno")


def _seekable(f: IO[bytes]) -> bool:
    try:
        return bool(f.seekable())
    except (AttributeError, ValueError, OSError):
        return False
