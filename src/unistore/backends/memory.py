"""``memory://``: a process-local backend, for tests and caches.

Directories are explicit (like a filesystem), so the backend behaves like posixfs: storing an item
creates its parent directories; listing a missing directory raises ObjectNotFound; an item and a
directory never share a name. memory is the reference of the error contract (docs/usage.md).
Named stores (``memory://name``) are shared by every backend opened with the same name in this
process; ``memory://`` alone is private to the instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from ..errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendMustNotBeOpen,
    DirectoryNotEmpty,
    NameConflict,
    ObjectNotFound,
)
from ..names import is_listable
from .base import Backend, ItemInfo, Value, as_bytes_view, resolve_range


class _Space:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.items: dict[str, tuple[bytes, float]] = {}
        self.dirs: set[str] = {""}


class MemoryBackend(Backend):
    """Keeps items in a dict; thread-safe through one lock per space."""

    schemes = ("memory",)
    _named: ClassVar[dict[str, _Space | None]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str = "") -> None:
        self.space_name = name
        self._space: _Space | None = None
        self.opened = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryBackend:
        return cls(url.partition("://")[2].strip("/"), **options)

    def __repr__(self) -> str:
        return f"<MemoryBackend {self.space_name!r}>"

    # a named space lives in the class registry, an unnamed one on the instance
    def _get_space(self) -> _Space | None:
        if self.space_name:
            return self._named.get(self.space_name)
        return self._space

    def _set_space(self, space: _Space | None) -> None:
        if self.space_name:
            with self._named_lock:
                self._named[self.space_name] = space
        else:
            self._space = space

    def create(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        space = self._get_space()
        if space is not None and (space.items or len(space.dirs) > 1):
            raise BackendAlreadyExists(f"memory store {self.space_name!r} exists and is not empty")
        self._set_space(_Space())

    def destroy(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        if self._get_space() is None:
            raise BackendDoesNotExist(f"memory store {self.space_name!r} does not exist")
        self._set_space(None)

    def open(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        if self._get_space() is None:
            raise BackendDoesNotExist(f"memory store {self.space_name!r} does not exist")
        self.opened = True

    def close(self) -> None:
        self.opened = False

    @property
    def space(self) -> _Space:
        self._check_open()
        space = self._get_space()
        if space is None:
            raise BackendDoesNotExist(f"memory store {self.space_name!r} was destroyed")
        return space

    @staticmethod
    def _add_dirs(space: _Space, name: str) -> None:
        """Create directory ``name`` and its parents; NameConflict if an item stands in the way.

        Call with the space's lock held.
        """
        if not name or name in space.dirs:
            return
        parts = name.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        for prefix in prefixes:
            if prefix in space.items:
                raise NameConflict(f"{prefix!r} is an item, not a directory")
        space.dirs.update(prefixes)

    def mkdir(self, name: str) -> None:
        name = self._name(name, allow_root=True)
        space = self.space
        with space.lock:
            self._add_dirs(space, name)

    def rmdir(self, name: str) -> None:
        name = self._name(name)
        space = self.space
        with space.lock:
            if name not in space.dirs:
                raise ObjectNotFound(name)
            prefix = name + "/"
            if any(k.startswith(prefix) for k in space.items) or any(d.startswith(prefix) for d in space.dirs):
                raise DirectoryNotEmpty(f"directory not empty: {name!r}")
            space.dirs.discard(name)

    def info(self, name: str) -> ItemInfo:
        name = self._name(name, allow_root=True)
        space = self.space
        base = name.rsplit("/", 1)[-1]
        with space.lock:
            entry = space.items.get(name)
            if entry is not None:
                return ItemInfo(base, True, len(entry[0]), False, 0, entry[1])
            if name in space.dirs:
                return ItemInfo(base, True, 0, True)
        return ItemInfo(base, False)

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        name = self._name(name)
        entry = self.space.items.get(name)
        if entry is None:
            raise ObjectNotFound(name)
        data = entry[0]
        if offset == 0 and size is None:
            return data
        start, length = resolve_range(len(data), offset, size)
        return data[start : start + length]

    def store(self, name: str, value: Value) -> None:
        name = self._name(name)
        data = bytes(as_bytes_view(value))
        space = self.space
        with space.lock:
            if name in space.dirs:
                raise NameConflict(f"{name!r} is a directory, not an item")
            self._add_dirs(space, name.rpartition("/")[0])
            space.items[name] = (data, time.time())

    def delete(self, name: str) -> None:
        name = self._name(name)
        space = self.space
        with space.lock:
            if space.items.pop(name, None) is None:
                raise ObjectNotFound(name)

    def move(self, curr_name: str, new_name: str) -> None:
        curr_name = self._name(curr_name)
        new_name = self._name(new_name)
        space = self.space
        with space.lock:
            entry = space.items.get(curr_name)
            if entry is None:
                raise ObjectNotFound(curr_name)
            if new_name in space.dirs:
                raise NameConflict(f"{new_name!r} is a directory, not an item")
            self._add_dirs(space, new_name.rpartition("/")[0])
            del space.items[curr_name]
            space.items[new_name] = entry

    @staticmethod
    def _dir_prefix(space: _Space, name: str) -> str:
        """The prefix of the items in directory ``name``; call with the space's lock held."""
        if name not in space.dirs:
            raise ObjectNotFound(name)
        return name + "/" if name else ""

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        name = self._name(name, allow_root=True)
        space = self.space
        with space.lock:
            prefix = self._dir_prefix(space, name)
            found = [
                ItemInfo(k[len(prefix) :], True, len(data), False, 0, mtime)
                for k, (data, mtime) in space.items.items()
                if k.startswith(prefix) and is_listable(k.rpartition("/")[2])
            ]
        found.sort(key=lambda i: i.name)
        return iter(found)

    def list(self, name: str) -> Iterator[ItemInfo]:
        name = self._name(name, allow_root=True)
        space = self.space
        with space.lock:
            prefix = self._dir_prefix(space, name)
            entries: dict[str, ItemInfo] = {}
            for d in space.dirs:
                if d and d.startswith(prefix) and "/" not in d[len(prefix) :]:
                    entries[d[len(prefix) :]] = ItemInfo(d[len(prefix) :], True, 0, True)
            for k, (data, mtime) in space.items.items():
                if k.startswith(prefix) and "/" not in k[len(prefix) :]:
                    entries[k[len(prefix) :]] = ItemInfo(k[len(prefix) :], True, len(data), False, 0, mtime)
        for key in sorted(entries):
            if is_listable(key):
                yield entries[key]
