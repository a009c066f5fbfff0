"""``file:///abs/path``: items are files below a root directory.

* Writes go to a uniquely named temp file in the target directory, then are renamed into place, so
  readers never see a partial value (optionally fsynced, file and directory). A temp file never
  outlives a failed or interrupted write; those of a crashed process are removed at the next open.
* No name ever reaches outside the root: names are validated (no ``..``, no absolute paths, no
  ``.tmp``/``.hid`` segments), and every directory is opened below its parent's file descriptor
  with ``O_NOFOLLOW`` (see dirs.py), so no link is followed and no directory swapped for a link
  after a check can redirect a write. Links found inside the store are never followed: ``info``
  reports them as missing, ``list`` skips them, ``load`` raises PermissionDenied.
* Optional permissions mapping with borgstore's letters (``l`` list, ``r`` read, ``w`` write new,
  ``W`` write/overwrite, ``D`` delete) and an optional quota, exact across threads and processes
  (quota.py), rescanned after a crash (sessions.py).
* Every OSError becomes a typed error (``unistore.backends.oserror.translate_oserror``); the answers
  to operations on the wrong kind of entry follow the error contract (docs/usage.md).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import logging
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO
from urllib.parse import unquote

from ...errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendMustBeOpen,
    BackendMustNotBeOpen,
    ConfigError,
    DirectoryNotEmpty,
    InvalidName,
    NameConflict,
    ObjectNotFound,
    PermissionDenied,
    UnistoreError,
)
from ...hashing import new_hash
from ...names import TMP_SUFFIX, check_name, is_listable
from ..base import Backend, ItemInfo, Value, as_bytes_view, copy_stream, resolve_range
from ..oserror import translate_oserror
from .dirs import Resolver, SymlinkRefused, remove_tree, walk_files
from .quota import QUOTA_FILE, Quota
from .sessions import Sessions, remove_stale_temps

logger = logging.getLogger("unistore.backends.posixfs")

#: longest name (in bytes) posixfs accepts; the kernel's PATH_MAX
MAX_NAME_BYTES = 4096

_O_TMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW

# temp names carry the session token, the pid (a forked child shares its parent's session) and a
# counter: "<item>.<token>-<pid>-<n>.tmp"
_pid = os.getpid()


def _renew_pid() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_renew_pid)
_counter = itertools.count(1)  # next() on it is atomic under the GIL


def os_error(e: OSError, name: str, *, write: bool = False) -> UnistoreError:
    """The typed error of an OSError of an operation on ``name`` (the error contract first).

    The other kind in the way (EISDIR, ENOTDIR) is NameConflict for a write (store, the target of a
    move) and ObjectNotFound for a lookup (load, delete, the source of a move): there is no such item.
    """
    code = e.errno
    if code == errno.ENOENT:
        return ObjectNotFound(name)
    if code == errno.EISDIR:
        words = f"{name!r} is a directory, not an item"
        return NameConflict(words) if write else ObjectNotFound(words)
    if code == errno.ENOTDIR:
        words = f"{name!r}: an item stands where a directory is needed"
        return NameConflict(words) if write else ObjectNotFound(words)
    if code == errno.ELOOP:
        return SymlinkRefused(f"{name!r} is a symbolic link; posixfs never follows links")
    return translate_oserror(e, name)


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


def _exists(leaf: str, dir_fd: int) -> bool:
    try:
        os.stat(leaf, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


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
        openat2: bool = True,
    ) -> None:
        """``openat2=False`` resolves names segment by segment even where Linux offers openat2."""
        path = os.fspath(path)
        if not os.path.isabs(path):
            raise ConfigError(f"posixfs path must be absolute: {path!r}")
        self.base_path = Path(os.path.normpath(path))
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
        self.openat2 = openat2
        self.opened = False
        self._dirs: Resolver = None  # type: ignore[assignment]  # set by open()
        self._sessions: Sessions | None = None
        self._quota: Quota | None = None
        self._token = ""
        self._usage_seen = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PosixFS:
        if not url.startswith("file://"):
            raise ConfigError(f"not a file:// URL: {url!r}")
        path = unquote(url[len("file://") :])
        if not path.startswith("/"):
            raise ConfigError(f"file:// URLs need an absolute path (file:///abs/path), got {url!r}")
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"<PosixFS {os.fspath(self.base_path)!r}>"

    # ----------------------------------------------------------------- checks
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

    def _check(self, name: str, *, allow_root: bool = False) -> None:
        if not self.opened:
            raise BackendMustBeOpen(f"{self!r} must be opened first")
        check_name(name, allow_root=allow_root)
        if len(name) > MAX_NAME_BYTES // 4 and len(os.fsencode(name)) > MAX_NAME_BYTES:
            raise InvalidName(f"name is longer than {MAX_NAME_BYTES} bytes: {name[:64]!r}...")

    # ----------------------------------------------------------------- lifecycle
    def create(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._check_permission("", "wW")
        try:
            self.base_path.mkdir(parents=True, exist_ok=True)
            if any(self.base_path.iterdir()):
                raise BackendAlreadyExists(f"posixfs storage path is not empty: {self.base_path}")
        except OSError as e:
            raise translate_oserror(e, os.fspath(self.base_path)) from e

    def destroy(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._check_permission("", "D")
        if not self.base_path.is_dir():
            raise BackendDoesNotExist(f"posixfs storage path does not exist: {self.base_path}")
        try:
            fd = os.open(self.base_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for entry in os.listdir(fd):
                    try:
                        remove_tree(fd, entry)
                    except NotADirectoryError:
                        os.unlink(entry, dir_fd=fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise translate_oserror(e, os.fspath(self.base_path)) from e
        try:
            os.rmdir(self.base_path)
        except OSError:
            pass  # e.g. no write permission on the parent: create() accepts an empty directory

    def open(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        if not self.base_path.is_dir():
            raise BackendDoesNotExist(f"posixfs storage path does not exist or is not a directory: {self.base_path}")
        try:
            dirs = Resolver(os.fspath(self.base_path), use_openat2=self.openat2)
        except OSError as e:
            raise translate_oserror(e, os.fspath(self.base_path)) from e
        sessions = Sessions(dirs.root_fd)
        quota = Quota(dirs.root_fd, self.quota_limit) if self.quota_limit is not None else None
        try:

            def repair(live: set[str]) -> None:
                removed = remove_stale_temps(dirs.root_fd, live)
                logger.info("posixfs %s: removed %d stale temp files", self.base_path, removed)

            crashed = sessions.open(repair)
            if quota is not None:
                quota.open(rescan=crashed)
            else:
                _unlink_quietly(QUOTA_FILE, dirs.root_fd)  # stale once the quota is off
        except OSError as e:
            sessions.close()
            dirs.close()
            raise translate_oserror(e, os.fspath(self.base_path)) from e
        except BaseException:
            sessions.close()
            dirs.close()
            raise
        self._dirs, self._sessions, self._quota, self._token = dirs, sessions, quota, sessions.token
        self.opened = True

    def close(self) -> None:
        if not self.opened:
            return
        self.opened = False
        try:
            if self._quota is not None:
                self._usage_seen = self._quota.usage()
                self._quota.close()
            if self._sessions is not None:
                self._sessions.close()
        finally:
            self._dirs.close()
            self._quota = self._sessions = None

    # ----------------------------------------------------------------- directories
    def mkdir(self, name: str) -> None:
        self._check(name, allow_root=True)
        self._check_permission(name, "w")
        if name:
            fd, owned = self._dirs.dir(name, create=True)
            if owned:
                os.close(fd)

    def rmdir(self, name: str) -> None:
        self._check(name)
        self._check_permission(name, "wD")
        parent, _, leaf = name.rpartition("/")
        pfd, owned = self._dirs.dir(parent)
        try:
            os.rmdir(leaf, dir_fd=pfd)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise DirectoryNotEmpty(f"directory not empty: {name!r}") from None
            if e.errno == errno.ENOTDIR:
                raise ObjectNotFound(f"{name!r} is not a directory") from None
            raise os_error(e, name) from e
        finally:
            if owned:
                os.close(pfd)

    # ----------------------------------------------------------------- reading
    def info(self, name: str) -> ItemInfo:
        self._check(name, allow_root=True)
        self._check_permission(name, "lr")
        parent, _, leaf = name.rpartition("/")
        if not name:
            st = os.fstat(self._dirs.root_fd)
            return ItemInfo("", True, st.st_size, True, st.st_atime, st.st_mtime)
        try:
            pfd, owned = self._dirs.dir(parent)
        except (ObjectNotFound, SymlinkRefused):
            return ItemInfo(leaf, False)
        try:
            st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return ItemInfo(leaf, False)
        except OSError as e:
            raise os_error(e, name) from e
        finally:
            if owned:
                os.close(pfd)
        mode = st.st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            return ItemInfo(leaf, True, st.st_size, stat.S_ISDIR(mode), st.st_atime, st.st_mtime)
        return ItemInfo(leaf, False)  # links and special files are not items

    def _open_read(self, name: str) -> tuple[int, int]:
        """An fd of item ``name`` and its size; ObjectNotFound for a directory."""
        self._check(name)
        self._check_permission(name, "r")
        try:
            fd = self._dirs.open(name, os.O_RDONLY)
        except OSError as e:
            raise os_error(e, name) from e
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise ObjectNotFound(f"{name!r} is a directory, not an item")
        return fd, st.st_size

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        fd, total = self._open_read(name)
        try:
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
        except OSError as e:
            raise os_error(e, name) from e
        finally:
            os.close(fd)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        fd, total = self._open_read(name)
        with os.fdopen(fd, "rb") as f:
            start, length = resolve_range(total, offset, size)
            try:
                f.seek(start)
                return copy_stream(f, file, length)
            except OSError as e:
                raise os_error(e, name) from e

    def open_reader(self, name: str) -> BinaryIO:
        return os.fdopen(self._open_read(name)[0], "rb")

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        new_hash(algorithm)  # an unknown algorithm is a ValueError before anything is opened
        with os.fdopen(self._open_read(name)[0], "rb") as f:
            try:
                return hashlib.file_digest(f, lambda: new_hash(algorithm)).hexdigest()  # type: ignore[arg-type]
            except OSError as e:
                raise os_error(e, name) from e

    # ----------------------------------------------------------------- writing
    def _write(self, name: str, write: Callable[[int], int]) -> None:
        """Write a new version of ``name`` through ``write(fd) -> size`` into a temp file, then rename it."""
        self._check(name)
        parent, _, leaf = name.rpartition("/")
        dirs = self._dirs
        pfd, owned = dirs.dir(parent, create=True)
        try:
            if self.permissions:
                self._check_permission(name, "W" if _exists(leaf, pfd) else "wW")
            tmp = f"{leaf}.{self._token}-{_pid:x}-{next(_counter):x}{TMP_SUFFIX}"
            try:
                try:
                    fd = os.open(tmp, _O_TMP, 0o666, dir_fd=pfd)
                except FileNotFoundError:  # the directory was removed after it was opened
                    if owned:
                        os.close(pfd)
                        owned = False
                    pfd, owned = dirs.dir(parent, create=True)
                    fd = os.open(tmp, _O_TMP, 0o666, dir_fd=pfd)
                try:
                    size = write(fd)
                    if self.do_fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                if self._quota is None:
                    os.rename(tmp, leaf, src_dir_fd=pfd, dst_dir_fd=pfd)
                else:
                    self._quota.replace(pfd, tmp, leaf, size, name)
                if self.do_fsync:
                    os.fsync(pfd)
            except BaseException as e:
                _unlink_quietly(tmp, pfd)  # harmless after the rename: the temp name is unique
                if isinstance(e, OSError):
                    raise os_error(e, name, write=True) from e
                raise
        finally:
            if owned:
                os.close(pfd)

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

    def copy(self, src: str, dst: str) -> None:
        with self.open_reader(src) as f:
            self.store_file(dst, f)

    def delete(self, name: str) -> None:
        self._check(name)
        self._check_permission(name, "D")
        parent, _, leaf = name.rpartition("/")
        pfd, owned = self._dirs.dir(parent)
        try:
            if self._quota is None:
                os.unlink(leaf, dir_fd=pfd)
            else:
                self._quota.remove(pfd, leaf)
        except OSError as e:
            raise os_error(e, name) from e
        finally:
            if owned:
                os.close(pfd)

    def move(self, curr_name: str, new_name: str) -> None:
        self._check(curr_name)
        self._check(new_name)
        self._check_permission(curr_name, "D")
        cparent, _, cleaf = curr_name.rpartition("/")
        nparent, _, nleaf = new_name.rpartition("/")
        dirs = self._dirs
        cfd, cowned = dirs.dir(cparent)
        try:
            try:
                st = os.stat(cleaf, dir_fd=cfd, follow_symlinks=False)
            except OSError as e:
                raise os_error(e, curr_name) from e
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"{curr_name!r} is not an item (move moves items, not directories)")
            nfd, nowned = (cfd, False) if nparent == cparent else dirs.dir(nparent, create=True)
            try:
                if self.permissions:
                    self._check_permission(new_name, "W" if _exists(nleaf, nfd) else "wW")
                if curr_name == new_name:
                    return
                try:
                    if self._quota is None:
                        os.rename(cleaf, nleaf, src_dir_fd=cfd, dst_dir_fd=nfd)
                    else:
                        self._quota.move(cfd, cleaf, nfd, nleaf)
                    if self.do_fsync:
                        os.fsync(nfd)
                except OSError as e:
                    if e.errno == errno.ENOENT:
                        raise os_error(e, curr_name) from e
                    raise os_error(e, new_name, write=True) from e
            finally:
                if nowned:
                    os.close(nfd)
        finally:
            if cowned:
                os.close(cfd)

    # ----------------------------------------------------------------- listing
    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check(name, allow_root=True)
        self._check_permission(name, "l")
        fd, owned = self._dirs.dir(name)
        try:
            with os.scandir(fd) as it:
                entries = sorted(
                    (e for e in it if is_listable(e.name) and not e.is_symlink()), key=lambda e: e.name
                )
            infos = []
            for e in entries:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                infos.append(ItemInfo(e.name, True, st.st_size, stat.S_ISDIR(st.st_mode), st.st_atime, st.st_mtime))
        except OSError as e:
            raise os_error(e, name) from e
        finally:
            if owned:
                os.close(fd)
        return iter(infos)

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        self._check(name, allow_root=True)
        self._check_permission(name, "l")
        fd, owned = self._dirs.dir(name)
        return self._walk(fd, owned)

    @staticmethod
    def _walk(fd: int, owned: bool) -> Iterator[ItemInfo]:
        try:
            for rel, _dfd, e in walk_files(fd, visible_only=True):
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield ItemInfo(f"{rel}/{e.name}" if rel else e.name, True, st.st_size, False, st.st_atime, st.st_mtime)
        finally:
            if owned:
                os.close(fd)

    # ----------------------------------------------------------------- quota
    def quota(self) -> dict[str, int]:
        if self.quota_limit is None:
            return {"limit": -1, "usage": -1}
        if self._quota is not None:
            self._usage_seen = self._quota.usage()
        return {"limit": self.quota_limit, "usage": self._usage_seen}


__all__ = ["PosixFS", "MAX_NAME_BYTES", "QUOTA_FILE", "os_error"]
