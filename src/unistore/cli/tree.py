"""The two sides of a copy: a local directory tree or a backend below a prefix.

A :class:`Side` lists its files (relative name -> size, mtime), reads one as a stream and writes one
so that nothing half-written is ever visible: a local file goes to ``.NAME.<random>.part`` in the
target directory and is renamed into place when complete (and removed on any failure or Ctrl-C);
a backend's ``store_file`` is atomic by the backend contract (temp file + rename on posixfs and
sftp, a single PUT or a multipart upload that is completed only at the end on S3).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from ..backends.base import Backend
from ..backends.capabilities import CHECKSUMS
from ..errors import ObjectNotFound
from ..names import DEL_SUFFIX, HID_SUFFIX, TMP_SUFFIX
from .locations import Target
from .progress import Cancel, Progress, ProgressReader, ProgressWriter

PART_SUFFIX = ".part"
#: items up to this size (the largest part s3transfer buffers anyway) are fetched with one load(), one request
SMALL_ITEM = 8 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    size: int
    mtime: float


class TempFiles:
    """Local temp files in flight, so that an interrupted command can remove every one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()

    def add(self, path: str) -> None:
        with self._lock:
            self._paths.add(path)

    def discard(self, path: str) -> None:
        with self._lock:
            self._paths.discard(path)

    def remove_all(self) -> None:
        with self._lock:
            paths, self._paths = self._paths, set()
        for p in paths:
            with contextlib.suppress(OSError):
                os.unlink(p)


class Filters:
    """``--include``/``--exclude`` globs on relative names (a pattern without ``/`` also matches the base name)."""

    def __init__(self, include: list[str] | None, exclude: list[str] | None) -> None:
        self.include = include or []
        self.exclude = exclude or []

    @staticmethod
    def _match(rel: str, pattern: str) -> bool:
        if fnmatch.fnmatchcase(rel, pattern):
            return True
        return "/" not in pattern and fnmatch.fnmatchcase(rel.rsplit("/", 1)[-1], pattern)

    def __call__(self, rel: str) -> bool:
        if any(self._match(rel, p) for p in self.exclude):
            return False
        return not self.include or any(self._match(rel, p) for p in self.include)


class Side:
    """One side of a transfer; see the module docstring."""

    def __init__(self, *, local: str | None = None, target: Target | None = None) -> None:
        assert (local is None) != (target is None)
        self.local = os.path.abspath(local) if local is not None else None
        self.target = target

    @property
    def label(self) -> str:
        return self.local if self.local is not None else self.target.label  # type: ignore[union-attr]

    @property
    def backend(self) -> Backend:
        assert self.target is not None
        return self.target.backend

    def where(self, rel: str) -> str:
        if self.local is not None:
            return os.path.join(self.local, *rel.split("/")) if rel else self.local
        assert self.target is not None
        return self.target.name(rel)

    # ----------------------------------------------------------------- listing
    def list_tree(self) -> dict[str, Entry]:
        """Every file below the root (empty when the root does not exist yet)."""
        if self.local is not None:
            return dict(self._walk_local(self.local))
        assert self.target is not None
        try:
            return {
                i.name: Entry(i.size, i.mtime)
                for i in self.backend.list_recursive(self.target.prefix)
                if not i.directory and not i.name.endswith(DEL_SUFFIX)
            }
        except ObjectNotFound:
            return {}

    @staticmethod
    def _walk_local(root: str) -> Iterator[tuple[str, Entry]]:
        if not os.path.isdir(root):
            return
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for fn in sorted(filenames):
                if fn.endswith(PART_SUFFIX) and fn.startswith("."):
                    continue  # our own temp files of a transfer that is still running elsewhere
                path = os.path.join(dirpath, fn)
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # a dangling link
                if not os.path.isfile(path):
                    continue
                rel = fn if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{fn}"
                yield rel, Entry(st.st_size, st.st_mtime)

    def entry(self, rel: str) -> Entry | None:
        """The file at ``rel`` (the root itself when ``rel`` is empty), or None."""
        if self.local is not None:
            path = self.where(rel)
            if not os.path.isfile(path):
                return None
            st = os.stat(path)
            return Entry(st.st_size, st.st_mtime)
        info = self.backend.info(self.where(rel))
        if not info.exists or info.directory:
            return None
        return Entry(info.size, info.mtime)

    # ----------------------------------------------------------------- content
    def digest(self, rel: str, cancel: Cancel, algorithm: str = "sha256") -> str:
        """Hex digest of a file's content: from the backend's stat() where it knows it, else streamed."""
        if self.target is not None and self.backend.supports(CHECKSUMS):
            known = self.backend.stat(self.where(rel)).checksums.get(algorithm)
            if known:
                return known
        h = hashlib.new(algorithm)
        sink = ProgressWriter(_HashFile(h), None, cancel)  # type: ignore[arg-type]
        if self.local is not None:
            with open(self.where(rel), "rb") as f:
                shutil.copyfileobj(f, sink, 1024 * 1024)  # type: ignore[misc]
        else:
            self.backend.load_file(self.where(rel), sink)  # type: ignore[arg-type]
        return h.hexdigest()

    def delete(self, rel: str) -> None:
        if self.local is not None:
            os.unlink(self.where(rel))
        else:
            self.backend.delete(self.where(rel))


