"""CacheLayer: borgstore 0.7's namespace cache, as a layer over the primary backend.

Namespaces configure it (``{"packs/": {"levels": [1], "cache": "writethrough", "size": N,
"max_age": S}}``) and the Store builds the layer with the cache backend (``cache_url`` or
``cache_backend``). The modes are borgstore's:

- ``writethrough``: stores, deletes and moves go to the backend and then the cache; a load (full or
  partial) is served from the cache when it holds the item, else the whole item is loaded from the
  backend, put into the cache, and the range returned.
- ``mirror``: the cache is kept up to date the same way, but loads always read the backend (and
  refresh the cache): a warm copy for another client, or for later.
- ``off`` (the default): no cache.

``info``, ``list`` and ``hash`` always ask the backend, as in borgstore. A namespace with ``size``
(bytes) or ``max_age`` (seconds since the last use) keeps an in-memory LRU index, so eviction never
lists the cache per operation: the cache namespace is scanned once at open and at close, and again
in small time-boxed steps after this client has inserted a quarter of ``size``, to learn what other
clients sharing the cache added, used or evicted.

Unlike borgstore, a cache entry is verified: it is stored in frames of 64 KiB, each with a 16-byte
BLAKE2b digest keyed by the item's name, so a damaged, truncated or misplaced entry is detected,
removed and read from the backend instead (with a warning), never returned. A cache that cannot be
opened disables itself with a warning; a failing cache operation falls back to the backend.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import IO, Any, NamedTuple

from ..backends.base import Backend, ItemInfo, StoreMeta, Value, as_bytes_view, resolve_range
from ..backends.capabilities import CHECKSUMS, METADATA, OBJECT_LOCK, SERVER_SIDE_COPY, SSE_C, STORAGE_CLASS, TAGS
from ..errors import BackendDoesNotExist, ConfigError, IntegrityError, ObjectNotFound
from ..names import DEL_SUFFIX
from .base import Layer

logger = logging.getLogger("unistore.layers.cache")

RESCAN_DIVISOR = 4  # rescan after inserting size / RESCAN_DIVISOR bytes (borgstore's rule)
SCAN_STEP_TIME = 0.005  # seconds a store spends continuing a scan in steps
FRAME_DATA = 64 * 1024
DIGEST = 16
FRAME = FRAME_DATA + DIGEST


class CacheMode(enum.Enum):
    OFF = "off"
    MIRROR = "mirror"
    WRITETHROUGH = "writethrough"

    @classmethod
    def parse(cls, value: object) -> CacheMode:
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        raise ConfigError(f"unknown cache mode {value!r}: use off, mirror or writethrough")


class CachePolicy(NamedTuple):
    mode: CacheMode
    max_age: float | None = None
    size: int | None = None

    @classmethod
    def from_config(cls, namespace: str, ns_config: Mapping[str, Any]) -> CachePolicy:
        mode = CacheMode.parse(ns_config.get("cache", "off"))
        max_age = ns_config.get("max_age")
        if max_age is not None and (not isinstance(max_age, int | float) or isinstance(max_age, bool) or max_age < 0):
            raise ConfigError(f"'max_age' of namespace {namespace!r} must be a number >= 0, not {max_age!r}")
        size = ns_config.get("size")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise ConfigError(f"'size' of namespace {namespace!r} must be an int >= 0, not {size!r}")
        return cls(mode, None if max_age is None else float(max_age), size)


# ----------------------------------------------------------------- verified entry format
def framed_size(value_size: int) -> int:
    return value_size + DIGEST * max(1, -(-value_size // FRAME_DATA))


def value_size(stored: int) -> int | None:
    full, rest = divmod(stored, FRAME)
    if rest == 0:
        return full * FRAME_DATA if full else None
    return None if rest < DIGEST else full * FRAME_DATA + rest - DIGEST


def _key(name: str) -> bytes:
    # keyed by the name without the soft-delete suffix, so soft delete and undelete stay renames
    return hashlib.blake2b(name.removesuffix(DEL_SUFFIX).encode(), digest_size=32).digest()


def _digest(key: bytes, index: int, data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=DIGEST, key=key, salt=index.to_bytes(16, "big")).digest()


def frame_value(name: str, value: Value) -> bytes:
    view = as_bytes_view(value)
    key = _key(name)
    n = max(1, -(-len(view) // FRAME_DATA))
    parts = []
    for i in range(n):
        chunk = view[i * FRAME_DATA : (i + 1) * FRAME_DATA]
        parts.append(_digest(key, i, chunk))
        parts.append(bytes(chunk))
    return b"".join(parts)


def unframe(name: str, blob: bytes, first: int) -> bytes:
    """The data of the frames in ``blob`` (frame ``first`` onwards), each verified."""
    key = _key(name)
    view = memoryview(blob)
    out = []
    for j in range(0, len(view), FRAME):
        frame = view[j : j + FRAME]
        if len(frame) < DIGEST or _digest(key, first + j // FRAME, frame[DIGEST:]) != frame[:DIGEST]:
            raise IntegrityError(f"cache entry {name!r} is damaged")
        out.append(frame[DIGEST:])
    return b"".join(out)


class _Index:
    """This client's LRU view of one size- or age-limited cache namespace."""

    def __init__(self, namespace: str, policy: CachePolicy) -> None:
        self.namespace = namespace
        self.policy = policy
        self.entries: OrderedDict[str, tuple[int, float]] = OrderedDict()  # name -> (size, last use)
        self.total = 0
        self.inserted = 0
        self.scan: Iterator[ItemInfo] | None = None
        self.seen: dict[str, tuple[int, float]] = {}
        self.changed: set[str] = set()

    def add(self, name: str, size: int, used: float) -> None:
        self.remove(name)
        self.entries[name] = (size, used)
        self.total += size

    def remove(self, name: str) -> None:
        entry = self.entries.pop(name, None)
        if entry is not None:
            self.total -= entry[0]
        if self.scan is not None:
            self.changed.add(name)

    def finish_scan(self) -> None:
        """Merge a finished scan: for names this client changed meanwhile, the index is right."""
        seen, changed = self.seen, self.changed
        self.scan, self.seen, self.changed = None, {}, set()
        merged = {n: e for n, e in self.entries.items() if n in changed or n in seen}
        for name, (size, used) in seen.items():
            if name in changed:
                continue
            mine = merged.get(name)
            merged[name] = (size, max(used, mine[1]) if mine else used)
        self.entries = OrderedDict(sorted(merged.items(), key=lambda kv: (kv[1][1], kv[0])))
        self.total = sum(size for size, _ in self.entries.values())


