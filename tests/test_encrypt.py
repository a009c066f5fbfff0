"""EncryptLayer: round trips, partial loads at and across chunk boundaries, tampering, keys, rotation."""

from __future__ import annotations

import io
import logging
import os
from functools import partial

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unistore import Store
from unistore.backends.memory import MemoryBackend
from unistore.backends.posixfs import PosixFS
from unistore.errors import CapabilityNotSupported, ConfigError, IntegrityError, ObjectNotFound, ReadRangeError
from unistore.layers.encrypt import CHUNK, FRAME, HEADER_SIZE, EncryptLayer, plain_size, stored_size
from unistore.layers.keys import generate_key, key_id
from unistore.layers.stats import StatsLayer

KEY = bytes(range(32))


def mem() -> MemoryBackend:
    be = MemoryBackend()
    be.create()
    be.open()
    return be


def enc(inner: MemoryBackend | None = None, **kw: object) -> EncryptLayer:
    return EncryptLayer(inner or mem(), key=kw.pop("key", KEY), **kw)  # type: ignore[arg-type]


SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17]


@pytest.mark.parametrize("n", SIZES)
def test_roundtrip_sizes_and_stored_form(n: int) -> None:
    inner = mem()
    e = enc(inner)
    value = os.urandom(n)
    e.store("ns/item", value)
    assert e.load("ns/item") == value
    assert e.info("ns/item").size == n and [i.size for i in e.list("ns")] == [n]
    stored = inner.load("ns/item")
    assert len(stored) == stored_size(n) and plain_size(len(stored)) == n
    if n >= 16:
        assert value[:16] not in stored  # the plaintext is not in the stored form
    e.store_file("ns/streamed", io.BytesIO(value))
    e.store_file("ns/sized", io.BytesIO(value + b"extra"), size=n)
    assert e.load("ns/streamed") == value and e.load("ns/sized") == value
    out = io.BytesIO()
    assert e.load_file("ns/item", out) == n and out.getvalue() == value


@settings(max_examples=150, deadline=None)
@given(
    n=st.sampled_from(SIZES),
    offset=st.integers(min_value=-4 * CHUNK, max_value=4 * CHUNK),
    size=st.one_of(st.none(), st.integers(min_value=0, max_value=3 * CHUNK)),
)
def test_partial_loads_match_slicing(n: int, offset: int, size: int | None) -> None:
    e = enc()
    value = bytes((i * 7 + 3) % 251 for i in range(n))
    e.store("v", value)
    start = n + offset if offset < 0 else offset
    if start < 0:
        with pytest.raises(ReadRangeError):
            e.load("v", offset=offset, size=size)
        return
    expected = value[start:] if size is None else value[start : start + size]
    assert e.load("v", offset=offset, size=size) == expected
    out = io.BytesIO()
    e.load_file("v", out, offset=offset, size=size)
    assert out.getvalue() == expected


def test_partial_load_reads_only_the_chunks_it_needs() -> None:
    counted = StatsLayer(mem())
    e = EncryptLayer(counted, key=KEY)
    e.store("big", os.urandom(40 * CHUNK))
    counted.reset()
    assert len(e.load("big", offset=17 * CHUNK - 50, size=100)) == 100  # straddles two chunks
    assert counted.stats["load_volume"] <= HEADER_SIZE + 2 * FRAME


def test_tampering_is_detected() -> None:
    inner = mem()
    e = enc(inner)
    value = os.urandom(3 * CHUNK + 5)
    e.store("a", value)
    stored = bytearray(inner.load("a"))
    # a flipped byte
    flipped = bytearray(stored)
    flipped[HEADER_SIZE + FRAME + 100] ^= 1
    inner.store("flip", bytes(stored))
    inner.store("a", bytes(flipped))
    with pytest.raises(IntegrityError):
        e.load("a")
    with pytest.raises(IntegrityError):
        e.load("a", offset=CHUNK + 10, size=5)
    assert e.load("a", offset=0, size=10) == value[:10]  # untouched chunks still read
    # a value moved to another name
    with pytest.raises(IntegrityError, match="flip"):
        e.load("flip")
    # chunks swapped
    swapped = stored[:HEADER_SIZE] + stored[HEADER_SIZE + FRAME : HEADER_SIZE + 2 * FRAME]
    swapped += stored[HEADER_SIZE : HEADER_SIZE + FRAME] + stored[HEADER_SIZE + 2 * FRAME :]
    inner.store("a", bytes(swapped))
    with pytest.raises(IntegrityError):
        e.load("a")
    # truncated at a chunk boundary: the new last chunk lacks the final flag
    inner.store("a", bytes(stored[: HEADER_SIZE + 2 * FRAME]))
    assert e.info("a").size == 2 * CHUNK
    with pytest.raises(IntegrityError):
        e.load("a")
    with pytest.raises(IntegrityError):
        e.load("a", offset=-10)
    # truncated mid-chunk: an impossible size or a failed tag
    inner.store("a", bytes(stored[: HEADER_SIZE + FRAME + 10]))
    with pytest.raises(IntegrityError):
        e.load("a")
    # not encrypted at all
    inner.store("plain", b"just some plaintext bytes, long enough to look like a value")
    with pytest.raises(IntegrityError, match="not a value encrypted"):
        e.load("plain")
    # an empty value replaced by another name's empty value
    e.store("e1", b"")
    e.store("e2", b"")
    inner.store("e1", inner.load("e2"))
    with pytest.raises(IntegrityError):
        e.load("e1")
    with pytest.raises(IntegrityError):
        e.load_file("e1", io.BytesIO())


