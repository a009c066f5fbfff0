"""Resolving names below the root of posixfs without ever following a link.

Every name is resolved relative to the root's file descriptor, and every file operation names only
its last segment relative to a descriptor of its directory (``dir_fd=``), so a directory swapped for
a symbolic link between a check and a use cannot redirect anything: the check *is* the open.

On Linux >= 5.6 one ``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` call resolves a whole name
(the kernel refuses any link and any escape on the way); elsewhere (or where a seccomp policy hides
``openat2``) the name is walked one segment at a time with ``O_DIRECTORY | O_NOFOLLOW``. Both give
the same errnos: ELOOP for a link anywhere, ENOTDIR for an item where a directory is needed,
ENOENT for a missing segment. Directories are created the same segment-wise way. Nothing is cached,
so there is nothing to validate.
"""

from __future__ import annotations

import builtins
import ctypes
import errno
import os
import stat
import sys
from collections.abc import Iterator

from ...errors import NameConflict, ObjectNotFound, PermissionDenied
from ...names import is_listable
from ..oserror import translate_oserror

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_SYS_OPENAT2 = ctypes.c_long(437)  # the same number on every Linux architecture
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW_SIZE = ctypes.c_long(ctypes.sizeof(_OpenHow))
_ENCODING = sys.getfilesystemencoding()


def _load_openat2() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syscall
    except (OSError, AttributeError):
        return None
    # no argtypes (their conversion costs more than the call); the variadic long arguments are
    # passed as c_long constants, the descriptor as an int (the kernel reads an int)
    how = _OpenHow(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
    fd = func(_SYS_OPENAT2, -100, b".", ctypes.byref(how), _HOW_SIZE)  # AT_FDCWD
    if fd < 0:
        return None  # ENOSYS (old kernel, not Linux) or EPERM (seccomp)
    os.close(fd)
    return func


_openat2 = _load_openat2() if hasattr(os, "O_PATH") else None
_RESOLVE = _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
_HOWS: dict[tuple[int, int], object] = {}  # (flags, mode) -> pointer to a struct open_how
_HOW_DIR = ctypes.byref(_OpenHow(os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE))


class SymlinkRefused(PermissionDenied):
    """A segment of the name is a symbolic link: posixfs never follows links."""


class Resolver:
    """Opens names below one root descriptor without following links. Thread-safe (stateless)."""

    def __init__(self, root_path: str, *, use_openat2: bool = True) -> None:
        self.root_fd = os.open(root_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.openat2 = _openat2 if use_openat2 else None

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def open(self, rel: str, flags: int, mode: int = 0o666) -> int:
        """``os.open`` of ``rel`` below the root, refusing links (OSError ELOOP) and escapes."""
        func = self.openat2
        if func is not None:
            how = _HOWS.get((flags, mode))
            if how is None:
                how = _HOWS[(flags, mode)] = ctypes.byref(
                    # no O_NOFOLLOW: with O_DIRECTORY it turns a final link into ENOTDIR, while
                    # RESOLVE_NO_SYMLINKS refuses it (and any other link) with ELOOP
                    _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, _RESOLVE)
                )
            path = rel.encode(_ENCODING, "surrogateescape")
            for _ in range(16):
                fd: int = func(_SYS_OPENAT2, self.root_fd, path, how, _HOW_SIZE)
                if fd >= 0:
                    return fd
                code = ctypes.get_errno()
                if code not in (errno.EAGAIN, errno.EINTR):  # EAGAIN: a concurrent rename, retry
                    break
            raise OSError(code, os.strerror(code), rel)
        parent, _, leaf = rel.rpartition("/")
        pfd = self._walk(parent, create=False) if parent else self.root_fd
        try:
            try:
                return os.open(leaf, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd)
            except OSError as e:
                if e.errno == errno.ENOTDIR and _is_link(pfd, leaf):
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel) from None
                raise
        finally:
            if pfd != self.root_fd:
                os.close(pfd)

    def _walk(self, rel: str, *, create: bool) -> int:
        fd = self.root_fd
        try:
            for seg in rel.split("/"):
                try:
                    sub = os.open(seg, O_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(seg, 0o777, dir_fd=fd)
                    except FileExistsError:
                        pass
                    sub = os.open(seg, O_DIR, dir_fd=fd)
                except NotADirectoryError:
                    if _is_link(fd, seg):
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel) from None
                    raise
                if fd != self.root_fd:
                    os.close(fd)
                fd = sub
        except BaseException:
            if fd != self.root_fd:
                os.close(fd)
            raise
        return fd

    def dir(self, rel: str, *, create: bool = False) -> tuple[int, bool]:
        """A descriptor of directory ``rel`` ("" is the root) and whether the caller must close it.

        Typed errors: ObjectNotFound if a segment is missing (unless ``create``) or is an item,
        SymlinkRefused if a segment is a link.
        """
        if not rel:
            return self.root_fd, False
        func = self.openat2
        if func is not None:  # the common case, inlined: one call, no dictionary
            fd: int = func(_SYS_OPENAT2, self.root_fd, rel.encode(_ENCODING, "surrogateescape"), _HOW_DIR, _HOW_SIZE)
            if fd >= 0:
                return fd, True
        try:
            try:
                return self.open(rel, os.O_RDONLY | os.O_DIRECTORY), True
            except FileNotFoundError:
                if not create:
                    raise
                return self._walk(rel, create=True), True
        except OSError as e:
            raise dir_error(e, rel, create) from None


def _is_link(dir_fd: int, seg: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(seg, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def dir_error(e: OSError, rel: str, write: bool) -> Exception:
    """The contract's error for directory ``rel``: an item in the way is NameConflict when writing
    (a directory would be needed there) and ObjectNotFound when looking something up."""
    if e.errno == errno.ELOOP:
        return SymlinkRefused(f"a segment of {rel!r} is a symbolic link; posixfs never follows links")
    if e.errno == errno.ENOENT:
        return ObjectNotFound(f"directory {rel!r} does not exist")
    if e.errno == errno.ENOTDIR:
        words = f"{rel!r}: an item stands where a directory is needed"
        return NameConflict(words) if write else ObjectNotFound(words)
    return translate_oserror(e, rel)


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
