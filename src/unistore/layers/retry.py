"""RetryLayer: bounded exponential backoff with jitter on transient errors, idempotent operations only.

Only :class:`~unistore.errors.BackendConnectionError` counts as transient: a missing object, a
denied permission or a bad name is never retried. ``move`` is not idempotent and is not retried;
``delete`` is, and an ObjectNotFound on a retry means an earlier attempt did the work. A listing is
retried only until its first item was delivered; a stream only if it can be rewound.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from itertools import islice
from typing import IO, TypeVar

from ..backends.base import Backend, ItemInfo, ObjectMeta, StoreMeta, Value
from ..errors import BackendConnectionError, ConfigError, ObjectNotFound
from .base import ALL_CAPABILITIES, DERIVED_OPS, Layer

logger = logging.getLogger("unistore.layers.retry")
T = TypeVar("T")


class RetryLayer(Layer):
    """Retries idempotent operations that failed with BackendConnectionError.

    This layer is the one owner of retries in unistore (backends do not loop themselves; an engine's
    own retry, such as botocore's, counts inside one attempt here). Bulk operations keep the inner
    backend's fast path: ``store_many`` is retried whole (stores are idempotent), ``load_many``
    resumes after the last value delivered, and ``delete_many`` finishes item by item after a
    failure (its count then covers only what was deleted after the failure). ``open_reader`` and
    the capability calls are forwarded without retry.
    """

    forward = DERIVED_OPS
    honours = ALL_CAPABILITIES

    def __init__(
        self,
        inner: Backend,
        *,
        attempts: int = 3,
        base_delay: float = 0.1,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(inner)
        if attempts < 1:
            raise ConfigError(f"attempts must be >= 1, not {attempts}")
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._sleep = sleep
        self.retries = 0  # how many retries this layer has made (for monitoring and tests)

    def _delay(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * (2**attempt)) * random.uniform(0.5, 1.0)

    def _call(self, op: str, func: Callable[[int], T]) -> T:
        for attempt in range(self.attempts):
            try:
                return func(attempt)
            except BackendConnectionError as e:
                if attempt + 1 >= self.attempts:
                    raise
                delay = self._delay(attempt)
                self.retries += 1
                logger.info("%s failed (%s); retry %d/%d in %.2fs", op, e, attempt + 1, self.attempts - 1, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def info(self, name: str) -> ItemInfo:
        return self._call("info", lambda _: self.inner.info(name))

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        return self._call("load", lambda _: self.inner.load(name, size=size, offset=offset))

    def store(self, name: str, value: Value) -> None:
        self._call("store", lambda _: self.inner.store(name, value))

    def mkdir(self, name: str) -> None:
        self._call("mkdir", lambda _: self.inner.mkdir(name))

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        return self._call("hash", lambda _: self.inner.hash(name, algorithm))

    def delete(self, name: str) -> None:
        def attempt(n: int) -> None:
            try:
                self.inner.delete(name)
            except ObjectNotFound:
                if n == 0:
                    raise
                # an earlier attempt deleted it before its connection failed

        self._call("delete", attempt)

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        if not file.seekable():
            self.inner.store_file(name, file, size=size)
            return
        start = file.tell()

        def attempt(n: int) -> None:
            file.seek(start)
            self.inner.store_file(name, file, size=size)

        self._call("store_file", attempt)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        if not file.seekable():
            return self.inner.load_file(name, file, offset=offset, size=size)
        start = file.tell()

        def attempt(n: int) -> int:
            file.seek(start)
            file.truncate()
            return self.inner.load_file(name, file, offset=offset, size=size)

        return self._call("load_file", attempt)

    def stat(self, name: str) -> ObjectMeta:
        return self._call("stat", lambda _: self.inner.stat(name))

    def copy(self, src: str, dst: str) -> None:
        self._call("copy", lambda _: self.inner.copy(src, dst))

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        if isinstance(data, bytes | bytearray | memoryview):
            self._call("store", lambda _: self.inner.store_with_meta(name, data, meta))
            return
        if not data.seekable():
            self.inner.store_with_meta(name, data, meta, size=size)
            return
        start = data.tell()

        def attempt(n: int) -> None:
            data.seek(start)
            self.inner.store_with_meta(name, data, meta, size=size)

        self._call("store", attempt)

    def gather(self, sources: Iterable[tuple[str, int, int]]) -> bytes:
        ranges = list(sources)
        return self._call("gather", lambda _: self.inner.gather(ranges))

    def defrag(
        self,
        sources: Iterable[tuple[str, int, int]],
        *,
        target: str | None = None,
        algorithm: str | None = None,
        namespace: str | None = None,
        levels: int = 0,
    ) -> str:
        # idempotent: the target gets the same bytes again (its name is given or their hash)
        ranges = list(sources)
        return self._call(
            "defrag",
            lambda _: self.inner.defrag(ranges, target=target, algorithm=algorithm, namespace=namespace, levels=levels),
        )

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        self._call("store_many", lambda _: self.inner.store_many(pairs))

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        todo = list(names)
        done = 0
        for attempt in range(self.attempts):
            try:
                for pair in self.inner.load_many(todo[done:]):
                    done += 1
                    yield pair
                return
            except BackendConnectionError as e:
                if attempt + 1 >= self.attempts:
                    raise
                delay = self._delay(attempt)
                self.retries += 1
                logger.info("load_many failed (%s); retry %d/%d in %.2fs", e, attempt + 1, self.attempts - 1, delay)
                self._sleep(delay)

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        todo = list(names)
        try:
            return self.inner.delete_many(todo, missing_ok=missing_ok)
        except BackendConnectionError as e:
            if self.attempts <= 1:
                raise
            self.retries += 1
            logger.info("delete_many failed (%s); finishing item by item", e)
        # some items may be gone already: deleting them again is not an error after a failure
        return sum(self._delete_after_failure(n) for n in todo)

    def _delete_after_failure(self, name: str) -> int:
        try:
            self._call("delete", lambda _: self.inner.delete(name))
        except ObjectNotFound:
            return 0
        return 1

    def list(self, name: str) -> Iterator[ItemInfo]:
        return self._retry_iter("list", lambda: self.inner.list(name))

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        return self._retry_iter("list_recursive", lambda: self.inner.list_recursive(name))

    def _retry_iter(self, op: str, start: Callable[[], Iterator[ItemInfo]]) -> Iterator[ItemInfo]:
        def first(_: int) -> tuple[Iterator[ItemInfo], list[ItemInfo]]:
            it = iter(start())
            return it, list(islice(it, 1))

        it, head = self._call(op, first)
        yield from head
        yield from it
