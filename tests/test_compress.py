"""CompressLayer: round trips, partial loads, raw fallback, legacy values, and compress-then-encrypt."""

from __future__ import annotations

import io
import os
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unistore import Store
from unistore.backends.memory import MemoryBackend
from unistore.backends.posixfs import PosixFS
from unistore.errors import CapabilityNotSupported, ConfigError, IntegrityError, ReadRangeError
from unistore.layers.compress import CHUNK, HEADER, CompressLayer
from unistore.layers.encrypt import EncryptLayer
from unistore.layers.stats import StatsLayer

TEXT = b"".join(b"%06d the quick brown fox jumps over the lazy dog\n" % i for i in range(40000))  # ~2.2 MB


def mem() -> MemoryBackend:
    be = MemoryBackend()
    be.create()
    be.open()
    return be


SIZES = [0, 1, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 11]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["text", "random"])
def test_roundtrip(n: int, kind: str) -> None:
    inner = mem()
    c = CompressLayer(inner)
    value = TEXT[:n] if kind == "text" else os.urandom(n)
    c.store("ns/v", value)
    assert c.load("ns/v") == value
    assert c.info("ns/v").size == n and [i.size for i in c.list("ns")] == [n]
    assert [i.size for i in c.list_recursive("")] == [n]
    stored = inner.load("ns/v")
    if kind == "text" and n >= 1000:
        assert len(stored) < n / 3  # text compresses
    if kind == "random":
        assert len(stored) <= n + 64 + 4 * (n // CHUNK + 1)  # incompressible chunks are stored raw
    c.store_file("ns/s", io.BytesIO(value))
    c.store_file("ns/t", io.BytesIO(value + b"more"), size=n)
    assert c.load("ns/s") == value and c.load("ns/t") == value


@settings(max_examples=120, deadline=None)
@given(
    n=st.sampled_from(SIZES),
    offset=st.integers(min_value=-4 * CHUNK, max_value=4 * CHUNK),
    size=st.one_of(st.none(), st.integers(min_value=0, max_value=3 * CHUNK)),
)
def test_partial_loads_match_slicing(n: int, offset: int, size: int | None) -> None:
    c = CompressLayer(mem())
    value = TEXT[:n]
    c.store("v", value)
    start = n + offset if offset < 0 else offset
    if start < 0:
        with pytest.raises(ReadRangeError):
            c.load("v", offset=offset, size=size)
        return
    expected = value[start:] if size is None else value[start : start + size]
    assert c.load("v", offset=offset, size=size) == expected
    out = io.BytesIO()
    c.load_file("v", out, offset=offset, size=size)
    assert out.getvalue() == expected


def test_partial_load_stays_partial() -> None:
    counted = StatsLayer(mem())
    c = CompressLayer(counted)
    value = os.urandom(20 * CHUNK)  # raw chunks: the worst case for bytes read
    c.store("big", value)
    counted.reset()
    assert c.load("big", offset=7 * CHUNK - 10, size=20) == value[7 * CHUNK - 10 : 7 * CHUNK + 10]
    assert counted.stats["load_volume"] <= 16 * 1024 + 2 * CHUNK  # the tail, then two chunks


def test_values_stored_before_the_layer_still_read() -> None:
    inner = mem()
    inner.store("old", b"written before compression was turned on")
    c = CompressLayer(inner)
    assert c.load("old") == b"written before compression was turned on"
    assert c.load("old", offset=8, size=6) == b"before"
    assert c.load("old", offset=-2) == b"on"
    assert c.info("old").size == 40
    out = io.BytesIO()
    c.load_file("old", out, offset=-3)
    assert out.getvalue() == b" on"


def test_damaged_values_raise() -> None:
    inner = mem()
    c = CompressLayer(inner)
    c.store("v", TEXT[: 2 * CHUNK])
    stored = bytearray(inner.load("v"))
    stored[len(HEADER) + 5] ^= 0xFF
    inner.store("v", bytes(stored))
    with pytest.raises(IntegrityError):
        c.load("v")


def test_compress_then_encrypt_in_the_store(tmp_path: os.PathLike[str]) -> None:
    key = os.urandom(32)
    url = "file://" + os.path.join(os.fspath(tmp_path), "store")
    config = {"": {"levels": [0]}, "data/": {"levels": [1]}}
    store = Store(url, config=config, layers=[CompressLayer, partial(EncryptLayer, key=key)])
    store.create()
    key_name = "data/" + "cd" * 32
    with store:
        store.store(key_name, TEXT)
        assert store.load(key_name, offset=-6) == TEXT[-6:]
        store.move(key_name, delete=True)
        store.move(key_name, undelete=True)
        assert store.load(key_name) == TEXT
        assert [i.size for i in store.list("data")] == [len(TEXT)]
    raw = PosixFS(os.path.join(os.fspath(tmp_path), "store"))
    with raw:
        stored = raw.load("data/cd/" + "cd" * 32)
    assert len(stored) < len(TEXT) / 3 and b"quick brown" not in stored


def test_options_and_capabilities() -> None:
    with pytest.raises(ConfigError, match="level"):
        CompressLayer(mem(), level=0)
    c = CompressLayer(mem(), level=19, exact_sizes=False)
    c.store("x", TEXT[:5000])
    assert c.info("x").size == 5000  # info is always exact
    assert next(iter(c.list(""))).size < 5000  # list reports stored sizes when asked to
    with pytest.raises(CapabilityNotSupported, match="presign"):
        c.presign("x")
    assert "zstd:19" in repr(c)


def test_wrap_data_layers_from_options(tmp_path: os.PathLike[str]) -> None:
    from unistore.layers.stack import parse_compression, wrap_data_layers

    assert [parse_compression(s) for s in ("zstd", "zstd:9", "none", "")] == [3, 9, None, None]
    for bad in ("gzip", "zstd:0", "zstd:x"):
        with pytest.raises(ConfigError):
            parse_compression(bad)
    key_file = os.path.join(os.fspath(tmp_path), "k")
    with open(key_file, "wb") as f:
        f.write(os.urandom(32))
    inner = mem()
    stack = wrap_data_layers(inner, encryption_key_file=key_file, compression="zstd:5")
    assert isinstance(stack, CompressLayer) and isinstance(stack.unwrap(), EncryptLayer)
    stack.store("k", TEXT[:10000])
    assert stack.load("k") == TEXT[:10000] and b"quick" not in inner.load("k")
    assert wrap_data_layers(inner) is inner
    with pytest.raises(ConfigError, match="old keys"):
        wrap_data_layers(inner, old_keys=[os.urandom(32)])
