"""``S3KV``: s3kv 0.1.5's dict-style JSON key/value API on any unistore backend.

Constructed exactly as s3kv constructs it (``S3KV(endpoint, bucket, key_id, secret)``), from a
unistore URL (``S3KV.from_url(url)``) or around any backend (``S3KV(backend=...)``). The layout is
s3kv's (``s3kv/<key>.json``, see :mod:`.codec`), so buckets written by s3kv keep working, in both
directions. Unlike s3kv, the local cache is real (:mod:`.cache`), listing pages and returns user
keys, tags merge, tag search runs concurrently (or on a tag index, :mod:`.tagindex`), keys are
validated before anything is written, and failures are typed :mod:`unistore.errors` errors.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ...backends.base import CHECKSUMS, METADATA, Backend, ObjectMeta, StoreMeta
from ...backends.memory import MemoryBackend
from ...errors import BackendDoesNotExist, ConfigError, InvalidName, ObjectNotFound
from ...layers.stack import wrap_data_layers
from ...url import open_backend
from .cache import Entry, KVCache, default_cache_root
from .capabilities import CapabilityMethods, KeyNotFound
from .codec import ROOT, check_key, decode, encode, key_name, name_key
from .tagindex import TagIndex, listed

log = logging.getLogger("unistore.adapters.s3kv")

_LOCK_STRIPES = 64
_DAY = 86400.0
MTIME_SETTLED = 2.0


def _validator(meta: ObjectMeta) -> dict[str, Any]:
    """What a cache entry is revalidated against: the ETag, else size+mtime. A whole-second mtime (S3's,
    SFTP's) counts only once it lies :data:`MTIME_SETTLED` seconds back: a rewrite within the same
    second would keep both size and mtime."""
    settled = meta.mtime % 1 != 0 or time.time() - meta.mtime >= MTIME_SETTLED
    return {"etag": meta.etag, "size": meta.size, "mtime": meta.mtime if settled else None}


def _innermost(backend: Backend) -> Backend:
    seen: set[int] = set()
    while hasattr(backend, "unwrap") and id(backend) not in seen:
        seen.add(id(backend))
        inner = backend.unwrap()
        if inner is backend:
            break
        backend = inner
    return backend


class S3KV(CapabilityMethods, MutableMapping[str, Any]):
    """A JSON (and bytes) key/value store in ``s3kv/<key>.json`` of a backend. Thread-safe.

    ``cache_ttl``: seconds a cached value is served without asking the backend (default 60);
    ``0`` revalidates on every read (ETag, or size+mtime), ``None`` trusts entries until this
    process changes the key. ``tag_index``: None uses the bucket's tag index if it has one, True
    builds it when missing, False never uses it.
    """

    def __init__(
        self,
        s3_endpoint_url: str | None = None,
        bucket_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        enable_local_cache: bool = True,
        *,
        backend: Backend | None = None,
        cache_ttl: float | None = 60.0,
        cache_dir: str | Path | None = None,
        tag_index: bool | None = None,
        workers: int = 16,
        create: bool = False,
        encryption_key_file: str | os.PathLike[str] | None = None,
        compression: str | None = None,
        **options: Any,
    ) -> None:
        if backend is None:
            if not bucket_name:
                raise ConfigError("S3KV needs a bucket_name (or backend=..., or S3KV.from_url(url))")
            endpoint = (s3_endpoint_url or "").rstrip("/")
            if endpoint and (not endpoint.startswith(("http://", "https://")) or "/" in endpoint.split("://", 1)[1]):
                raise ConfigError(f"s3_endpoint_url must be http(s)://host[:port], not {s3_endpoint_url!r}")
            if aws_access_key_id is not None or aws_secret_access_key is not None:
                options.setdefault("access_key", aws_access_key_id)
                options.setdefault("secret_key", aws_secret_access_key)
            backend = open_backend(f"s3:{endpoint}/{bucket_name}", **options)
        elif s3_endpoint_url or bucket_name or aws_access_key_id or aws_secret_access_key or options:
            raise ConfigError("give either backend=... or the S3 arguments and options, not both")
        if cache_ttl is not None and cache_ttl < 0:
            raise ConfigError(f"cache_ttl must be >= 0 or None, not {cache_ttl!r}")
        if encryption_key_file is not None or compression is not None:
            # values encrypted (and compressed) in the bucket; the local cache keeps plaintext
            backend = wrap_data_layers(backend, encryption_key_file=encryption_key_file, compression=compression)
        self.backend = backend
        self.cache_ttl = cache_ttl
        self.workers = max(1, int(workers))
        self._owns_backend = not backend.opened
        if self._owns_backend:
            try:
                backend.open()
            except BackendDoesNotExist:
                if not create:
                    raise
                backend.create()
                backend.open()
        inner = _innermost(backend)
        # an in-memory backend needs no disk cache (and unnamed spaces could not be told apart)
        self.enable_local_cache = bool(enable_local_cache) and not isinstance(inner, MemoryBackend)
        self.cache: KVCache | None = None
        if self.enable_local_cache:
            self.cache = KVCache(cache_dir if cache_dir is not None else default_cache_root(), repr(inner))
        self._tag_index_mode = tag_index
        self._tag_index: TagIndex | None = None
        self._tag_index_checked = False
        self._index_lock = threading.Lock()
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]
        self._pool_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        enable_local_cache: bool = True,
        cache_ttl: float | None = 60.0,
        cache_dir: str | Path | None = None,
        tag_index: bool | None = None,
        workers: int = 16,
        create: bool = False,
        encryption_key_file: str | os.PathLike[str] | None = None,
        compression: str | None = None,
        **options: Any,
    ) -> S3KV:
        """An S3KV on the backend a unistore URL names (``s3:KEY:SECRET@http://host:port/bucket/prefix``,
        ``file:///path``, ...); ``options`` go to the backend."""
        return cls(
            backend=open_backend(url, **options),
            enable_local_cache=enable_local_cache,
            cache_ttl=cache_ttl,
            cache_dir=cache_dir,
            tag_index=tag_index,
            workers=workers,
            create=create,
            encryption_key_file=encryption_key_file,
            compression=compression,
        )

    def __repr__(self) -> str:
        return f"<S3KV {self.backend!r}>"

    # ----------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop the worker threads and close the backend if this object opened it."""
        with self._pool_lock:
            pool, self._executor = self._executor, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._owns_backend and self.backend.opened:
            self.backend.close()

    def __enter__(self) -> S3KV:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="unistore-s3kv")
            return self._executor

    def _lock(self, key: str) -> threading.Lock:
        return self._locks[zlib.crc32(key.encode("utf-8")) % _LOCK_STRIPES]

    def _map(self, func: Any, items: Iterable[Any]) -> list[Any]:
        items = list(items)
        if len(items) <= 1:
            return [func(i) for i in items]
        return list(self._pool().map(func, items))

    # ----------------------------------------------------------------- values
    def add(self, key: str, value: Any, metadata: Mapping[str, Any] | None = None) -> None:
        """Store ``value`` (any JSON value, or bytes) as ``key``; ``metadata`` becomes the object's user
        metadata (backends with the ``metadata`` capability only)."""
        name = key_name(key)
        data = encode(value, key)
        meta = None
        if metadata:
            self.backend.require(METADATA)
            meta = StoreMeta(content_type="application/json", metadata={str(k): str(v) for k, v in metadata.items()})
        with self._lock(key):
            if self.cache is not None:
                self.cache.bump(key)
            gen = self.cache.generation(key) if self.cache is not None else 0
            if meta is not None:
                self.backend.store_with_meta(name, data, meta)
            else:
                self.backend.store(name, data)
            log.debug("add %r: %d bytes", key, len(data))
            if self.cache is not None:
                # with content checksums (S3: the ETag is the MD5) the written bytes validate themselves
                if not (self.backend.supports(CHECKSUMS) and self.cache.put(key, data, generation=gen)):
                    self.cache.drop(key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, ``default`` if it does not exist (served from the cache per ``cache_ttl``)."""
        t0 = time.perf_counter()
        data = self._load(key)
        if log.isEnabledFor(logging.DEBUG):
            size = "missing" if data is None else f"{len(data)} bytes"
            log.debug("get %r: %s in %.3f ms", key, size, (time.perf_counter() - t0) * 1e3)
        return default if data is None else decode(data, key)

    def _load(self, key: str) -> bytes | None:
        name = key_name(key)
        cache = self.cache
        if cache is None:
            return self._fetch(name)
        gen = cache.generation(key)
        entry = cache.get(key)
        if entry is not None:
            if self.cache_ttl is None or entry.age < self.cache_ttl:
                return entry.data
            return self._revalidate(key, name, entry, gen)
        if self.backend.supports(CHECKSUMS):
            data = self._fetch(name)
            if data is not None:
                cache.put(key, data, generation=gen)
            return data
        try:
            meta = self.backend.stat(name)  # before the load: a change in between only costs a refetch
        except ObjectNotFound:
            return None
        data = self._fetch(name)
        if data is not None:
            cache.put(key, data, **_validator(meta), generation=gen)
        return data

    def _revalidate(self, key: str, name: str, entry: Entry, gen: int) -> bytes | None:
        """The entry's data if the backend's object is still the same, else the object fetched anew."""
        cache = self.cache
        assert cache is not None
        if entry.size is not None and entry.mtime is not None:
            # a settled size+mtime: info() tells without the metadata (S3: a HEAD on the fast engine)
            info = self.backend.info(name)
            if not info.exists or info.directory:
                self._gone(key, gen)
                return None
            if info.size == entry.size and info.mtime == entry.mtime:
                cache.touch(key)
                return entry.data
        try:
            meta = self.backend.stat(name)
        except ObjectNotFound:
            self._gone(key, gen)
            return None
        if entry.matches(meta.etag, meta.checksums, meta.size, meta.mtime):
            validator = _validator(meta)
            if validator["mtime"] is not None and entry.mtime is None:  # from now on size+mtime suffice
                cache.put(key, entry.data, **validator, generation=gen)
            else:
                cache.touch(key)
            return entry.data
        data = self._fetch(name)
        if data is not None:
            cache.put(key, data, **_validator(meta), generation=gen)
        return data

    def _gone(self, key: str, gen: int) -> None:
        """Drop the entry of a key found missing (unless this process wrote it meanwhile)."""
        assert self.cache is not None
        if self.cache.generation(key) == gen:
            self.cache.drop(key)

    def _fetch(self, name: str) -> bytes | None:
        try:
            return self.backend.load(name)
        except ObjectNotFound:
            return None

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if it existed (deleting a missing key is no error, as in s3kv)."""
        name = key_name(key)
        with self._lock(key):
            if self.cache is not None:
                self.cache.bump(key)
            try:
                self.backend.delete(name)
                existed = True
            except ObjectNotFound:
                existed = False
            if self.cache is not None:
                self.cache.drop(key)
        return existed

    def key_exists(self, key: str) -> bool:
        """True if ``key`` exists (a fresh cache entry counts); errors other than absence raise."""
        name = key_name(key)
        if self.cache is not None and self.cache_ttl != 0:
            entry = self.cache.get(key)
            if entry is not None and (self.cache_ttl is None or entry.age < self.cache_ttl):
                return True
        info = self.backend.info(name)
        return info.exists and not info.directory

    exists = key_exists

    def copy_key(self, source_key: str, destination_key: str) -> None:
        """Copy a value to another key (server-side where the backend can)."""
        src, dst = key_name(source_key), key_name(destination_key)
        with self._lock(destination_key):
            if self.cache is not None:
                self.cache.bump(destination_key)
            try:
                self.backend.copy(src, dst)
            except ObjectNotFound:
                raise KeyNotFound(source_key) from None
            finally:
                if self.cache is not None:
                    self.cache.drop(destination_key)

    def merge_keys(self, source_keys: Iterable[str], destination_key: str) -> Any:
        """Store the merge of the source values as ``destination_key`` and return it.

        Dicts merge (later keys win), lists concatenate; missing and empty sources are skipped, as
        in s3kv. Mixing dicts, lists or other values raises TypeError naming the key.
        """
        keys = [check_key(k) for k in source_keys]
        check_key(destination_key)
        merged: Any = None
        for key, value in zip(keys, self._map(self.get, keys), strict=True):
            if not value:
                continue
            if isinstance(value, dict) and (merged is None or isinstance(merged, dict)):
                merged = {**(merged or {}), **value}
            elif isinstance(value, list) and (merged is None or isinstance(merged, list)):
                merged = [*(merged or []), *value]
            else:
                raise TypeError(f"merge_keys: cannot merge the {type(value).__name__} of {key!r} into {merged!r:.60}")
        merged = {} if merged is None else merged
        self.add(destination_key, merged)
        return merged

    def get_key_size(self, key: str) -> int:
        """Size in bytes of the stored value, 0 if the key does not exist (as s3kv documents)."""
        info = self.backend.info(key_name(key))
        return info.size if info.exists and not info.directory else 0

    def get_key_last_updated_time(self, key: str) -> datetime | int:
        """When ``key`` was last written (aware UTC datetime), 0 if it does not exist (as s3kv)."""
        info = self.backend.info(key_name(key))
        if not info.exists or info.directory:
            return 0
        return datetime.fromtimestamp(info.mtime, UTC)

    # ----------------------------------------------------------------- listing
    def _keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        if not isinstance(prefix, str):
            raise ConfigError(f"prefix must be a str, not {type(prefix).__name__}")
        folder = prefix.rpartition("/")[0]
        if folder:
            try:
                check_key(folder + "/x")
            except ValueError:
                return  # no key can have this prefix
        base = f"{ROOT}/{folder}" if folder else ROOT
        for item in listed(self.backend, base):
            key = name_key(f"{folder}/{item.name}" if folder else item.name)
            if key is not None and key.startswith(prefix):
                yield key, item.mtime

    def list_keys(self) -> list[str]:
        """Every key, sorted (all pages; objects outside ``s3kv/*.json`` are not keys)."""
        return sorted(k for k, _ in self._keys())

    def list_keys_with_prefix(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix`` (a user prefix, not s3kv's raw ``s3kv/...``), sorted."""
        return sorted(k for k, _ in self._keys(prefix))

    # ----------------------------------------------------------------- the cache
    def cache_all_keys(self) -> int:
        """Fetch every key into the local cache (concurrently); return how many were cached."""
        if self.cache is None:
            return 0
        cache = self.cache

        def fill(key: str) -> int:
            gen = cache.generation(key)
            name = key_name(key)
            meta = None if self.backend.supports(CHECKSUMS) else self._stat_or_none(name)
            data = self._fetch(name)
            if data is None:
                return 0
            if meta is None:
                return int(cache.put(key, data, generation=gen))
            return int(cache.put(key, data, **_validator(meta), generation=gen))

        return sum(self._map(fill, self.list_keys()))

    def _stat_or_none(self, name: str) -> Any:
        try:
            return self.backend.stat(name)
        except ObjectNotFound:
            return None

    def get_from_cache(self, key: str) -> Any:
        """The cached value of ``key`` without asking the backend; None if not cached (or older than 7 days)."""
        check_key(key)
        if self.cache is None:
            return None
        entry = self.cache.get(key)
        if entry is None:
            return None
        if entry.age > 7 * _DAY:
            self.cache.drop(key)
            return None
        return decode(entry.data, key)

    def clear_cache(self) -> None:
        """Remove this backend's cache entries (other buckets' caches are untouched)."""
        if self.cache is not None:
            self.cache.clear()

    def clear_old_cache(self, max_days: float = 7) -> int:
        """Remove entries not validated for ``max_days`` days; return how many."""
        return self.cache.clear_older_than(max_days * _DAY) if self.cache is not None else 0

    def clear_cache_for_key(self, key: str) -> None:
        """Remove the cache entry of ``key``."""
        check_key(key)
        if self.cache is not None:
            self.cache.drop(key)

    # ----------------------------------------------------------------- MutableMapping
    def __getitem__(self, key: str) -> Any:
        data = self._load(key)
        if data is None:
            raise KeyNotFound(key)
        return decode(data, key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.add(key, value)

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise KeyNotFound(key)

    def __contains__(self, key: object) -> bool:
        try:
            return isinstance(key, str) and self.key_exists(key)
        except InvalidName:
            return False  # no such key can exist

    def __iter__(self) -> Iterator[str]:
        return iter(self.list_keys())

    def __len__(self) -> int:
        return sum(1 for _ in self._keys())

    def clear(self) -> None:
        """Delete every key (concurrently). Not the cache: that is :meth:`clear_cache`."""
        self._map(self.delete, self.list_keys())