def test_wrong_key_and_rotation() -> None:
    inner = mem()
    old = generate_key()
    e_old = enc(inner, key=old)
    for i in range(5):
        e_old.store(f"d/{i}", bytes([i]) * (i * 30000))
    e_old.move("d/4", "d/4.del")
    with pytest.raises(IntegrityError, match="unknown key"):
        enc(inner, key=generate_key()).load("d/1")
    new = generate_key()
    rotated = enc(inner, key=new, old_keys=[old])
    assert rotated.load("d/2") == b"\x02" * 60000  # old items still decrypt
    rotated.store("d/new", b"fresh")
    assert rotated.key_id_of("d/new") == key_id(new) and rotated.key_id_of("d/1") == key_id(old)
    assert rotated.reencrypt("d") == (5, 1)  # soft-deleted d/4.del included
    assert rotated.reencrypt("d") == (0, 6)  # resumable: done items are only checked
    only_new = enc(inner, key=new)
    assert only_new.load("d/3") == b"\x03" * 90000 and only_new.load("d/4.del") == b"\x04" * 120000


def test_soft_delete_undelete_change_level_through_the_store() -> None:
    store = Store(
        "memory://", config={"": {"levels": [0]}, "data/": {"levels": [0]}}, layers=[partial(EncryptLayer, key=KEY)]
    )
    store.create()
    key = "data/" + "ab" * 32
    with store:
        store.store(key, b"secret value")
        store.move(key, delete=True)
        assert store.load(key, deleted=True) == b"secret value"
        store.move(key, undelete=True)
        assert store.load(key, offset=-5) == b"value"
        store.set_levels({"": [0], "data/": [0, 2]})
        store.move(key, change_level=True)  # the bound name changes: re-encrypted for data/ab/ab/...
        assert store.find(key) == "data/ab/ab/" + "ab" * 32
        assert store.load(key) == b"secret value"
        assert [i.name for i in store.list("data")] == ["ab" * 32]
        assert [i.size for i in store.list("data")] == [12]


def test_capabilities_that_bypass_it_are_hidden(tmp_path: os.PathLike[str]) -> None:
    be = PosixFS(os.path.join(os.fspath(tmp_path), "s"))
    be.create()
    be.open()
    e = EncryptLayer(be, key=KEY)
    with pytest.raises(CapabilityNotSupported, match="presign"):
        e.presign("x")
    with pytest.raises(CapabilityNotSupported, match="multipart"):
        e.create_multipart("x")
    e.store("x", b"1234")
    e.copy("x", "y")  # copy re-encrypts for the new name
    assert e.load("y") == b"1234"
    assert e.stat("y").size == 4 and e.stat("y").etag is None
    with pytest.raises(ObjectNotFound):
        e.load("missing", offset=-1)


def test_key_sources_and_secrecy(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch,
                                 caplog: pytest.LogCaptureFixture) -> None:
    key = generate_key()
    raw = os.path.join(os.fspath(tmp_path), "raw.key")
    hexf = os.path.join(os.fspath(tmp_path), "hex.key")
    with open(raw, "wb") as f:
        f.write(key)
    with open(hexf, "w") as f:
        f.write(key.hex() + "\n")
    monkeypatch.setenv("TEST_UNISTORE_KEY", key.hex())
    inner = mem()
    layers = [
        EncryptLayer(inner, key=key),
        EncryptLayer(inner, key_file=raw),
        EncryptLayer(inner, key_file=hexf),
        EncryptLayer(inner, key_env="TEST_UNISTORE_KEY"),
        EncryptLayer(inner, key=lambda: key),
    ]
    assert len({layer.key_id for layer in layers}) == 1
    caplog.set_level(logging.DEBUG)
    layers[0].store("k", b"v")
    for layer in layers:
        assert layer.load("k") == b"v"
        assert key.hex() not in repr(layer) and repr(key) not in repr(layer)
    assert key.hex() not in caplog.text
    with pytest.raises(ConfigError, match="32 bytes"):
        EncryptLayer(inner, key=b"short")
    with pytest.raises(ConfigError, match="exactly one"):
        EncryptLayer(inner)
    with pytest.raises(ConfigError, match="key file"):
        EncryptLayer(inner, key_file=os.path.join(os.fspath(tmp_path), "missing"))
    with pytest.raises(ConfigError) as err:
        EncryptLayer(inner, key_env="TEST_UNISTORE_NOPE")
    assert key.hex() not in str(err.value)
