"""Layers: stats, emulate, retry - each tested alone over a real backend."""

from __future__ import annotations

import io
import time

import pytest

from unistore.backends.memory import MemoryBackend
from unistore.errors import BackendConnectionError, ConfigError, ObjectNotFound
from unistore.layers.emulate import EmulateLayer
from unistore.layers.retry import RetryLayer
from unistore.layers.stats import StatsLayer


def mem() -> MemoryBackend:
    be = MemoryBackend()
    be.create()
    be.open()
    return be


class FlakyBackend(MemoryBackend):
    """A memory backend whose next ``failures`` calls of the listed operations lose the connection
    (after doing the work when ``after=True``, like a reply lost on the way back)."""

    def __init__(self, failures: int, ops: set[str], after: bool = False) -> None:
        super().__init__()
        self.failures = failures
        self.ops = ops
        self.after = after
        self.calls: dict[str, int] = {}

    def _maybe_fail(self, op: str) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        if op in self.ops and self.failures > 0:
            self.failures -= 1
            raise BackendConnectionError(f"connection reset during {op}")

    def load(self, name, *, size=None, offset=0):  # type: ignore[no-untyped-def]
        self._maybe_fail("load")
        return super().load(name, size=size, offset=offset)

    def delete(self, name):  # type: ignore[no-untyped-def]
        if self.after:
            super().delete(name)
            self._maybe_fail("delete")
        else:
            self._maybe_fail("delete")
            super().delete(name)

    def move(self, curr_name, new_name):  # type: ignore[no-untyped-def]
        self._maybe_fail("move")
        super().move(curr_name, new_name)

    def store(self, name, value):  # type: ignore[no-untyped-def]
        self._maybe_fail("store")
        super().store(name, value)

    def list(self, name):  # type: ignore[no-untyped-def]
        self._maybe_fail("list")
        return super().list(name)


def flaky(failures: int, ops: set[str], after: bool = False) -> FlakyBackend:
    be = FlakyBackend(failures, ops, after)
    be.create()
    be.open()
    return be


def test_stats_layer_counts() -> None:
    st = StatsLayer(mem())
    st.store("a", b"12345")
    st.load("a")
    st.info("a")
    st.store_file("b", io.BytesIO(b"x" * 100))
    st.load_file("b", io.BytesIO())
    list(st.list(""))
    s = st.stats
    assert (s["store_calls"], s["store_volume"]) == (2, 105)
    assert (s["load_calls"], s["load_volume"]) == (2, 105)
    assert s["info_calls"] == 1 and s["list_calls"] == 1
    st.reset()
    assert st.stats["store_calls"] == 0


def test_stats_counts_failed_calls() -> None:
    st = StatsLayer(mem())
    with pytest.raises(ObjectNotFound):
        st.load("missing")
    assert st.stats["load_calls"] == 1 and st.stats["load_volume"] == 0


def test_emulate_latency_and_bandwidth() -> None:
    em = EmulateLayer(mem(), latency=0.01, bandwidth=100_000)
    t = time.perf_counter()
    em.store("a", b"x" * 5000)  # 10 ms + 50 ms
    assert time.perf_counter() - t >= 0.06
    t = time.perf_counter()
    em.info("a")
    assert time.perf_counter() - t >= 0.01


def test_emulate_from_env() -> None:
    assert EmulateLayer.settings_from_env({"UNISTORE_LATENCY": "1000", "UNISTORE_BANDWIDTH": "8000"}) == (0.001, 1000)
    assert EmulateLayer.settings_from_env({"BORGSTORE_LATENCY": "2000000"}) == (2.0, 0)
    assert EmulateLayer.settings_from_env({"UNISTORE_LATENCY": "5", "BORGSTORE_LATENCY": "9"})[0] == 5e-6
    be = mem()
    assert EmulateLayer.wrap_from_env(be, {}) is be
    with pytest.raises(ConfigError, match="UNISTORE_LATENCY"):
        EmulateLayer.settings_from_env({"UNISTORE_LATENCY": "fast"})


def test_retry_recovers_transient_failures() -> None:
    inner = flaky(2, {"load"})
    inner.store("a", b"1")
    r = RetryLayer(inner, attempts=3, sleep=lambda s: None)
    assert r.load("a") == b"1"
    assert r.retries == 2 and inner.calls["load"] == 3


def test_retry_gives_up_after_attempts() -> None:
    inner = flaky(5, {"load"})
    inner.store("a", b"1")
    r = RetryLayer(inner, attempts=3, sleep=lambda s: None)
    with pytest.raises(BackendConnectionError):
        r.load("a")
    assert inner.calls["load"] == 3


def test_retry_never_retries_permanent_errors() -> None:
    inner = flaky(0, set())
    r = RetryLayer(inner, sleep=lambda s: None)
    with pytest.raises(ObjectNotFound):
        r.load("missing")
    assert r.retries == 0


def test_retry_does_not_retry_move() -> None:
    inner = flaky(1, {"move"})
    inner.store("a", b"1")
    r = RetryLayer(inner, sleep=lambda s: None)
    with pytest.raises(BackendConnectionError):
        r.move("a", "b")
    assert inner.calls["move"] == 1


def test_retry_delete_whose_reply_was_lost() -> None:
    inner = flaky(1, {"delete"}, after=True)
    inner.store("a", b"1")
    r = RetryLayer(inner, sleep=lambda s: None)
    r.delete("a")  # first attempt deleted, reply lost; the retry sees ObjectNotFound = done
    assert not inner.info("a").exists
    with pytest.raises(ObjectNotFound):
        r.delete("a")


def test_retry_store_file_rewinds() -> None:
    inner = flaky(1, {"store"})
    r = RetryLayer(inner, sleep=lambda s: None)
    r.store_file("f", io.BytesIO(b"payload"))
    assert inner.load("f") == b"payload"


def test_retry_list_before_first_item() -> None:
    inner = flaky(1, {"list"})
    inner.store("d/x", b"1")
    r = RetryLayer(inner, sleep=lambda s: None)
    assert [i.name for i in r.list("d")] == ["x"]


def test_layers_forward_capabilities() -> None:
    layered = StatsLayer(RetryLayer(EmulateLayer(mem())))
    assert layered.capabilities == frozenset()
    assert layered.opened
    layered.store("k", b"v")
    assert layered.inner.load("k") == b"v"  # type: ignore[attr-defined]
