"""Directory file descriptors for posixfs: no path is ever resolved by the kernel from the root down.

Every directory is opened below its parent's descriptor, one segment at a time, with
``O_DIRECTORY | O_NOFOLLOW``, and every file operation then names only the last segment relative to
that descriptor (``dir_fd=``). A symbolic link anywhere on the way is refused, and a directory swapped
for a link after it was checked cannot redirect a later write: the descriptor keeps pointing at the
directory that was checked, there is no gap between check and use.

Opened directories are cached (up to ``limit`` descriptors) and validated on every use, so a
directory renamed away or replaced by a link is noticed at once. Validation is one ``fstat`` of each
ancestor: an entry records the ctime (nanoseconds) its parent had when the entry was last verified by
name and inode. Any change to a directory's entries (rename, unlink, rmdir, symlink, mkdir) sets that
directory's ctime to the current time, and ctime cannot be set by users (unlike mtime), so an
unchanged ctime proves that the entry still names the same directory. Timestamps come from a coarse
clock (one tick, at most 10 ms on Linux): a ctime is trusted only when it lies more than
``TRUST_MARGIN_NS`` before the moment of the check, so a change in the same tick cannot keep it
unchanged; a more recent ctime makes the entry be verified by name (``fstatat``) on each use until
it is old enough. On network filesystems whose server clock runs behind this host's, or whose
attribute cache hides changes, use ``PosixFS(..., dir_cache=0)``: each operation then opens its
directories afresh.

Cached descriptors are never closed while the backend is open (another thread may be using one):
a replaced entry's descriptor is retired and closed by :meth:`DirCache.close`.
"""

from __future__ import annotations

import builtins
import errno
import os
import stat
import threading
import time
from collections.abc import Iterator

from ...errors import ObjectNotFound, PermissionDenied
from ...names import is_listable
from ..oserror import translate_oserror

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TRUST_MARGIN_NS = 20_000_000
UNTRUSTED = -1


class SymlinkRefused(PermissionDenied):
    """A segment of the name is a symbolic link: posixfs never follows links."""


class _Dir:
    __slots__ = ("fd", "name", "parent", "dev", "ino", "seen")

    def __init__(self, fd: int, name: str, parent: _Dir | None, st: os.stat_result, seen: int) -> None:
        self.fd = fd
        self.name = name  # last segment
        self.parent = parent
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.seen = seen  # the parent's ctime_ns when this entry was verified, or UNTRUSTED


def _trusted(ctime_ns: int, checked_at_ns: int) -> int:
    return ctime_ns if ctime_ns < checked_at_ns - TRUST_MARGIN_NS else UNTRUSTED


