"""``file:///abs/path``: items are files below a root directory.

* Writes go to a uniquely named temp file in the target directory, then are renamed into place, so
  readers never see a partial value (optionally fsynced, file and directory).
* No name ever reaches outside the root: names are validated (no ``..``, no absolute paths), the
  final path component is opened with ``O_NOFOLLOW``, and every parent directory is checked once
  (then remembered) not to be a symbolic link. Links found inside the store are never followed:
  ``info`` reports them as missing, ``list`` skips them, ``load`` raises PermissionDenied.
* Optional permissions mapping with borgstore's letters (``l`` list, ``r`` read, ``w`` write new,
  ``W`` write/overwrite, ``D`` delete) and an optional quota, shared between processes through
  ``quota.hid`` under an flock.
"""

from __future__ import annotations

import builtins
import errno
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, BinaryIO
from urllib.parse import unquote

from ..errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendError,
    BackendMustNotBeOpen,
    ConfigError,
    DirectoryNotEmpty,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
)
from ..hashing import new_hash
from ..names import HID_SUFFIX, TMP_SUFFIX, check_name, is_listable, join
from .base import Backend, ItemInfo, Value, as_bytes_view, copy_stream, resolve_range

logger = logging.getLogger("unistore.backends.posixfs")

QUOTA_FILE = "quota" + HID_SUFFIX
QUOTA_SYNC_BYTES = 10 * 1000 * 1000
QUOTA_SYNC_SECONDS = 300.0

_O_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_O_TMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW

# a per-process token for temp file names; renewed in a forked child so names never collide
_token = uuid.uuid4().hex[:12]


def _renew_token() -> None:
    global _token
    _token = uuid.uuid4().hex[:12]


os.register_at_fork(after_in_child=_renew_token)
_counter = iter(range(1, 1 << 62))  # next() on a range iterator is atomic under the GIL


