"""ChaosLayer: fault injection, to see what a stack above a backend does when the backend misbehaves.

Put it where the faults should appear, e.g. ``RetryLayer(ChaosLayer(PosixFS(p), error_rate=0.2))``
tests that retries hide transient failures; ``ChaosLayer(backend, drop_rate=0.1)`` tests that an
application copes with operations that *did* happen but whose answer was lost. Faults:

- ``error_rate``: the call fails with BackendConnectionError *before* it reaches the backend
  (nothing happened);
- ``drop_rate``: the call runs, then fails with BackendConnectionError (it happened, the answer was
  lost, as when a connection drops after the server committed);
- ``latency``: seconds added before every call, a number or a ``(low, high)`` range drawn uniformly.

``operations`` limits the faults to the named operations (e.g. ``{"store", "load"}``); by default
every operation is affected. ``max_faults`` stops injecting errors and drops after that many
("fail the first two loads"). Bulk operations run item by item through this layer, so each item can
fail on its own. ``seed`` makes a run repeatable; ``injected`` counts what was injected per kind.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import IO, BinaryIO, TypeVar

from ..backends.base import Backend, ItemInfo, ObjectMeta, StoreMeta, Value
from ..errors import BackendConnectionError, ConfigError
from .base import ALL_CAPABILITIES, Layer

T = TypeVar("T")

OPERATIONS = frozenset(
    {
        "create", "destroy", "open", "close", "mkdir", "rmdir", "info", "load", "store", "delete", "move",
        "list", "list_recursive", "store_file", "load_file", "open_reader", "copy", "hash", "stat",
        "store_with_meta",
    }
)  # fmt: skip


class ChaosLayer(Layer):
    """Injects connection errors, lost answers and latency into the calls that pass through."""

    forward = frozenset(
        {"list_recursive", "store_file", "load_file", "open_reader", "copy", "hash", "stat", "store_with_meta"}
    )
    honours = ALL_CAPABILITIES

    def __init__(
        self,
        inner: Backend,
        *,
        error_rate: float = 0.0,
        latency: float | tuple[float, float] = 0.0,
        drop_rate: float = 0.0,
        operations: Iterable[str] | None = None,
        seed: int | None = None,
        max_faults: int | None = None,
    ) -> None:
        super().__init__(inner)
        for label, rate in (("error_rate", error_rate), ("drop_rate", drop_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{label} must be between 0 and 1, not {rate!r}")
        low, high = latency if isinstance(latency, tuple) else (latency, latency)
        if low < 0 or high < low:
            raise ConfigError(f"latency must be >= 0 (or a (low, high) range), not {latency!r}")
        ops = OPERATIONS if operations is None else frozenset(operations)
        unknown = ops - OPERATIONS
        if unknown:
            raise ConfigError(f"unknown operations for ChaosLayer: {sorted(unknown)}")
        self.error_rate = error_rate
        self.drop_rate = drop_rate
        self.latency = (low, high)
        self.operations = ops
        self.max_faults = max_faults
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.injected: Counter[str] = Counter()  # "error", "drop", "latency"

    def __repr__(self) -> str:
        return f"<ChaosLayer error_rate={self.error_rate} drop_rate={self.drop_rate} {self.inner!r}>"

    def _decide(self) -> tuple[str | None, float]:
        """The fault for one call (None, "error" or "drop") and its delay, counted atomically."""
        with self._lock:
            roll, delay = self._random.random(), self._random.uniform(*self.latency)
            kind = None
            spent = self.injected["error"] + self.injected["drop"]
            if self.max_faults is None or spent < self.max_faults:
                if roll < self.error_rate:
                    kind = "error"
                elif roll < self.error_rate + self.drop_rate:
                    kind = "drop"
            if kind:
                self.injected[kind] += 1
            if delay > 0:
                self.injected["latency"] += 1
            return kind, delay

    def _run(self, op: str, call: Callable[[], T]) -> T:
        if op not in self.operations:
            return call()
        kind, delay = self._decide()
        if delay > 0:
            time.sleep(delay)
        if kind == "error":
            raise BackendConnectionError(f"chaos: {op} failed before reaching the backend")
        result = call()
        if kind == "drop":
            raise BackendConnectionError(f"chaos: the answer to {op} was lost (the operation ran)")
        return result

    # primitives
    def create(self) -> None:
        self._run("create", self.inner.create)

    def destroy(self) -> None:
        self._run("destroy", self.inner.destroy)

    def open(self) -> None:
        self._run("open", self.inner.open)

    def close(self) -> None:
        self._run("close", self.inner.close)

    def mkdir(self, name: str) -> None:
        self._run("mkdir", lambda: self.inner.mkdir(name))

    def rmdir(self, name: str) -> None:
        self._run("rmdir", lambda: self.inner.rmdir(name))

    def info(self, name: str) -> ItemInfo:
        return self._run("info", lambda: self.inner.info(name))

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        return self._run("load", lambda: self.inner.load(name, size=size, offset=offset))

    def store(self, name: str, value: Value) -> None:
        self._run("store", lambda: self.inner.store(name, value))

    def delete(self, name: str) -> None:
        self._run("delete", lambda: self.inner.delete(name))

    def move(self, curr_name: str, new_name: str) -> None:
        self._run("move", lambda: self.inner.move(curr_name, new_name))

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self._run("list", lambda: iter(list(self.inner.list(name))))

    # forwarded derived operations, faults included
    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        return self._run("list_recursive", lambda: iter(list(self.inner.list_recursive(name))))

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self._run("store_file", lambda: self.inner.store_file(name, file, size=size))

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        return self._run("load_file", lambda: self.inner.load_file(name, file, offset=offset, size=size))

    def open_reader(self, name: str) -> BinaryIO:
        return self._run("open_reader", lambda: self.inner.open_reader(name))

    def copy(self, src: str, dst: str) -> None:
        self._run("copy", lambda: self.inner.copy(src, dst))

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        return self._run("hash", lambda: self.inner.hash(name, algorithm))

    def stat(self, name: str) -> ObjectMeta:
        return self._run("stat", lambda: self.inner.stat(name))

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        self._run("store_with_meta", lambda: self.inner.store_with_meta(name, data, meta, size=size))
