"""gather, defrag and hash against borgstore 0.7's results on the same data; borgstore backends in our Store."""

from __future__ import annotations

import hashlib
import os
import random

import borgstore.store as bstore
import pytest
from borgstore.backends.posixfs import PosixFS as BorgPosixFS

from unistore import Store
from unistore.backends.posixfs import PosixFS
from unistore.errors import InvalidName, ObjectNotFound, ReadRangeError

CONFIG = {"": {"levels": [0]}, "packs/": {"levels": [1]}}


def packs(seed: int = 3, n: int = 20) -> dict[str, bytes]:
    rnd = random.Random(seed)
    return {hashlib.sha256(bytes([i])).hexdigest(): rnd.randbytes(rnd.randint(100, 5000)) for i in range(n)}


@pytest.fixture
def pair(tmp_path: os.PathLike[str]) -> tuple[bstore.Store, Store, dict[str, bytes]]:
    base = os.fspath(tmp_path)
    theirs = bstore.Store(f"file://{base}/b", config=CONFIG)
    ours = Store(f"file://{base}/u", config=CONFIG)
    theirs.create()
    ours.create()
    data = packs()
    theirs.open()
    ours.open()
    for key, value in data.items():
        theirs.store("packs/" + key, value)
        ours.store("packs/" + key, value)
    yield theirs, ours, data
    theirs.close()
    ours.close()


def test_gather_matches_borgstore(pair: tuple[bstore.Store, Store, dict[str, bytes]]) -> None:
    theirs, ours, data = pair
    rnd = random.Random(9)
    keys = sorted(data)
    for _ in range(30):
        sources = []
        for _ in range(rnd.randint(0, 25)):
            key = rnd.choice(keys)
            size = rnd.randint(0, 90)
            offset = rnd.choice([rnd.randint(0, 90), -rnd.randint(size or 1, 99)])
            sources.append((key, offset, size))
        assert ours.gather(sources, namespace="packs") == theirs.gather(sources, namespace="packs")
    assert ours.stats["gather_calls"] == 30 and ours.stats["gather_volume"] > 0
    with pytest.raises(ReadRangeError):
        ours.gather([(keys[0], len(data[keys[0]]) - 5, 10)], namespace="packs")
    with pytest.raises(InvalidName):
        ours.gather([("packs/" + keys[0], 0, 1)])
    with pytest.raises(ValueError):
        ours.gather([(keys[0], 0)], namespace="packs")  # type: ignore[list-item]
    with pytest.raises(ObjectNotFound):
        ours.gather([("ff" * 32, 0, 1)], namespace="packs")


def test_defrag_matches_borgstore(pair: tuple[bstore.Store, Store, dict[str, bytes]]) -> None:
    theirs, ours, data = pair
    keys = sorted(data)
    sources = [(keys[1], 10, 50), (keys[5], -20, 20), (keys[1], 0, 10), (keys[7], 0, len(data[keys[7]]))]
    for algorithm in ("sha256", "blake3"):
        name_b = theirs.defrag(sources, algorithm=algorithm, namespace="packs")
        name_u = ours.defrag(sources, algorithm=algorithm, namespace="packs")
        assert name_u == name_b
        assert ours.load("packs/" + name_u) == theirs.load("packs/" + name_b)
        assert ours.find("packs/" + name_u) == theirs.find("packs/" + name_b)  # same nesting
    target = "ab" * 32
    assert ours.defrag(sources, target=target, namespace="packs") == target
    theirs_target = theirs.defrag(sources, target=target, namespace="packs")
    assert ours.load("packs/" + target) == theirs.load("packs/" + theirs_target)
    assert all(ours.info("packs/" + k).exists for k in keys)  # the sources stay
    with pytest.raises(ValueError):
        ours.defrag(sources, namespace="packs")  # neither target nor algorithm


def test_hash_matches_borgstore(pair: tuple[bstore.Store, Store, dict[str, bytes]]) -> None:
    theirs, ours, data = pair
    key = sorted(data)[4]
    for algorithm in ("sha256", "blake3", "md5", "sha512"):
        assert ours.hash("packs/" + key, algorithm) == theirs.hash("packs/" + key, algorithm)
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        ours.hash("packs/" + key, "nope")


def test_store_over_a_borgstore_backend(tmp_path: os.PathLike[str]) -> None:
    """A backend with only borgstore's methods (no list_recursive, no streaming) works under our Store."""
    foreign = BorgPosixFS(os.path.join(os.fspath(tmp_path), "borg"))
    store = Store(backend=foreign, config=CONFIG)
    store.create()
    key = "cd" * 32
    with store:
        store.store("packs/" + key, b"value from unistore")
        assert [i.name for i in store.list("packs")] == [key]
        assert store.load("packs/" + key, offset=-7) == b"unistore"[1:]
        assert store.gather([(key, 0, 5)], namespace="packs") == b"value"
        with pytest.raises(ObjectNotFound):
            store.load("packs/" + "ee" * 32)  # borgstore's exception becomes unistore's
    assert isinstance(PosixFS(os.path.join(os.fspath(tmp_path), "u")).base_path, os.PathLike | str)
