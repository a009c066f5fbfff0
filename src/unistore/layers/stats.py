"""StatsLayer: borgstore's stats dict (``<op>_calls``, ``<op>_time``, ``<op>_volume``,
``<op>_throughput``) for every operation that passes through, thread-safe."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from ..backends.base import Backend, ItemInfo, ObjectMeta, StoreMeta, Value, as_bytes_view
from .base import ALL_CAPABILITIES, DERIVED_OPS, Layer

logger = logging.getLogger("unistore.layers.stats")

TIMED_OPS = ("info", "load", "store", "delete", "move", "list", "hash", "gather", "defrag")
VOLUME_OPS = ("load", "store", "gather")


class StatsLayer(Layer):
    """Counts calls, time (s) and volume (bytes) per operation; ``stats`` returns the dict.

    It is also where every operation is logged once, at DEBUG on ``unistore.layers.stats``, with its
    time and volume (backends do not log timings themselves).
    """

    forward = DERIVED_OPS
    honours = ALL_CAPABILITIES

    def __init__(self, inner: Backend, *, prefix: str = "") -> None:
        super().__init__(inner)
        self.prefix = prefix  # e.g. "backend_": the Store counts calls that reach the primary backend
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def _record(self, op: str, started: int, volume: int = 0, calls: int = 1) -> None:
        elapsed = time.perf_counter_ns() - started
        with self._lock:
            c = self._counts
            c[op + "_calls"] += calls
            c[op + "_time"] += elapsed
            if volume:
                c[op + "_volume"] += volume
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s x%d: %d B in %.3f ms", op, calls, volume, elapsed / 1e6)

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot: ``<op>_calls`` (int), ``<op>_time`` (s), ``<op>_volume`` (B), ``<op>_throughput`` (B/s)."""
        with self._lock:
            c = dict(self._counts)
        st: dict[str, Any] = {}
        p = self.prefix
        for op in TIMED_OPS:
            st[p + op + "_calls"] = c.get(op + "_calls", 0)
            st[p + op + "_time"] = c.get(op + "_time", 0) / 1e9
        for op in VOLUME_OPS:
            volume = c.get(op + "_volume", 0)
            st[p + op + "_volume"] = volume
            st[p + op + "_throughput"] = volume / st[p + op + "_time"] if st[p + op + "_time"] else 0
        return st

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def info(self, name: str) -> ItemInfo:
        t = time.perf_counter_ns()
        try:
            return self.inner.info(name)
        finally:
            self._record("info", t)

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        t = time.perf_counter_ns()
        data = b""
        try:
            data = self.inner.load(name, size=size, offset=offset)
            return data
        finally:
            self._record("load", t, len(data))

    def store(self, name: str, value: Value) -> None:
        t = time.perf_counter_ns()
        try:
            self.inner.store(name, value)
        finally:
            self._record("store", t, len(as_bytes_view(value)))

    def delete(self, name: str) -> None:
        t = time.perf_counter_ns()
        try:
            self.inner.delete(name)
        finally:
            self._record("delete", t)

    def move(self, curr_name: str, new_name: str) -> None:
        t = time.perf_counter_ns()
        try:
            self.inner.move(curr_name, new_name)
        finally:
            self._record("move", t)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        t = time.perf_counter_ns()
        try:
            return self.inner.hash(name, algorithm)
        finally:
            self._record("hash", t)

    def stat(self, name: str) -> ObjectMeta:
        t = time.perf_counter_ns()
        try:
            return self.inner.stat(name)
        finally:
            self._record("info", t)

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            t = time.perf_counter_ns()
            try:
                self.inner.store_with_meta(name, data, meta)
            finally:
                self._record("store", t, len(as_bytes_view(data)))
            return
        counting = _CountingReader(data)
        t = time.perf_counter_ns()
        try:
            self.inner.store_with_meta(name, counting, meta, size=size)  # type: ignore[arg-type]
        finally:
            self._record("store", t, counting.count)

    def gather(self, sources: Iterable[tuple[str, int, int]]) -> bytes:
        t = time.perf_counter_ns()
        data = b""
        try:
            data = self.inner.gather(sources)
            return data
        finally:
            self._record("gather", t, len(data))

    def defrag(
        self,
        sources: Iterable[tuple[str, int, int]],
        *,
        target: str | None = None,
        algorithm: str | None = None,
        namespace: str | None = None,
        levels: int = 0,
    ) -> str:
        t = time.perf_counter_ns()
        try:
            return self.inner.defrag(sources, target=target, algorithm=algorithm, namespace=namespace, levels=levels)
        finally:
            self._record("defrag", t)

    def copy(self, src: str, dst: str) -> None:
        t = time.perf_counter_ns()
        try:
            self.inner.copy(src, dst)
        finally:
            self._record("copy", t)

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self._timed_iter(lambda: self.inner.list(name))

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        return self._timed_iter(lambda: self.inner.list_recursive(name))

    def _timed_iter(self, start: Any) -> Iterator[ItemInfo]:
        """Count one list call; time only the backend's work, not the consumer's."""
        t = time.perf_counter_ns()
        try:
            it = iter(start())
        finally:
            self._record("list", t)
        while True:
            t = time.perf_counter_ns()
            try:
                item = next(it)
            except StopIteration:
                self._record("list", t, calls=0)
                return
            self._record("list", t, calls=0)
            yield item

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        counting = _CountingReader(file)
        t = time.perf_counter_ns()
        try:
            self.inner.store_file(name, counting, size=size)  # type: ignore[arg-type]
        finally:
            self._record("store", t, counting.count)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        t = time.perf_counter_ns()
        n = 0
        try:
            n = self.inner.load_file(name, file, offset=offset, size=size)
            return n
        finally:
            self._record("load", t, max(n, 0))

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        t = time.perf_counter_ns()
        try:
            self.inner.store_many(pairs)
        finally:
            self._record("store", t, sum(len(as_bytes_view(v)) for _, v in pairs), calls=len(pairs))

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        it = iter(self.inner.load_many(names))
        while True:
            t = time.perf_counter_ns()
            try:
                name, data = next(it)
            except StopIteration:
                return
            self._record("load", t, len(data))
            yield name, data

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        t = time.perf_counter_ns()
        n = 0
        try:
            n = self.inner.delete_many(names, missing_ok=missing_ok)
            return n
        finally:
            self._record("delete", t, calls=n)


class _CountingReader:
    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.count += len(data)
        return data

    def readinto(self, b: Any) -> int:
        n = self.f.readinto(b)  # type: ignore[attr-defined]
        self.count += n or 0
        return n  # type: ignore[no-any-return]

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.f, attr)
