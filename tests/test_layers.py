"""Layers: stats, emulate, retry, chaos - each tested alone over a real backend - and closed layers."""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from typing import Any

import pytest

from unistore.backends.base import Backend, StoreMeta, Value
from unistore.backends.memory import MemoryBackend
from unistore.errors import BackendConnectionError, CapabilityNotSupported, ConfigError, ObjectNotFound
from unistore.layers.base import Layer
from unistore.layers.chaos import ChaosLayer
from unistore.layers.emulate import EmulateLayer
from unistore.layers.retry import RetryLayer
from unistore.layers.stats import StatsLayer


def mem() -> MemoryBackend:
    be = MemoryBackend()
    be.create()
    be.open()
    return be


def flaky(faults: int, ops: set[str], *, after: bool = False) -> tuple[MemoryBackend, ChaosLayer]:
    """A memory backend under a ChaosLayer whose first ``faults`` calls of ``ops`` lose the connection
    (after doing the work when ``after=True``, like a reply lost on the way back)."""
    be = mem()
    chaos = ChaosLayer(
        be, error_rate=0.0 if after else 1.0, drop_rate=1.0 if after else 0.0, operations=ops, max_faults=faults
    )
    return be, chaos


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
    be, chaos = flaky(2, {"load"})
    be.store("a", b"1")
    r = RetryLayer(chaos, attempts=3, sleep=lambda s: None)
    assert r.load("a") == b"1"
    assert r.retries == 2 and chaos.injected["error"] == 2


def test_retry_gives_up_after_attempts() -> None:
    be, chaos = flaky(5, {"load"})
    be.store("a", b"1")
    r = RetryLayer(chaos, attempts=3, sleep=lambda s: None)
    with pytest.raises(BackendConnectionError):
        r.load("a")
    assert chaos.injected["error"] == 3 and r.retries == 2


def test_retry_never_retries_permanent_errors() -> None:
    be, chaos = flaky(0, set())
    r = RetryLayer(chaos, sleep=lambda s: None)
    with pytest.raises(ObjectNotFound):
        r.load("missing")
    assert r.retries == 0


def test_retry_does_not_retry_move() -> None:
    be, chaos = flaky(1, {"move"})
    be.store("a", b"1")
    r = RetryLayer(chaos, sleep=lambda s: None)
    with pytest.raises(BackendConnectionError):
        r.move("a", "b")
    assert r.retries == 0 and be.info("a").exists and not be.info("b").exists


def test_retry_delete_whose_reply_was_lost() -> None:
    be, chaos = flaky(1, {"delete"}, after=True)
    be.store("a", b"1")
    r = RetryLayer(chaos, sleep=lambda s: None)
    r.delete("a")  # first attempt deleted, reply lost; the retry sees ObjectNotFound = done
    assert not be.info("a").exists and chaos.injected["drop"] == 1
    with pytest.raises(ObjectNotFound):
        r.delete("a")


def test_retry_store_file_rewinds() -> None:
    be, chaos = flaky(1, {"store_file"}, after=True)  # the value was read, then the answer lost
    r = RetryLayer(chaos, sleep=lambda s: None)
    r.store_file("f", io.BytesIO(b"payload"))
    assert be.load("f") == b"payload" and r.retries == 1


def test_retry_list_before_first_item() -> None:
    be, chaos = flaky(1, {"list"})
    be.store("d/x", b"1")
    r = RetryLayer(chaos, sleep=lambda s: None)
    assert [i.name for i in r.list("d")] == ["x"] and r.retries == 1


def test_retry_covers_bulk_operations_and_copy() -> None:
    """Bulk operations and copy are retried, not passed to the inner backend unprotected."""
    be, chaos = flaky(1, {"store"})
    r = RetryLayer(chaos, sleep=lambda s: None)
    r.store_many({f"k{i}": bytes([i]) for i in range(5)})
    assert [be.load(f"k{i}") for i in range(5)] == [bytes([i]) for i in range(5)] and r.retries == 1

    chaos.max_faults, chaos.operations = 2, frozenset({"load"})
    assert list(r.load_many([f"k{i}" for i in range(5)])) == [(f"k{i}", bytes([i])) for i in range(5)]
    assert r.retries == 2

    chaos.max_faults, chaos.operations = 3, frozenset({"copy"})
    r.copy("k1", "c1")
    assert be.load("c1") == b"\x01" and r.retries == 3

    chaos.max_faults, chaos.operations = 4, frozenset({"delete"})
    assert r.delete_many([f"k{i}" for i in range(5)]) >= 4
    assert not any(be.info(f"k{i}").exists for i in range(5))


def test_chaos_layer_rates_are_repeatable_and_bounded() -> None:
    def run(seed: int) -> list[bool]:
        chaos = ChaosLayer(mem(), error_rate=0.3, drop_rate=0.2, seed=seed)
        out = []
        for i in range(200):
            try:
                chaos.store(f"k{i}", b"v")
                out.append(True)
            except BackendConnectionError:
                out.append(False)
        return out

    a, b = run(7), run(7)
    assert a == b  # same seed, same faults
    failures = a.count(False)
    assert 60 < failures < 140  # about half of 200
    with pytest.raises(ConfigError):
        ChaosLayer(mem(), error_rate=1.5)
    with pytest.raises(ConfigError, match="unknown operations"):
        ChaosLayer(mem(), operations={"stroe"})


