"""Store: borgstore 0.7 semantics over memory and posixfs."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from unistore import Store
from unistore.backends.memory import MemoryBackend
from unistore.errors import (
    ConfigError,
    InvalidName,
    NoBackendGiven,
    ObjectNotFound,
    UnknownNamespace,
)

CONFIG = {"": {"levels": [0]}, "data/": {"levels": [2]}, "flat/": {"levels": [0]}}


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


@pytest.fixture(params=["memory", "posixfs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        s = Store(backend=MemoryBackend(uuid.uuid4().hex), config=CONFIG)
    else:
        s = Store(f"file://{tmp_path}/store", config=CONFIG)
    s.create()
    with s:
        yield s
    s.destroy()


def test_constructor_errors(tmp_path: Path) -> None:
    with pytest.raises(NoBackendGiven):
        Store(config=CONFIG)
    with pytest.raises(ConfigError):
        Store(f"file://{tmp_path}/s", config=None)
    with pytest.raises(ConfigError):
        Store(f"file://{tmp_path}/s", config={"data/": {"levels": []}})
    with pytest.raises(ConfigError):
        Store(f"file://{tmp_path}/s", config={"data/": {"levels": [1], "cache": "mirror"}})
    with pytest.raises(ConfigError):
        Store("memory://", config=CONFIG, permissions={"": "r"})


def test_nesting_layout(store: Store) -> None:
    k = key(1)
    store.store(f"data/{k}", b"v")
    assert store.find(f"data/{k}") == f"data/{k[:2]}/{k[2:4]}/{k}"
    assert store.backend.load(f"data/{k[:2]}/{k[2:4]}/{k}") == b"v"
    store.store("config", b"c")
    assert store.backend.load("config") == b"c"


def test_longest_namespace_wins(store: Store) -> None:
    store.store("flat/abcdef", b"f")
    assert store.find("flat/abcdef") == "flat/abcdef"


def test_unknown_namespace() -> None:
    s = Store(backend=MemoryBackend(), config={"data/": {"levels": [1]}})
    with pytest.raises(UnknownNamespace) as e:
        s.find("other/x")
    assert isinstance(e.value, KeyError) and "other/x" in str(e.value)


def test_invalid_keys(store: Store) -> None:
    for bad in ["data/UPPER", "data/with space", "data/x.tmp", "data/y.hid", "../x", "data/" + "a" * 100, "naïve"]:
        with pytest.raises(InvalidName):
            store.store(bad, b"x")


def test_roundtrip_info_delete(store: Store) -> None:
    k = f"data/{key(2)}"
    store.store(k, b"0123456789")
    assert store.load(k) == b"0123456789"
    assert store.load(k, offset=-4, size=2) == b"67"
    assert store.load(k, offset=2, size=3) == b"234"
    info = store.info(k)
    assert info.exists and info.size == 10 and info.name == key(2)
    store.delete(k)
    assert not store.info(k).exists
    with pytest.raises(ObjectNotFound):
        store.load(k)


def test_fresh_namespaces_list_empty(store: Store) -> None:
    assert list(store.list("data")) == []
    assert list(store.list("flat", deleted=True)) == []


def test_list_unnests_and_sorts(store: Store) -> None:
    keys = sorted(key(i) for i in range(30))
    for k in keys:
        store.store(f"data/{k}", k.encode())
    listed = list(store.list("data"))
    assert [i.name for i in listed] == keys
    assert all(i.size == 64 for i in listed)


def test_soft_delete_and_undelete(store: Store) -> None:
    a, b = f"data/{key(3)}", f"data/{key(4)}"
    store.store(a, b"A")
    store.store(b, b"B")
    store.move(a, delete=True)
    assert [i.name for i in store.list("data")] == [key(4)]
    assert [i.name for i in store.list("data", deleted=True)] == [key(3)]
    assert not store.info(a).exists
    assert store.info(a, deleted=True).exists
    assert store.load(a, deleted=True) == b"A"
    with pytest.raises(ObjectNotFound):
        store.load(a)
    store.move(a, undelete=True)
    assert store.load(a) == b"A"
    assert list(store.list("data", deleted=True)) == []
    store.move(b, delete=True)
    store.delete(b, deleted=True)
    assert list(store.list("data", deleted=True)) == []


def test_rename(store: Store) -> None:
    store.store("flat/aaaa", b"1")
    store.move("flat/aaaa", "flat/bbbb")
    assert store.load("flat/bbbb") == b"1"
    assert not store.info("flat/aaaa").exists
    with pytest.raises(ConfigError):
        store.move("flat/bbbb")


def test_multi_level_find_and_change_level(store: Store) -> None:
    old = [key(i) for i in range(10)]
    store.set_levels({"": [0], "data/": [1]})
    for k in old:
        store.store(f"data/{k}", b"old")
    assert store.find(f"data/{old[0]}") == f"data/{old[0][:2]}/{old[0]}"
    # upgrading: items live at level 1, new ones go to level 2 (the last)
    store.set_levels({"": [0], "data/": [1, 2]})
    new = key(100)
    store.store(f"data/{new}", b"new")
    assert store.find(f"data/{new}") == f"data/{new[:2]}/{new[2:4]}/{new}"
    assert store.find(f"data/{old[0]}") == f"data/{old[0][:2]}/{old[0]}"
    assert store.load(f"data/{old[0]}") == b"old"
    # both levels are listed
    assert sorted(i.name for i in store.list("data")) == sorted(old + [new])
    # overwriting an old item keeps its level
    store.store(f"data/{old[1]}", b"old2")
    assert store.backend.load(f"data/{old[1][:2]}/{old[1]}") == b"old2"
    for k in old:
        store.move(f"data/{k}", change_level=True)
    assert store.find(f"data/{old[0]}") == f"data/{old[0][:2]}/{old[0][2:4]}/{old[0]}"
    assert store.load(f"data/{old[1]}") == b"old2"
    assert sorted(i.name for i in store.list("data")) == sorted(old + [new])


def test_change_level_of_deleted_item(store: Store) -> None:
    k = key(7)
    store.set_levels({"": [0], "data/": [1]})
    store.store(f"data/{k}", b"x")
    store.move(f"data/{k}", delete=True)
    store.set_levels({"": [0], "data/": [1, 2]})
    store.move(f"data/{k}", change_level=True, deleted=True)
    assert store.backend.info(f"data/{k[:2]}/{k[2:4]}/{k}.del").exists
    store.move(f"data/{k}", undelete=True)
    assert store.load(f"data/{k}") == b"x"


def test_create_levels(tmp_path: Path) -> None:
    s = Store(f"file://{tmp_path}/s", config={"": {"levels": [0]}, "ns/": {"levels": [1]}})
    s.create()
    s.create_levels()
    assert len(os.listdir(tmp_path / "s" / "ns")) == 256
    with s:
        assert list(s.list("ns")) == []


def test_hash_and_quota(store: Store) -> None:
    store.store("flat/abcd", b"hash me")
    assert store.hash("flat/abcd") == hashlib.sha256(b"hash me").hexdigest()
    assert store.hash("flat/abcd", "md5") == hashlib.md5(b"hash me").hexdigest()
    assert store.quota() == {"limit": -1, "usage": -1}


def test_stats(store: Store) -> None:
    k = f"data/{key(5)}"
    store.store(k, b"x" * 1000)
    store.load(k)
    store.load(k, size=10)
    store.info(k)
    list(store.list("data"))
    store.move(k, delete=True)
    st = store.stats
    assert st["store_calls"] == 1 and st["store_volume"] == 1000
    assert st["load_calls"] == 2 and st["load_volume"] == 1010
    assert st["info_calls"] == 1 and st["list_calls"] == 1 and st["move_calls"] == 1
    assert st["delete_calls"] == 0
    assert st["store_time"] > 0 and st["store_throughput"] > 0
    for op in ("info", "load", "store", "delete", "move", "list"):
        assert f"{op}_calls" in st and f"{op}_time" in st


def test_stats_do_not_count_level_probes(store: Store) -> None:
    store.set_levels({"": [0], "data/": [1, 2]})
    store.store(f"data/{key(9)}", b"x")
    assert store.stats["info_calls"] == 0


def test_streaming_and_bulk(store: Store) -> None:
    k = f"data/{key(6)}"
    store.store_file(k, io.BytesIO(b"s" * 100_000))
    out = io.BytesIO()
    assert store.load_file(k, out, offset=-10) == 10
    assert out.getvalue() == b"s" * 10
    items = {f"data/{key(i)}": os.urandom(32) for i in range(200, 240)}
    store.store_many(items)
    assert dict(store.load_many(items)) == items
    assert store.stats["store_calls"] == 41
    assert store.delete_many(list(items)) == 40


def test_thread_safety(store: Store) -> None:
    def work(i: int) -> bytes:
        k = f"data/{key(1000 + i)}"
        v = os.urandom(100)
        store.store(k, v)
        assert store.load(k) == v
        store.move(k, delete=True)
        store.move(k, undelete=True)
        return v

    with ThreadPoolExecutor(8) as pool:
        values = list(pool.map(work, range(200)))
    assert len(list(store.list("data"))) == 200
    assert store.stats["store_calls"] == 200 and store.stats["move_calls"] == 400
    assert store.load(f"data/{key(1000)}") == values[0]


def test_emulated_latency(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BORGSTORE_LATENCY", "20000")  # 20 ms, borgstore's variable name
    s = Store(backend=MemoryBackend(), config={"": {"levels": [0]}})
    s.create()
    with s:
        s.store("a", b"1")
        s.load("a")
    assert s.stats["store_time"] >= 0.02 and s.stats["load_time"] >= 0.02
