"""The s3kv methods that need a backend capability: tags (merge, search, the tag index) and object
lock (retention, legal hold). Mixed into :class:`~unistore.adapters.s3kv.S3KV`; on a backend without
the capability each raises ``CapabilityNotSupported`` naming the backend."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ...backends.base import OBJECT_LOCK, TAGS, Backend
from ...errors import BackendError, ObjectNotFound
from .codec import ROOT, key_name, name_key, raw_or_key
from .tagindex import TagIndex


class KeyNotFound(ObjectNotFound, KeyError):
    """The s3kv key does not exist (a ``KeyError`` as well, for ``kv[key]``)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"s3kv key not found: {self.key!r}"


class CapabilityMethods:
    """Tags and object lock on ``s3kv/<key>.json`` (see the module docstring)."""

    backend: Backend
    _tag_index_mode: bool | None
    _tag_index: TagIndex | None
    _tag_index_checked: bool
    _index_lock: threading.Lock

    if TYPE_CHECKING:  # provided by S3KV

        def _pool(self) -> ThreadPoolExecutor: ...
        def _map(self, func: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]: ...
        def list_keys(self) -> list[str]: ...
        def list_keys_with_prefix(self, prefix: str) -> list[str]: ...
        def delete(self, key: str) -> bool: ...

    def _index(self) -> TagIndex | None:
        """The bucket's tag index, if in use (looked up once; built here with ``tag_index=True``)."""
        if self._tag_index_mode is False:
            return None
        with self._index_lock:
            if not self._tag_index_checked:
                index = TagIndex(self.backend, self._pool)
                if index.present():
                    self._tag_index = index
                elif self._tag_index_mode:
                    self._rebuild_index(index)
                self._tag_index_checked = True
        return self._tag_index

    def tag_key(self, key: str, tags: Mapping[str, str | None]) -> dict[str, str]:
        """Merge ``tags`` into the key's tags (a None value removes that tag); return the new tags."""
        name = key_name(key)
        self.backend.require(TAGS)
        clean = {str(k): (None if v is None else str(v)) for k, v in tags.items()}
        index = self._index()
        try:
            if index is None:
                return self.backend.update_tags(name, clean)
            old = self.backend.get_tags(name)
            new = self.backend.update_tags(name, clean)
            index.record(key, old, new)
            return new
        except ObjectNotFound:
            raise KeyNotFound(key) from None

    def tag_keys_with_prefix(self, prefix: str, tags: Mapping[str, str | None]) -> int:
        """Merge ``tags`` into every key starting with ``prefix`` (concurrently); return how many."""
        self.backend.require(TAGS)
        self._index()  # settled here, not in each worker
        return len(self._map(lambda k: self.tag_key(k, tags), self.list_keys_with_prefix(prefix)))

    def get_tags(self, key: str) -> dict[str, str]:
        """The tags of ``key`` (s3kv's raw form ``s3kv/<key>.json`` is accepted too)."""
        key = raw_or_key(key)
        name = key_name(key)
        self.backend.require(TAGS)
        try:
            return self.backend.get_tags(name)
        except ObjectNotFound:
            raise KeyNotFound(key) from None

    def find_keys_by_tag_value(self, tag_key: str, tag_value: str | None = None) -> list[str]:
        """Keys whose tag ``tag_key`` equals ``tag_value`` (has the tag at all, for None), sorted."""
        self.backend.require(TAGS)
        index = self._index()
        if index is not None:
            return index.find(tag_key, tag_value)
        keys = []
        for name in self.backend.find_by_tag(tag_key, tag_value, prefix=ROOT):
            key = name_key(name[len(ROOT) + 1 :]) if name.startswith(ROOT + "/") else None
            if key is not None:
                keys.append(key)
        return sorted(keys)

    def delete_by_tag(self, tag_key: str, tag_value: str | None = None) -> int:
        """Delete every key found by :meth:`find_keys_by_tag_value` (concurrently); return how many."""
        keys = self.find_keys_by_tag_value(tag_key, tag_value)
        deleted = sum(self._map(self.delete, keys))
        index = self._index()
        if index is not None and tag_value is not None:
            index.forget(keys, {tag_key: tag_value})  # the markers searched for, not left behind
        return deleted

    def rebuild_tag_index(self) -> int:
        """(Re)build the bucket's tag index from every key's tags and turn it on; return the marker count.

        Needed once for a bucket tagged by other tools (s3kv 0.1.5); every unistore process then
        keeps it current. See :mod:`.tagindex`.
        """
        self.backend.require(TAGS)
        with self._index_lock:
            count = self._rebuild_index(TagIndex(self.backend, self._pool))
            self._tag_index_checked = True
        return count

    def _rebuild_index(self, index: TagIndex) -> int:
        def tags_of(key: str) -> dict[str, str]:
            try:
                return self.backend.get_tags(key_name(key))
            except ObjectNotFound:
                return {}

        count = index.rebuild(tags_of, self.list_keys())
        self._tag_index = index
        return count

    def drop_tag_index(self) -> None:
        """Remove the tag index; searches scan again."""
        self.backend.require(TAGS)
        with self._index_lock:
            TagIndex(self.backend, self._pool).drop()
            self._tag_index, self._tag_index_checked = None, True

    # ----------------------------------------------------------------- object lock
    def _locked(self, key: str, op: str, *args: Any) -> Any:
        name = key_name(key)
        self.backend.require(OBJECT_LOCK)
        try:
            return getattr(self.backend, op)(name, *args)
        except ObjectNotFound:
            raise KeyNotFound(key) from None
        except BackendError:
            # some services (SeaweedFS) answer a lock call on a missing object with a 500
            if not self.backend.info(name).exists:
                raise KeyNotFound(key) from None
            raise

    def place_retention_lock(self, key: str, retention_days: float) -> datetime:
        """Lock ``key`` against deletion and overwrite for ``retention_days`` days (GOVERNANCE mode);
        return the time the lock ends."""
        until = datetime.now(UTC) + timedelta(days=retention_days)
        self._locked(key, "set_retention", "GOVERNANCE", until)
        return until

    def get_retention_lock(self, key: str) -> tuple[str, datetime] | None:
        """``(mode, until)`` of the key's retention lock, None if it has none."""
        return self._locked(key, "get_retention")  # type: ignore[no-any-return]

    def remove_retention_lock(self, key: str) -> None:
        """Remove the key's (GOVERNANCE) retention lock."""
        self._locked(key, "clear_retention")

    def apply_legal_hold(self, key: str) -> None:
        """Put ``key`` under legal hold."""
        self._locked(key, "set_legal_hold", True)

    def is_legal_hold_applied(self, key: str) -> bool:
        """True if ``key`` is under legal hold."""
        return bool(self._locked(key, "get_legal_hold"))

    def release_legal_hold(self, key: str) -> None:
        """Release the legal hold of ``key``."""
        self._locked(key, "set_legal_hold", False)
