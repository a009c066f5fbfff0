"""The namespace cache against borgstore 0.7's, answer for answer, plus what borgstore does not check."""

from __future__ import annotations

import os
import random
from functools import partial
from typing import Any

import borgstore.store as bstore
import pytest

from unistore import Store
from unistore.backends.posixfs import PosixFS
from unistore.errors import ConfigError, ObjectNotFound, ReadRangeError

KEYS = [bytes([i]).hex() * 32 for i in range(12)]
CONFIGS = {
    "writethrough": {"": {"levels": [0]}, "packs/": {"levels": [1], "cache": "writethrough"}},
    "writethrough-size": {"": {"levels": [0]}, "packs/": {"levels": [1], "cache": "writethrough", "size": 6000}},
    "mirror-size": {"": {"levels": [0]}, "packs/": {"levels": [1], "cache": "mirror", "size": 5000}},
    "writethrough-age": {"": {"levels": [0]}, "packs/": {"levels": [1], "cache": "writethrough", "max_age": 3600}},
}


def outcome(fn: Any) -> Any:
    try:
        result = fn()
    except (KeyError, ValueError, ObjectNotFound, ReadRangeError, bstore.ObjectNotFound, bstore.ReadRangeError) as e:
        return ("error", type(e).__name__.replace("ObjectNotFound", "NotFound"))
    if hasattr(result, "__next__"):
        return sorted((i.name, i.size) for i in result)
    if hasattr(result, "exists"):
        return (result.exists, result.size if result.exists else 0)
    return result


def call(store: Any, op: tuple[Any, ...]) -> Any:
    kind, key, *rest = op
    name = "packs/" + key
    if kind == "store":
        return store.store(name, rest[0])
    if kind == "load":
        return store.load(name, offset=rest[0], size=rest[1])
    if kind == "info":
        return store.info(name)
    if kind == "delete":
        return store.delete(name)
    if kind == "soft":
        return store.move(name, delete=True)
    if kind == "undelete":
        return store.move(name, undelete=True)
    if kind == "gather":
        return store.gather([(key, rest[0], rest[1]), (key, 0, 1)], namespace="packs")
    return store.list("packs")


def run(store: Any, ops: list[tuple[Any, ...]]) -> list[Any]:
    with store:
        out = [outcome(partial(call, store, op)) for op in ops]
        stats = store.stats
    # (borgstore does not count calls that raised; unistore does: load_calls is left out)
    out.append({k: stats[k] for k in ("cache_hits", "cache_misses", "backend_load_calls")})
    return out


def random_ops(seed: int, n: int = 300) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    ops: list[tuple[Any, ...]] = []
    for _ in range(n):
        key = rnd.choice(KEYS)
        kind = rnd.choices(["store", "load", "info", "delete", "soft", "undelete", "gather", "list"],
                           [4, 6, 1, 1, 1, 1, 2, 1])[0]
        if kind == "store":
            ops.append((kind, key, rnd.randbytes(rnd.choice([0, 10, 700, 1500, 2600]))))
        elif kind in ("load", "gather"):
            offset = rnd.choice([0, 1, 5, -3, -50, 3000])
            ops.append((kind, key, offset, rnd.choice([None, 0, 1, 4, 100]) if kind == "load" else rnd.choice([1, 3])))
        else:
            ops.append((kind, key))
    return ops