class _HashFile:
    def __init__(self, h: object) -> None:
        self.h = h

    def write(self, data: bytes) -> int:
        self.h.update(data)  # type: ignore[attr-defined]
        return len(data)

    def flush(self) -> None:
        pass


def digest_algorithm(*sides: Side) -> str:
    """md5 when a backend side reports it without a download (S3's ETag), else sha256."""
    if any(s.target is not None and s.backend.supports(CHECKSUMS) for s in sides):
        return "md5"
    return "sha256"


def hidden_name(rel: str) -> bool:
    return any(seg.endswith((TMP_SUFFIX, HID_SUFFIX)) for seg in rel.split("/")) or rel.endswith(DEL_SUFFIX)


def _overrides_open_reader(be: Backend) -> bool:
    return type(be).open_reader is not Backend.open_reader


def copy_one(
    src: Side,
    src_rel: str,
    dst: Side,
    dst_rel: str,
    size: int,
    mtime: float,
    progress: Progress | None,
    cancel: Cancel,
    temps: TempFiles,
) -> int:
    """Copy one file; return the bytes copied. Nothing half-written stays behind on failure."""
    if dst.local is not None:
        return _to_local(src, src_rel, dst.where(dst_rel), size, mtime, progress, cancel, temps)
    name = dst.where(dst_rel)
    if src.local is not None:
        with open(src.where(src_rel), "rb") as f:
            reader = ProgressReader(f, progress, cancel)
            dst.backend.store_file(name, reader, size=size)  # type: ignore[arg-type]
        return size
    src_name = src.where(src_rel)
    if size <= SMALL_ITEM:
        cancel.check()
        data = src.backend.load(src_name)
        cancel.check()
        dst.backend.store(name, data)
        if progress is not None:
            progress.add(len(data))
        return len(data)
    if _overrides_open_reader(src.backend):
        with src.backend.open_reader(src_name) as stream:
            reader = ProgressReader(stream, progress, cancel, seekable=False)
            dst.backend.store_file(name, reader, size=size)  # type: ignore[arg-type]
        return size
    with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as tmp:  # memory only up to 16 MiB
        src.backend.load_file(src_name, ProgressWriter(tmp, None, cancel))  # type: ignore[arg-type]
        tmp.seek(0)
        dst.backend.store_file(name, ProgressReader(tmp, progress, cancel), size=size)  # type: ignore[arg-type]
    return size


def _to_local(
    src: Side,
    src_rel: str,
    path: str,
    size: int,
    mtime: float,
    progress: Progress | None,
    cancel: Cancel,
    temps: TempFiles,
) -> int:
    directory, base = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}{PART_SUFFIX}")
    temps.add(tmp)
    try:
        with open(tmp, "xb") as f:
            writer = ProgressWriter(f, progress, cancel)
            if src.local is not None:
                with open(src.where(src_rel), "rb") as sf:
                    shutil.copyfileobj(sf, writer, 1024 * 1024)  # type: ignore[misc]
            elif size <= SMALL_ITEM:
                writer.write(src.backend.load(src.where(src_rel)))
            else:
                src.backend.load_file(src.where(src_rel), writer)  # type: ignore[arg-type]
            n = writer.written
        if mtime:
            os.utime(tmp, (mtime, mtime))
        cancel.check()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        temps.discard(tmp)
    return n


def open_local_source(path: str) -> IO[bytes]:
    """Open a local file for reading, with errors a user understands."""
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory (use cp -r to copy a tree)", path)
    return open(path, "rb")
