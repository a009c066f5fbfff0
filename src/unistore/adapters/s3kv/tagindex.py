"""A tag index in the bucket, so that finding keys by tag does not ask S3 once per object.

S3 has no tag search: without an index, ``find_keys_by_tag_value`` lists ``s3kv/`` and fetches
every object's tags concurrently. With the index, each tag ``k=v`` of key ``key`` is also an empty
marker object::

    s3kv-index/tags/=<k>/=<v>/=<key>          (each part percent-quoted, dots included)

and a search is one listing of ``s3kv-index/tags/=<k>/=<v>/`` plus, beside it, one listing of
``s3kv/`` (1,000 names per request; for up to 32 marked keys one HEAD each instead). A marker is
trusted only while its object was not rewritten after it was tagged (S3 drops an object's tags
when it is overwritten): the object's LastModified must be earlier than the marker's; when both
fall in the same second the object's tags are fetched to decide. Deleted keys drop out because
they are missing from the listing.

The index is present when ``s3kv-index/enabled`` exists; every unistore process then keeps it up
to date when it tags. Tags written by other tools (s3kv 0.1.5, the AWS console) do not reach the
index: :meth:`TagIndex.rebuild` re-reads every object's tags. None of these names end in
``.json``, so s3kv 0.1.5 never takes them for keys.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor

from ...backends.base import Backend, ItemInfo
from ...errors import ObjectNotFound
from .codec import ROOT, key_name, name_key

INDEX_ROOT = "s3kv-index"
TAGS_DIR = f"{INDEX_ROOT}/tags"
ENABLED = f"{INDEX_ROOT}/enabled"
FEW = 32  # up to this many marked keys are looked up one by one rather than by listing s3kv/


def segment(text: str) -> str:
    """One name segment for any string: ``=`` plus its percent-quoting (no ``/``, no dots)."""
    return "=" + urllib.parse.quote(text, safe="").replace(".", "%2E")


def unsegment(seg: str) -> str:
    return urllib.parse.unquote(seg[1:])


def marker(tag: str, value: str, key: str) -> str:
    return f"{TAGS_DIR}/{segment(tag)}/{segment(value)}/{segment(key)}"


def listed(backend: Backend, name: str) -> Iterator[ItemInfo]:
    """list_recursive of ``name``, empty when it does not exist."""
    try:
        yield from backend.list_recursive(name)
    except ObjectNotFound:
        return


class TagIndex:
    """Markers for the tags of the keys of one backend (see the module docstring)."""

    def __init__(self, backend: Backend, pool: Callable[[], ThreadPoolExecutor]) -> None:
        self.backend = backend
        self._pool = pool

    def present(self) -> bool:
        return self.backend.info(ENABLED).exists

    def record(self, key: str, old: Mapping[str, str], new: Mapping[str, str]) -> None:
        """Markers after the tags of ``key`` changed from ``old`` to ``new`` (new ones re-stamped)."""
        gone = [marker(k, v, key) for k, v in old.items() if new.get(k) != v]
        if gone:
            self.backend.delete_many(gone, missing_ok=True)
        self.backend.store_many([(marker(k, v, key), b"") for k, v in new.items()])

    def forget(self, keys: Iterable[str], tags: Mapping[str, str]) -> None:
        """Drop the markers of ``tags`` for ``keys`` (after they were deleted)."""
        self.backend.delete_many([marker(k, v, key) for key in keys for k, v in tags.items()], missing_ok=True)

    def find(self, tag: str, value: str | None) -> list[str]:
        """Keys whose tag ``tag`` equals ``value`` (or exists, for None), checked against the objects.

        The listing of ``s3kv/`` runs beside the listing of the markers; when only a few keys are
        marked, it is stopped and those keys are looked up one by one instead.
        """
        base = f"{TAGS_DIR}/{segment(tag)}" + (f"/{segment(value)}" if value is not None else "")
        stop = threading.Event()
        pool = self._pool()
        all_objects = pool.submit(self._object_mtimes, stop)
        candidates: dict[str, float] = {}
        try:
            for item in listed(self.backend, base):
                parts = item.name.split("/")
                if len(parts) != (1 if value is not None else 2):
                    continue
                key = unsegment(parts[-1])
                candidates[key] = max(candidates.get(key, 0.0), item.mtime)
        finally:
            if len(candidates) <= FEW:
                stop.set()
        if not candidates:
            return []
        if len(candidates) <= FEW:
            mtimes = zip(candidates, pool.map(self._mtime, candidates), strict=True)
            objects = {k: m for k, m in mtimes if m is not None}
        else:
            objects = all_objects.result()
        found: list[str] = []
        unsure: list[str] = []
        for key, marked in candidates.items():
            written = objects.get(key)
            if written is None or written > marked:
                continue  # deleted, or rewritten (and so untagged) after it was tagged
            (found if written < marked else unsure).append(key)

        def check(key: str) -> str | None:
            try:
                tags = self.backend.get_tags(key_name(key))
            except ObjectNotFound:
                return None
            return key if tag in tags and (value is None or tags[tag] == value) else None

        found += [k for k in pool.map(check, unsure) if k is not None]
        return sorted(found)

    def _object_mtimes(self, stop: threading.Event) -> dict[str, float]:
        objects: dict[str, float] = {}
        for item in listed(self.backend, ROOT):
            if stop.is_set():
                break
            key = name_key(item.name)
            if key is not None:
                objects[key] = item.mtime
        return objects

    def _mtime(self, key: str) -> float | None:
        info = self.backend.info(key_name(key))
        return info.mtime if info.exists and not info.directory else None

    def rebuild(self, tags_of: Callable[[str], dict[str, str]], keys: list[str]) -> int:
        """Drop every marker, write one per tag of every key (tags read concurrently); return the count."""
        old = [f"{TAGS_DIR}/{item.name}" for item in listed(self.backend, TAGS_DIR)]
        self.backend.delete_many(old, missing_ok=True)
        markers = [
            (marker(k, v, key), b"")
            for key, tags in zip(keys, self._pool().map(tags_of, keys), strict=True)
            for k, v in tags.items()
        ]
        self.backend.store_many(markers)
        self.backend.store(ENABLED, b"")
        return len(markers)

    def drop(self) -> None:
        """Remove the index (markers and the switch)."""
        with_switch = [f"{INDEX_ROOT}/{item.name}" for item in listed(self.backend, INDEX_ROOT)]
        self.backend.delete_many(with_switch, missing_ok=True)