@pytest.mark.parametrize("label", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_same_answers_as_borgstore_with_cache(tmp_path: os.PathLike[str], label: str, seed: int) -> None:
    config = CONFIGS[label]
    base = os.fspath(tmp_path)
    ops = random_ops(seed)
    theirs = bstore.Store(f"file://{base}/b-primary", config=config, cache_url=f"file://{base}/b-cache")
    theirs.create()
    theirs.cache_backend.create()
    ours = Store(f"file://{base}/u-primary", config=config, cache_url=f"file://{base}/u-cache")
    ours.create()
    expected = run(theirs, ops)
    got = run(ours, ops)
    assert got[:-1] == expected[:-1]
    assert got[-1] == expected[-1]  # the same hits, misses and backend loads


def test_a_second_client_sees_what_the_first_cached(tmp_path: os.PathLike[str]) -> None:
    base = os.fspath(tmp_path)
    config = CONFIGS["writethrough-size"]
    a = Store(f"file://{base}/primary", config=config, cache_url=f"file://{base}/cache")
    a.create()
    b = Store(f"file://{base}/primary", config=config, cache_url=f"file://{base}/cache")
    with a, b:
        a.store("packs/" + KEYS[0], b"x" * 1000)
        assert b.load("packs/" + KEYS[0], offset=10, size=5) == b"xxxxx"
        assert b.stats["cache_hits"] == 1 and b.stats["backend_load_calls"] == 0
        a.delete("packs/" + KEYS[0])
        with pytest.raises(ObjectNotFound):
            b.load("packs/" + KEYS[0])  # deleted through the cache too


def test_size_limit_and_eviction_without_listing(tmp_path: os.PathLike[str]) -> None:
    base = os.fspath(tmp_path)
    config = {"": {"levels": [0]}, "packs/": {"levels": [1], "cache": "writethrough", "size": 4000}}
    store = Store(f"file://{base}/primary", config=config, cache_url=f"file://{base}/cache")
    store.create()
    cache = PosixFS(f"{base}/cache")
    with store:
        for key in KEYS[:8]:
            store.store("packs/" + key, b"v" * 1000)
        with cache:
            cached = sum(i.size for i in cache.list_recursive("packs")) - 16 * 4  # each entry has one digest
        assert cached <= 4000
        # the most recently stored items are the cached ones
        hits_before = store.stats["cache_hits"]
        store.load("packs/" + KEYS[7])
        assert store.stats["cache_hits"] == hits_before + 1
        store.load("packs/" + KEYS[0])
        assert store.stats["cache_misses"] >= 1


def test_damaged_or_missing_cache_never_gives_wrong_bytes(tmp_path: os.PathLike[str], caplog: Any) -> None:
    base = os.fspath(tmp_path)
    config = CONFIGS["writethrough"]
    store = Store(f"file://{base}/primary", config=config, cache_url=f"file://{base}/cache")
    store.create()
    name = "packs/" + KEYS[3]
    with store:
        store.store(name, b"the real value" * 100)
        nested = store.find(name)
        path = os.path.join(base, "cache", nested)
        with open(path, "r+b") as f:  # flip a byte of the cached copy
            f.seek(40)
            byte = f.read(1)
            f.seek(40)
            f.write(bytes([byte[0] ^ 1]))
        assert store.load(name) == b"the real value" * 100
        assert store.stats["cache_errors"] == 1 and "damaged" in caplog.text
        # a copy of another item's entry under this name is detected too
        other = "packs/" + KEYS[4]
        store.store(other, b"another value" * 100)
        with open(os.path.join(base, "cache", store.find(other)), "rb") as f:
            foreign = f.read()
        with open(path, "wb") as f:
            f.write(foreign)
        assert store.load(name, offset=0, size=14) == b"the real value"
    # an unreachable cache (it cannot be opened, nor created): the store works without it
    broken = Store(f"file://{base}/primary", config=config, cache_backend=_Unreachable())
    with broken:
        assert broken.load(name) == b"the real value" * 100
        assert broken.stats["cache_disabled"] is True


class _Unreachable(PosixFS):
    def __init__(self) -> None:
        super().__init__("/proc/definitely/not/here")


def test_cache_config_errors(tmp_path: os.PathLike[str]) -> None:
    base = os.fspath(tmp_path)
    with pytest.raises(ConfigError, match="cache_url or cache_backend"):
        Store(f"file://{base}/p", config=CONFIGS["writethrough"])
    with pytest.raises(ConfigError, match="cache mode"):
        Store(f"file://{base}/p", config={"": {"levels": [0], "cache": "sometimes"}}, cache_url=f"file://{base}/c")
    with pytest.raises(ConfigError, match="size"):
        Store(f"file://{base}/p", config={"": {"levels": [0], "cache": "mirror", "size": -1}},
              cache_url=f"file://{base}/c")
    store = Store(f"file://{base}/p", config=CONFIGS["writethrough"], cache_url=f"file://{base}/c")
    assert "cache_backend" in repr(store)