class CacheLayer(Layer):
    """Caches values of the configured namespaces in ``cache`` (see the module docstring)."""

    forward = frozenset({"list_recursive", "stat", "hash", "open_reader"})
    honours = frozenset({TAGS, OBJECT_LOCK, SSE_C, STORAGE_CLASS, METADATA, CHECKSUMS, SERVER_SIDE_COPY})

    def __init__(self, inner: Backend, cache: Backend, policies: Iterable[tuple[str, CachePolicy]]) -> None:
        super().__init__(inner)
        self.cache = cache
        self.policies = sorted(
            ((ns, p) for ns, p in policies if p.mode != CacheMode.OFF), key=lambda e: len(e[0]), reverse=True
        )
        self.disabled = False
        self._lock = threading.RLock()
        self._indexes: dict[str, _Index] = {}
        self.counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"<CacheLayer cache={self.cache!r} {self.inner!r}>"

    # ----------------------------------------------------------------- policy lookup
    def _policy(self, name: str) -> tuple[str, CachePolicy] | None:
        for namespace, policy in self.policies:
            if name.startswith(namespace):
                return namespace, policy
        return None

    def _mode(self, name: str) -> CacheMode:
        found = self._policy(name)
        return CacheMode.OFF if found is None or self.disabled else found[1].mode

    def _index(self, name: str) -> _Index | None:
        found = self._policy(name)
        return None if found is None else self._indexes.get(found[0])

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[key] += amount

    def _failed(self, what: str, err: Exception) -> None:
        logger.warning("cache %s failed: %r", what, err)
        self._count("cache_errors", 1)

    # ----------------------------------------------------------------- lifecycle
    def open(self) -> None:
        self.inner.open()
        if not self.policies:
            return
        try:
            try:
                self.cache.open()
            except BackendDoesNotExist:
                self.cache.create()
                self.cache.open()
        except Exception as err:
            logger.warning("cache could not be opened, going on without it: %r", err)
            self.disabled = True
            return
        self.disabled = False
        with self._lock:
            self._indexes = {
                ns: _Index(ns, p) for ns, p in self.policies if p.size is not None or p.max_age is not None
            }
            self._cleanup()

    def close(self) -> None:
        try:
            if self.policies and not self.disabled and self.cache.opened:
                with self._lock:
                    self._cleanup()
                    self._indexes = {}
                self.cache.close()
        except Exception as err:
            logger.warning("cache close failed: %r", err)
        finally:
            self.inner.close()

    def _cleanup(self) -> None:
        for index in self._indexes.values():
            index.scan = None
            self._scan(index, max_time=None)
            self._evict(index)

    # ----------------------------------------------------------------- cache primitives (never raise)
    def _cache_load(self, name: str, offset: int, size: int | None) -> bytes | None:
        self._count("cache_load_calls", 1)
        try:
            if offset < 0 or size is None:
                info = self.cache.info(name)
                if not info.exists or info.directory:
                    raise ObjectNotFound(name)
                total = value_size(info.size)
                if total is None:
                    raise IntegrityError(f"cache entry {name!r} has an impossible size")
                if offset < -total:
                    return None  # the backend path answers this range (borgstore clamps it to the start)
                offset, size = resolve_range(total, offset, size)
            first, last = offset // FRAME_DATA, (offset + max(size, 1) - 1) // FRAME_DATA
            blob = self.cache.load(name, offset=first * FRAME, size=(last - first + 1) * FRAME)
            data = unframe(name, blob, first)
        except ObjectNotFound:
            self._count("cache_misses", 1)
            with self._lock:
                index = self._index(name)
                if index is not None:
                    index.remove(name)  # another client evicted it
            return None
        except IntegrityError as err:
            self._failed(f"load of {name!r} (removing the entry)", err)
            self._cache_delete(name)
            return None
        except Exception as err:
            self._failed(f"load of {name!r}", err)
            return None
        local = offset - first * FRAME_DATA
        value = data[local : local + size]
        self._count("cache_hits", 1)
        self._count("cache_load_volume", len(value))
        with self._lock:
            index = self._index(name)
            if index is not None:
                entry = index.entries.get(name)
                index.add(name, entry[0] if entry else len(value), time.time())
        return value

    def _cache_store(self, name: str, value: Value) -> None:
        size = len(as_bytes_view(value))
        with self._lock:
            index = self._index(name)
            if index is not None:
                limit = index.policy.size
                if limit is not None and size > limit:
                    self._cache_delete(name)  # can never fit; drop an older copy
                    return
                if index.scan is not None or (limit is not None and index.inserted > limit / RESCAN_DIVISOR):
                    self._scan(index, max_time=SCAN_STEP_TIME)
                index.remove(name)
                self._evict(index, needed=size)
        self._count("cache_store_calls", 1)
        try:
            self.cache.store(name, frame_value(name, value))
        except Exception as err:
            self._failed(f"store of {name!r}", err)
            return
        self._count("cache_store_volume", size)
        with self._lock:
            if index is not None:
                index.add(name, size, time.time())
                index.inserted += size

    def _cache_delete(self, name: str) -> None:
        self._count("cache_delete_calls", 1)
        with self._lock:
            index = self._index(name)
            if index is not None:
                index.remove(name)
        try:
            self.cache.delete(name)
        except ObjectNotFound:
            pass
        except Exception as err:
            self._failed(f"delete of {name!r}", err)

    def _cache_move(self, old: str, new: str) -> None:
        with self._lock:
            old_index = self._index(old)
            entry = old_index.entries.get(old) if old_index is not None else None
        try:
            self.cache.move(old, new)
        except ObjectNotFound:
            if old_index is not None:
                with self._lock:
                    old_index.remove(old)
            self._cache_delete(new)  # whatever the cache held under the new name is stale now
            return
        except Exception as err:
            self._failed(f"move of {old!r}", err)
            self._cache_delete(new)
            return
        if old.removesuffix(DEL_SUFFIX) != new.removesuffix(DEL_SUFFIX):
            # the frames are keyed by the name: re-frame the moved entry under its new name
            try:
                data = self.cache.load(new)
                self.cache.store(new, frame_value(new, unframe(old, data, 0)))
            except Exception as err:
                self._failed(f"re-keying of {new!r}", err)
                self._cache_delete(new)
                return
        with self._lock:
            if old_index is not None:
                old_index.remove(old)
            new_index = self._index(new)
            if new_index is not None:
                if entry is not None:
                    new_index.add(new, entry[0], time.time())
                else:
                    new_index.remove(new)

    # ----------------------------------------------------------------- index maintenance
    def _walk(self, name: str) -> Iterator[ItemInfo]:
        for info in self.cache.list(name):
            full = f"{name}/{info.name}" if name else info.name
            if info.directory:
                yield from self._walk(full)
            else:
                yield info._replace(name=full)

    def _scan(self, index: _Index, *, max_time: float | None) -> None:
        started = time.perf_counter()
        if index.scan is None:
            index.scan = self._walk(index.namespace.rstrip("/"))
            index.seen, index.changed, index.inserted = {}, set(), 0
        try:
            for info in index.scan:
                size = value_size(info.size)
                index.seen[info.name] = (info.size if size is None else size, info.atime or info.mtime)
                if max_time is not None and time.perf_counter() - started >= max_time:
                    return
        except ObjectNotFound:
            pass  # nothing cached in this namespace yet
        except Exception as err:
            self._failed(f"scan of {index.namespace!r}", err)
            index.scan = None
            return
        index.finish_scan()

    def _evict(self, index: _Index, *, needed: int = 0) -> None:
        policy = index.policy
        if policy.max_age is not None:
            now = time.time()
            while index.entries:
                name, (_, used) = next(iter(index.entries.items()))
                if used and now - used <= policy.max_age:
                    break
                self._cache_delete(name)
        if policy.size is not None:
            while index.entries and index.total + needed > policy.size:
                self._cache_delete(next(iter(index.entries)))

    # ----------------------------------------------------------------- operations
    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        mode = self._mode(name)
        if mode == CacheMode.OFF:
            return self.inner.load(name, size=size, offset=offset)
        if mode == CacheMode.WRITETHROUGH:
            cached = self._cache_load(name, offset, size)
            if cached is not None:
                return cached
        value = self.inner.load(name)
        self._cache_store(name, value)
        # borgstore's cached load: a negative offset counts from the end and is clamped to the start
        start = max(len(value) + offset, 0) if offset < 0 else offset
        return value[start : None if size is None else start + size]

    def store(self, name: str, value: Value) -> None:
        self.inner.store(name, value)
        if self._mode(name) != CacheMode.OFF:
            self._cache_store(name, value)

    def delete(self, name: str) -> None:
        self.inner.delete(name)
        if self._mode(name) != CacheMode.OFF:
            self._cache_delete(name)

    def move(self, curr_name: str, new_name: str) -> None:
        self.inner.move(curr_name, new_name)
        if self._mode(curr_name) != CacheMode.OFF or self._mode(new_name) != CacheMode.OFF:
            self._cache_move(curr_name, new_name)

    def _invalidate(self, name: str) -> None:
        if self._mode(name) != CacheMode.OFF:
            self._cache_delete(name)

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self._invalidate(name)  # before and after: a reader never gets the old value from the cache
        self.inner.store_file(name, file, size=size)
        self._invalidate(name)

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        self._invalidate(name)
        self.inner.store_with_meta(name, data, meta, size=size)
        self._invalidate(name)

    def copy(self, src: str, dst: str) -> None:
        self._invalidate(dst)
        self.inner.copy(src, dst)
        self._invalidate(dst)

    def invalidate(self, names: Sequence[str] | None = None, *, namespace: str | None = None) -> None:
        """Drop cached entries: the given backend names, a whole namespace, or (neither) everything."""
        if self.disabled:
            return
        if names is not None:
            for name in names:
                self._cache_delete(name)
            return
        targets = [namespace] if namespace is not None else [ns for ns, _ in self.policies]
        for ns in targets:
            try:
                for info in list(self._walk(ns.rstrip("/"))):
                    self._cache_delete(info.name)
            except ObjectNotFound:
                continue
            except Exception as err:
                self._failed(f"invalidation of {ns!r}", err)

    @property
    def stats(self) -> dict[str, Any]:
        """borgstore's ``cache_*`` stats."""
        c = self.counts
        st: dict[str, Any] = {"cache_disabled": self.disabled}
        for key in ("hits", "misses", "errors", "load_calls", "store_calls", "delete_calls"):
            st[f"cache_{key}"] = c.get(f"cache_{key}", 0)
        st["cache_load_volume"] = c.get("cache_load_volume", 0)
        st["cache_store_volume"] = c.get("cache_store_volume", 0)
        total = st["cache_hits"] + st["cache_misses"]
        st["cache_hit_ratio"] = st["cache_hits"] / total if total else 0
        return st