class PosixFS(Backend):
    """Local filesystem backend. Safe from many threads and several processes."""

    schemes = ("file",)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        do_fsync: bool = False,
        permissions: Mapping[str, str] | None = None,
        quota: int | None = None,
    ) -> None:
        path = os.fspath(path)
        if not os.path.isabs(path):
            raise ConfigError(f"posixfs path must be absolute: {path!r}")
        self.base_path = os.path.normpath(path)
        self.do_fsync = do_fsync
        self.permissions = dict(permissions or {})
        for perm_name, letters in self.permissions.items():
            if perm_name:
                check_name(perm_name)
            if not set(letters) <= set("lrwWD"):
                raise ConfigError(f"permission letters for {perm_name!r} must be from 'lrwWD', not {letters!r}")
        if quota is not None and quota < 0:
            raise ConfigError(f"quota must be >= 0 bytes, not {quota}")
        self.quota_limit = quota
        self.opened = False
        self._root = ""  # real path of the root with a trailing "/", set by open()
        self._safe_dirs: set[str] = set()  # relative dirs known to be real directories (no links)
        self._quota_lock = threading.Lock()
        self._quota_use = 0
        self._quota_unsynced = 0
        self._quota_synced_at = 0.0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PosixFS:
        if not url.startswith("file://"):
            raise ConfigError(f"not a file:// URL: {url!r}")
        path = unquote(url[len("file://") :])
        if not path.startswith("/"):
            raise ConfigError(f"file:// URLs need an absolute path (file:///abs/path), got {url!r}")
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"<PosixFS {self.base_path!r}>"

    # ----------------------------------------------------------------- permissions
    def _check_permission(self, name: str, letters: str) -> None:
        """borgstore's rule: the most specific mapping entry for the name or a parent decides."""
        perms = self.permissions
        if not perms:
            return
        parts = name.split("/") if name else []
        for i in range(len(parts), -1, -1):
            granted = perms.get("/".join(parts[:i]))
            if granted is not None:
                if set(letters) & set(granted):
                    return
                break
        raise PermissionDenied(f"one of the permissions {letters!r} is required for {name!r}")

    # ----------------------------------------------------------------- paths
    def _path(self, name: str) -> str:
        """Absolute path of a validated name whose parent directories are not links."""
        self._check_open()
        check_name(name)
        parent = name.rpartition("/")[0]
        if parent and parent not in self._safe_dirs:
            self._verify_dirs(parent)
        return self._root + name

    def _verify_dirs(self, rel: str) -> None:
        """Raise PermissionDenied if an existing component of ``rel`` is not a real directory."""
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self._safe_dirs:
                continue
            try:
                st = os.lstat(self._root + sub)
            except FileNotFoundError:
                return  # missing from here on: whoever creates it creates real directories
            if stat.S_ISLNK(st.st_mode):
                raise PermissionDenied(f"{sub!r} is a symbolic link; posixfs never follows links")
            if not stat.S_ISDIR(st.st_mode):
                raise ObjectNotFound(f"{sub!r} is not a directory")
            self._safe_dirs.add(sub)

    def _makedirs(self, rel: str) -> None:
        if rel:
            self._verify_dirs(rel)
            os.makedirs(self._root + rel, exist_ok=True)
            self._verify_dirs(rel)

    # ----------------------------------------------------------------- lifecycle
    def create(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._check_permission("", "wW")
        os.makedirs(self.base_path, exist_ok=True)
        if os.listdir(self.base_path):
            raise BackendAlreadyExists(f"posixfs storage path is not empty: {self.base_path}")

    def destroy(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._check_permission("", "D")
        if not os.path.isdir(self.base_path):
            raise BackendDoesNotExist(f"posixfs storage path does not exist: {self.base_path}")
        for entry in os.scandir(self.base_path):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        try:
            os.rmdir(self.base_path)
        except OSError:
            pass  # e.g. no write permission on the parent: create() accepts an empty directory

    def open(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        if not os.path.isdir(self.base_path):
            raise BackendDoesNotExist(f"posixfs storage path does not exist or is not a directory: {self.base_path}")
        self._root = os.path.realpath(self.base_path).rstrip("/") + "/"
        self._safe_dirs = set()
        self.opened = True
        if self.quota_limit is not None:
            self._quota_sync(force=True)
        else:
            try:
                os.unlink(self._root + QUOTA_FILE)  # stale once the quota is off
            except FileNotFoundError:
                pass

    def close(self) -> None:
        if self.opened and self.quota_limit is not None:
            self._quota_sync(force=True)
        self.opened = False

    # ----------------------------------------------------------------- core operations
    def mkdir(self, name: str) -> None:
        self._check_open()
        check_name(name, allow_root=True)
        self._check_permission(name, "w")
        self._makedirs(name)

    def rmdir(self, name: str) -> None:
        path = self._path(name)
        self._check_permission(name, "wD")
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode):
                raise ObjectNotFound(f"{name!r} is not a directory")
            os.rmdir(path)
        except FileNotFoundError:
            raise ObjectNotFound(name) from None
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise DirectoryNotEmpty(f"directory not empty: {name!r}") from None
            raise
        self._safe_dirs = {d for d in self._safe_dirs if d != name and not d.startswith(name + "/")}

    def info(self, name: str) -> ItemInfo:
        path = self._path(name)
        self._check_permission(name, "lr")
        base = name.rpartition("/")[2]
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return ItemInfo(base, False)
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            return ItemInfo(base, False)
        return ItemInfo(base, True, st.st_size, stat.S_ISDIR(mode), st.st_atime, st.st_mtime)

    def _open_read(self, name: str) -> int:
        path = self._path(name)
        self._check_permission(name, "r")
        try:
            return os.open(path, _O_READ)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise PermissionDenied(f"{name!r} is a symbolic link; posixfs never follows links") from None
            raise

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        fd = self._open_read(name)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise ObjectNotFound(f"{name!r} is a directory")
            total = st.st_size
            if offset == 0 and size is None:
                data = os.read(fd, total)
                if len(data) == total:
                    return data
                start, length = len(data), total - len(data)
                parts = [data]
            else:
                start, length = resolve_range(total, offset, size)
                parts = []
            while length > 0:
                chunk = os.pread(fd, min(length, 1 << 30), start)
                if not chunk:
                    break
                parts.append(chunk)
                start += len(chunk)
                length -= len(chunk)
            return b"".join(parts)
        finally:
            os.close(fd)

    def _quota_check(self, path: str, new_size: int) -> int:
        """Return the usage delta of replacing ``path`` by ``new_size`` bytes, or raise QuotaExceeded."""
        try:
            old = os.lstat(path).st_size
        except FileNotFoundError:
            old = 0
        delta = new_size - old
        if delta > 0 and self._quota_use + delta > self.quota_limit:  # type: ignore[operator]
            raise QuotaExceeded(
                f"storing {new_size} bytes would exceed the quota: {self._quota_use + delta} > {self.quota_limit}"
            )
        return delta

    def _tmp_name(self, path: str) -> str:
        return f"{path}.{_token}{next(_counter):x}{TMP_SUFFIX}"

    def _open_tmp(self, name: str, path: str) -> tuple[int, str]:
        tmp = self._tmp_name(path)
        try:
            return os.open(tmp, _O_TMP, 0o666), tmp
        except FileNotFoundError:
            self._makedirs(name.rpartition("/")[0])
            return os.open(tmp, _O_TMP, 0o666), tmp

    def _commit_tmp(self, fd: int, tmp: str, path: str) -> None:
        """fsync (optionally), close and rename the temp file into place; remove it on failure."""
        try:
            if self.do_fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.rename(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        if self.do_fsync:
            dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _check_write(self, name: str, path: str) -> None:
        if self.permissions:
            self._check_permission(name, "W" if os.path.lexists(path) else "wW")

    def _write(self, name: str, write: Callable[[int], int]) -> None:
        """Write a new version of ``name`` through ``write(fd) -> size`` into a temp file, then rename it."""
        path = self._path(name)
        self._check_write(name, path)
        fd, tmp = self._open_tmp(name, path)
        try:
            size = write(fd)
            delta = self._quota_check(path, size) if self.quota_limit is not None else 0
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp)
            raise
        self._commit_tmp(fd, tmp, path)
        if delta:
            self._quota_add(delta)

    def store(self, name: str, value: Value) -> None:
        view = as_bytes_view(value)

        def write(fd: int) -> int:
            written = os.write(fd, view)
            while written < len(view):
                written += os.write(fd, view[written:])
            return written

        self._write(name, write)

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        def write(fd: int) -> int:
            with os.fdopen(fd, "wb", closefd=False) as out:
                copied = copy_stream(file, out, size)
            return copied if copied >= 0 else os.fstat(fd).st_size

        self._write(name, write)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        fd = self._open_read(name)
        with os.fdopen(fd, "rb") as f:
            start, length = resolve_range(os.fstat(fd).st_size, offset, size)
            f.seek(start)
            return copy_stream(f, file, length)

    def open_reader(self, name: str) -> BinaryIO:
        return os.fdopen(self._open_read(name), "rb")

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        h = new_hash(algorithm)
        with os.fdopen(self._open_read(name), "rb") as f:
            return hashlib.file_digest(f, lambda: h).hexdigest()

    def copy(self, src: str, dst: str) -> None:
        with self.open_reader(src) as f:
            self.store_file(dst, f)

    def delete(self, name: str) -> None:
        path = self._path(name)
        self._check_permission(name, "D")
        try:
            size = os.lstat(path).st_size if self.quota_limit is not None else 0
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except IsADirectoryError:
            raise ObjectNotFound(f"{name!r} is a directory") from None
        if size:
            self._quota_add(-size)

    def move(self, curr_name: str, new_name: str) -> None:
        curr = self._path(curr_name)
        new = self._path(new_name)
        if self.permissions:
            self._check_permission(curr_name, "D")
            self._check_permission(new_name, "W" if os.path.lexists(new) else "wW")
        try:
            os.rename(curr, new)
        except FileNotFoundError:
            if not os.path.lexists(curr):
                raise ObjectNotFound(curr_name) from None
            self._makedirs(new_name.rpartition("/")[0])
            try:
                os.rename(curr, new)
            except FileNotFoundError:
                raise ObjectNotFound(curr_name) from None

    def _scan(self, name: str) -> builtins.list[os.DirEntry[str]]:
        path = self._root + name if name else self._root
        try:
            with os.scandir(path) as it:
                entries = [e for e in it if is_listable(e.name) and not e.is_symlink()]
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        entries.sort(key=lambda e: e.name)
        return entries

    def _listable_dir(self, name: str) -> None:
        """Checks before listing directory ``name``: open, valid, no links on the way, ``l`` granted."""
        self._check_open()
        check_name(name, allow_root=True)
        if name and name not in self._safe_dirs:
            self._verify_dirs(name)
        self._check_permission(name, "l")

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._listable_dir(name)
        return self._infos(self._scan(name))

    @staticmethod
    def _infos(entries: builtins.list[os.DirEntry[str]]) -> Iterator[ItemInfo]:
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            yield ItemInfo(e.name, True, st.st_size, stat.S_ISDIR(st.st_mode), st.st_atime, st.st_mtime)

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        self._listable_dir(name)
        return self._walk(name, "")

    def _walk(self, name: str, rel: str) -> Iterator[ItemInfo]:
        for e in self._scan(join(name, rel)):
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    yield from self._walk(name, join(rel, e.name))
                except ObjectNotFound:
                    continue  # removed while we were listing
            else:
                yield ItemInfo(join(rel, e.name), True, st.st_size, False, st.st_atime, st.st_mtime)

    # ----------------------------------------------------------------- quota
    def quota(self) -> dict[str, int]:
        if self.quota_limit is None:
            return {"limit": -1, "usage": -1}
        return {"limit": self.quota_limit, "usage": self._quota_use}

    def _quota_add(self, delta: int) -> None:
        with self._quota_lock:
            self._quota_use += delta
            self._quota_unsynced += delta
        stale = time.monotonic() - self._quota_synced_at > QUOTA_SYNC_SECONDS
        if stale or abs(self._quota_unsynced) >= QUOTA_SYNC_BYTES:
            self._quota_sync()

    def _scan_usage(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self._root):
            for f in files:
                if dirpath.rstrip("/") + "/" == self._root and f == QUOTA_FILE:
                    continue
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except FileNotFoundError:
                    pass
        return total

    def _quota_sync(self, force: bool = False) -> None:
        """Apply our unsynced delta to ``quota.hid`` under an flock and adopt the shared total."""
        with self._quota_lock:
            fd = os.open(self._root + QUOTA_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, 64, 0)
                try:
                    total = int(raw) + self._quota_unsynced
                except ValueError:
                    total = self._scan_usage()  # first use, or a torn write: count what is there
                total = max(total, 0)
                data = str(total).encode()
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
                self._quota_use = total
                self._quota_unsynced = 0
                self._quota_synced_at = time.monotonic()
            finally:
                os.close(fd)  # closing drops the flock


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


__all__ = ["PosixFS", "BackendError"]