class DirCache:
    """Validated directory descriptors below one root descriptor. Thread-safe."""

    def __init__(self, root_path: str, limit: int) -> None:
        self.root_fd = os.open(root_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._root = _Dir(self.root_fd, "", None, os.fstat(self.root_fd), 0)
        self._dirs: dict[str, _Dir] = {"": self._root}
        self._retired: builtins.list[int] = []
        self._lock = threading.Lock()
        self.limit = limit

    def close(self) -> None:
        with self._lock:
            fds = [d.fd for d in self._dirs.values()] + self._retired
            self._dirs = {}
            self._retired = []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    # ----------------------------------------------------------------- lookup
    def acquire(self, rel: str, *, create: bool = False) -> tuple[int, bool]:
        """A descriptor of directory ``rel`` ("" is the root) and whether the caller must close it.

        Raises ObjectNotFound if a segment is missing (unless ``create``) or is not a directory, and
        SymlinkRefused if a segment is a symbolic link.
        """
        d = self._dirs.get(rel)
        if d is not None and self._valid(d):
            return d.fd, False
        return self._resolve(rel, create)

    def _valid(self, d: _Dir) -> bool:
        while d.parent is not None:
            if os.fstat(d.parent.fd).st_ctime_ns != d.seen and not self._reverify(d):
                return False
            d = d.parent
        return True

    @staticmethod
    def _reverify(d: _Dir) -> bool:
        assert d.parent is not None
        now = time.time_ns()
        parent_ctime = os.fstat(d.parent.fd).st_ctime_ns
        try:
            st = os.stat(d.name, dir_fd=d.parent.fd, follow_symlinks=False)
        except OSError:
            return False
        if st.st_ino != d.ino or st.st_dev != d.dev:
            return False
        d.seen = _trusted(parent_ctime, now)
        return True

    def _resolve(self, rel: str, create: bool) -> tuple[int, bool]:
        cur = self._root
        owned = False  # cur.fd is a temporary descriptor we must close
        path = ""
        try:
            for seg in rel.split("/"):
                path = f"{path}/{seg}" if path else seg
                cached = self._dirs.get(path)
                if not owned and cached is not None and cached.parent is cur:
                    if os.fstat(cur.fd).st_ctime_ns == cached.seen or self._reverify(cached):
                        cur = cached
                        continue
                now = time.time_ns()
                parent_ctime = os.fstat(cur.fd).st_ctime_ns
                fd = open_child(cur.fd, seg, path, create)
                try:
                    st = os.fstat(fd)
                except BaseException:
                    os.close(fd)
                    raise
                new = _Dir(fd, seg, cur, st, _trusted(parent_ctime, now))
                if owned:  # below a temporary descriptor nothing is cached
                    os.close(cur.fd)
                else:
                    owned = not self._publish(path, new)
                cur = new
        except BaseException:
            if owned:
                os.close(cur.fd)
            raise
        return cur.fd, owned

    def _publish(self, path: str, new: _Dir) -> bool:
        with self._lock:
            old = self._dirs.get(path)
            if old is None and (len(self._dirs) >= self.limit or len(self._retired) >= self.limit):
                return False
            if old is not None:
                self._retired.append(old.fd)
            self._dirs[path] = new
            return True

    def forget(self, rel: str) -> None:
        """Drop the cached entries of ``rel`` and below (after rmdir or a failed use)."""
        if not rel:
            return
        prefix = rel + "/"
        with self._lock:
            for key in [k for k in self._dirs if k == rel or k.startswith(prefix)]:
                self._retired.append(self._dirs.pop(key).fd)


def open_child(parent_fd: int, seg: str, path: str, create: bool) -> int:
    """Open directory ``seg`` below ``parent_fd`` without following links (``path`` for messages)."""
    try:
        return os.open(seg, O_DIR, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            raise ObjectNotFound(f"directory {path!r} does not exist") from None
    except NotADirectoryError:
        raise not_a_directory(parent_fd, seg, path) from None
    except OSError as e:
        raise translate_oserror(e, path) from e
    try:
        os.mkdir(seg, 0o777, dir_fd=parent_fd)
    except FileExistsError:
        pass
    except OSError as e:
        raise translate_oserror(e, path) from e
    try:
        return os.open(seg, O_DIR, dir_fd=parent_fd)
    except FileNotFoundError:
        raise ObjectNotFound(f"directory {path!r} vanished while it was created") from None
    except NotADirectoryError:
        raise not_a_directory(parent_fd, seg, path) from None
    except OSError as e:
        raise translate_oserror(e, path) from e


def not_a_directory(parent_fd: int, seg: str, path: str) -> PermissionDenied | ObjectNotFound:
    try:
        is_link = stat.S_ISLNK(os.stat(seg, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        is_link = False
    if is_link:
        return SymlinkRefused(f"{path!r} is a symbolic link; posixfs never follows links")
    return ObjectNotFound(f"{path!r} is an item, not a directory")


def _sort_key(e: os.DirEntry[str]) -> str:
    # directories sort as "name/": a depth-first walk then yields full names in lexicographic order
    return e.name + "/" if e.is_dir(follow_symlinks=False) else e.name


def _entries(fd: int, visible_only: bool) -> builtins.list[os.DirEntry[str]]:
    with os.scandir(fd) as it:
        entries = [e for e in it if not e.is_symlink() and (not visible_only or is_listable(e.name))]
    entries.sort(key=_sort_key)
    return entries


def walk_files(start_fd: int, *, visible_only: bool) -> Iterator[tuple[str, int, os.DirEntry[str]]]:
    """Yield ``(relative directory, its fd, entry)`` for every regular file below ``start_fd``.

    Depth first, without recursion and without following links; files come in lexicographic order
    of their full relative names. The fd is open until the next item is requested. With
    ``visible_only``, temp and hidden entries (and all below a hidden directory) are left out.
    """
    stack: builtins.list[tuple[int, str, builtins.list[os.DirEntry[str]], int]] = []
    try:
        stack.append((start_fd, "", _entries(start_fd, visible_only), 0))
        while stack:
            fd, rel, entries, i = stack[-1]
            if i == len(entries):
                stack.pop()
                if fd != start_fd:
                    os.close(fd)
                continue
            stack[-1] = (fd, rel, entries, i + 1)
            e = entries[i]
            if e.is_dir(follow_symlinks=False):
                try:
                    sub = os.open(e.name, O_DIR, dir_fd=fd)
                except OSError as err:
                    if err.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue  # removed or replaced while we were walking
                    raise
                try:
                    sub_entries = _entries(sub, visible_only)
                except BaseException:
                    os.close(sub)
                    raise
                stack.append((sub, f"{rel}/{e.name}" if rel else e.name, sub_entries, 0))
            elif e.is_file(follow_symlinks=False):
                yield rel, fd, e
    finally:
        for fd, *_ in stack:
            if fd != start_fd:
                os.close(fd)


def remove_tree(parent_fd: int, name: str) -> None:
    """Remove directory ``name`` below ``parent_fd`` and everything in it, without recursion or links."""
    stack: builtins.list[tuple[int, int, str]] = []  # (fd of dir, fd of its parent, its name)
    stack.append((os.open(name, O_DIR, dir_fd=parent_fd), parent_fd, name))
    try:
        while stack:
            fd, pfd, seg = stack[-1]
            descended = False
            with os.scandir(fd) as it:
                entries = list(it)
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append((os.open(e.name, O_DIR, dir_fd=fd), fd, e.name))
                    descended = True
                    break
                os.unlink(e.name, dir_fd=fd)
            if descended:
                continue
            stack.pop()
            os.close(fd)
            os.rmdir(seg, dir_fd=pfd)
    finally:
        for fd, *_ in stack:
            os.close(fd)
