"""EmulateLayer: make a fast backend behave like a slow, far-away one.

Each call takes at least ``latency + volume / bandwidth`` seconds (borgstore's rule: sleep for what
is left after the real call). A listing pays the latency once. Configured by arguments or by the
environment: ``UNISTORE_LATENCY`` (microseconds) and ``UNISTORE_BANDWIDTH`` (bit/s); borgstore's
``BORGSTORE_LATENCY`` / ``BORGSTORE_BANDWIDTH`` are read when the UNISTORE names are not set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from typing import IO

from ..backends.base import Backend, ItemInfo, ObjectMeta, StoreMeta, Value, as_bytes_view
from ..errors import ConfigError
from .base import ALL_CAPABILITIES, Layer


def _env_number(*names: str, env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    for name in names:
        raw = env.get(name)
        if raw not in (None, ""):
            try:
                value = float(raw)  # type: ignore[arg-type]
            except ValueError:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from None
            if value < 0:
                raise ConfigError(f"{name} must be >= 0, not {raw!r}")
            return value
    return 0.0


class EmulateLayer(Layer):
    """Adds latency (seconds per call) and limits bandwidth (bytes/s) on top of a backend.

    Note the units: ``latency`` in seconds and ``bandwidth`` in bytes/s here, where the environment
    variables take microseconds and bit/s (borgstore's units).
    """

    # bulk operations are not forwarded: they go item by item through this layer, each paying its cost
    forward = frozenset({"list_recursive", "store_file", "load_file", "hash", "stat", "store_with_meta", "copy"})
    honours = ALL_CAPABILITIES

    def __init__(self, inner: Backend, *, latency: float = 0.0, bandwidth: float = 0.0) -> None:
        super().__init__(inner)
        if latency < 0 or bandwidth < 0:
            raise ConfigError("latency and bandwidth must be >= 0")
        self.latency = latency
        self.bandwidth = bandwidth

    @staticmethod
    def settings_from_env(env: Mapping[str, str] | None = None) -> tuple[float, float]:
        """``(latency seconds, bandwidth bytes/s)`` from the environment (0 = off)."""
        latency_us = _env_number("UNISTORE_LATENCY", "BORGSTORE_LATENCY", env=env)
        bandwidth_bits = _env_number("UNISTORE_BANDWIDTH", "BORGSTORE_BANDWIDTH", env=env)
        return latency_us / 1e6, bandwidth_bits / 8

    @classmethod
    def wrap_from_env(cls, inner: Backend, env: Mapping[str, str] | None = None) -> Backend:
        """``inner`` wrapped in an EmulateLayer if the environment asks for emulation, else ``inner``."""
        latency, bandwidth = cls.settings_from_env(env)
        if latency or bandwidth:
            return cls(inner, latency=latency, bandwidth=bandwidth)
        return inner

    def _pay(self, started: float, volume: int = 0) -> None:
        wanted = self.latency + (volume / self.bandwidth if self.bandwidth else 0.0)
        remaining = wanted - (time.perf_counter() - started)
        if remaining > 0:
            time.sleep(remaining)

    def info(self, name: str) -> ItemInfo:
        t = time.perf_counter()
        result = self.inner.info(name)
        self._pay(t)
        return result

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        t = time.perf_counter()
        data = self.inner.load(name, size=size, offset=offset)
        self._pay(t, len(data))
        return data

    def store(self, name: str, value: Value) -> None:
        t = time.perf_counter()
        self.inner.store(name, value)
        self._pay(t, len(as_bytes_view(value)))

    def delete(self, name: str) -> None:
        t = time.perf_counter()
        self.inner.delete(name)
        self._pay(t)

    def move(self, curr_name: str, new_name: str) -> None:
        t = time.perf_counter()
        self.inner.move(curr_name, new_name)
        self._pay(t)

    def mkdir(self, name: str) -> None:
        t = time.perf_counter()
        self.inner.mkdir(name)
        self._pay(t)

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        t = time.perf_counter()
        result = self.inner.hash(name, algorithm)
        self._pay(t)
        return result

    def list(self, name: str) -> Iterator[ItemInfo]:
        t = time.perf_counter()
        it = self.inner.list(name)
        self._pay(t)
        return it

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        t = time.perf_counter()
        it = self.inner.list_recursive(name)
        self._pay(t)
        return it

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        t = time.perf_counter()
        start = file.tell() if file.seekable() else None
        self.inner.store_file(name, file, size=size)
        volume = (file.tell() - start) if start is not None else (size or 0)
        self._pay(t, volume)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        t = time.perf_counter()
        n = self.inner.load_file(name, file, offset=offset, size=size)
        self._pay(t, max(n, 0))
        return n

    def stat(self, name: str) -> ObjectMeta:
        t = time.perf_counter()
        result = self.inner.stat(name)
        self._pay(t)
        return result

    def store_with_meta(
        self, name: str, data: Value | IO[bytes], meta: StoreMeta | None = None, *, size: int | None = None
    ) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            t = time.perf_counter()
            self.inner.store_with_meta(name, data, meta, size=size)
            self._pay(t, size or 0)
            return
        t = time.perf_counter()
        self.inner.store_with_meta(name, data, meta)
        self._pay(t, len(as_bytes_view(data)))

    def copy(self, src: str, dst: str) -> None:
        t = time.perf_counter()
        self.inner.copy(src, dst)
        self._pay(t)