def test_chaos_drop_means_the_operation_ran() -> None:
    be = mem()
    chaos = ChaosLayer(be, drop_rate=1.0, operations={"store"})
    with pytest.raises(BackendConnectionError, match="lost"):
        chaos.store("k", b"v")
    assert be.load("k") == b"v"
    chaos = ChaosLayer(be, error_rate=1.0, operations={"store"})
    with pytest.raises(BackendConnectionError, match="before"):
        chaos.store("k2", b"v")
    assert not be.info("k2").exists
    assert chaos.load("k") == b"v"  # operations outside the set are untouched


def test_chaos_latency() -> None:
    chaos = ChaosLayer(mem(), latency=(0.02, 0.03), operations={"info"})
    t = time.perf_counter()
    chaos.info("x")
    assert time.perf_counter() - t >= 0.02 and chaos.injected["latency"] == 1


# ----------------------------------------------------------------- closed layers
class TaggedMemory(MemoryBackend):
    """A memory backend with real tags and multipart state, for the generic capability code."""

    capabilities = frozenset({"tags", "presign"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, dict[str, str]] = {}

    def get_tags(self, name: str) -> dict[str, str]:
        if not self.info(name).exists:
            raise ObjectNotFound(name)
        return dict(self.tags.get(name, {}))

    def put_tags(self, name: str, tags: Mapping[str, str]) -> None:
        if not self.info(name).exists:
            raise ObjectNotFound(name)
        self.tags[name] = dict(tags)

    def presign(self, name: str, **kw: Any) -> str:
        return f"memory://{name}?signed"


class RecordingLayer(Layer):
    """A layer that adds behaviour to store only and declares nothing: the default, closed, case."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.seen: list[str] = []

    def store(self, name: str, value: Value) -> None:
        self.seen.append(name)
        super().store(name, value)


def tagged() -> TaggedMemory:
    be = TaggedMemory()
    be.create()
    be.open()
    return be


def test_layer_is_closed_by_default() -> None:
    inner = tagged()
    layer = RecordingLayer(inner)
    # derived operations run through the layer's own primitives
    layer.store_many({"a": b"1", "b": b"2"})
    layer.store_file("c", io.BytesIO(b"3"))
    layer.copy("a", "d")
    assert sorted(layer.seen) == ["a", "b", "c", "d"]
    # capabilities the layer does not declare are hidden and refused, naming the layer
    assert inner.supports("tags") and not layer.supports("tags") and layer.capabilities == frozenset()
    with pytest.raises(CapabilityNotSupported) as e:
        layer.presign("a")
    assert "RecordingLayer" in str(e.value) and e.value.capability == "presign"
    with pytest.raises(CapabilityNotSupported):
        layer.get_tags("a")
    # no attribute of the inner backend leaks through; unwrap() reaches it on purpose
    with pytest.raises(AttributeError):
        layer.tags  # type: ignore[attr-defined]  # noqa: B018
    assert layer.unwrap() is inner


def test_transparent_layers_pass_capabilities() -> None:
    inner = tagged()
    layered = StatsLayer(RetryLayer(EmulateLayer(ChaosLayer(inner))))
    assert layered.capabilities == frozenset({"tags", "presign"}) and layered.opened
    layered.store("k", b"v")
    assert layered.presign("k") == "memory://k?signed"
    assert layered.update_tags("k", {"a": "1", "b": "2"}) == {"a": "1", "b": "2"}
    assert layered.update_tags("k", {"a": None, "c": "3"}) == {"b": "2", "c": "3"}
    assert inner.tags["k"] == {"b": "2", "c": "3"}
    layered.unwrap().unwrap()  # type: ignore[attr-defined]


def test_generic_find_by_tag_and_stat() -> None:
    be = tagged()
    for i in range(12):
        be.store(f"p/{i:02d}", b"x" * i)
        be.put_tags(f"p/{i:02d}", {"color": "red" if i % 3 == 0 else "blue"})
    be.store("other/1", b"y")
    be.put_tags("other/1", {"color": "red"})
    assert sorted(be.find_by_tag("color", "red", prefix="p")) == ["p/00", "p/03", "p/06", "p/09"]
    assert len(list(be.find_by_tag("color"))) == 13
    assert list(be.find_by_tag("shape")) == []
    meta = be.stat("p/05")
    assert (meta.name, meta.size, meta.etag) == ("p/05", 5, None) and meta.mtime > 0
    with pytest.raises(ObjectNotFound):
        be.stat("p")  # a directory
    with pytest.raises(ObjectNotFound):
        be.stat("nope")


def test_store_with_meta_refuses_what_it_cannot_keep() -> None:
    be = mem()
    be.store_with_meta("plain", b"v", None)
    be.store_with_meta("plain2", io.BytesIO(b"w"), StoreMeta())
    assert be.load("plain") == b"v" and be.load("plain2") == b"w"
    with pytest.raises(CapabilityNotSupported, match="metadata"):
        be.store_with_meta("m", b"v", StoreMeta(content_type="text/plain"))
    with pytest.raises(CapabilityNotSupported, match="storage_class"):
        be.store_with_meta("m", b"v", StoreMeta(storage_class="GLACIER"))
    assert not be.info("m").exists
    with pytest.raises(CapabilityNotSupported, match="multipart"):
        be.abort_stale_multipart(3600)


def test_layer_forward_names_are_checked() -> None:
    class Bad(Layer):
        forward = frozenset({"store_manny"})

    with pytest.raises(TypeError, match="store_manny"):
        Bad(mem())
