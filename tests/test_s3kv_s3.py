"""The s3kv adapter on S3: s3kv 0.1.5 itself on the same SeaweedFS bucket in both directions, tags
(merge, concurrent search, the tag index), object lock on a bucket created with it, and listing
past 1,000 keys."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.test_s3kv import wipe
from unistore.adapters.s3kv import S3KV, KeyNotFound, tagindex
from unistore.adapters.s3kv.tagindex import ENABLED
from unistore.backends.s3 import S3Backend
from unistore.errors import PermissionDenied


@pytest.fixture(autouse=True)
def _private_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="module")
def shared(seaweedfs: Any) -> Iterator[tuple[S3Backend, Any]]:
    """One bucket for the module: an opened backend on it and s3kv 0.1.5's own S3KV, emptied after each test."""
    from s3kv.s3kv import S3KV as OldS3KV

    bucket = seaweedfs.new_bucket()
    be = S3Backend.from_url(seaweedfs.url(bucket))
    be.open()
    yield be, OldS3KV(seaweedfs.endpoint, bucket, seaweedfs.access_key, seaweedfs.secret_key)
    be.close()


@pytest.fixture
def backend(seaweedfs: Any, shared: tuple[S3Backend, Any]) -> Iterator[S3Backend]:
    yield shared[0]
    wipe(seaweedfs, shared[0].bucket)


@pytest.fixture
def old(shared: tuple[S3Backend, Any]) -> Iterator[Any]:
    yield shared[1]


@pytest.fixture
def kv(backend: S3Backend) -> Iterator[S3KV]:
    with S3KV(backend=backend) as store:
        yield store


COMPAT_VALUES: dict[str, Any] = {
    "cfg": {"debug": False, "level": 3, "names": ["a", "b"], "nested": {"x": None}},
    "list": [1, 2.5, "three"],
    "text": "ünïcode ✓",
    "number": 7,
    "flag": True,
}


def test_s3kv_writes_unistore_reads(kv: S3KV, old: Any) -> None:
    try:
        for key, value in COMPAT_VALUES.items():
            old.add(key, value)
        old.tag_key("cfg", {"env": "prod"})
        assert kv.list_keys() == sorted(COMPAT_VALUES)
        for key, value in COMPAT_VALUES.items():
            assert kv.get(key) == value
        assert kv.get_tags("cfg") == {"env": "prod"}
        assert kv.get_tags("s3kv/cfg.json") == {"env": "prod"}  # s3kv's raw form
        assert kv.tag_key("cfg", {"team": "ops"}) == {"env": "prod", "team": "ops"}  # merged, not replaced
        assert kv.find_keys_by_tag_value("env", "prod") == ["cfg"]
        old.add("cfg", {"debug": True})
        kv.clear_cache_for_key("cfg")
        assert kv["cfg"] == {"debug": True}
    finally:
        for key in COMPAT_VALUES:
            old.clear_cache_for_key(key)


def test_unistore_writes_s3kv_reads(kv: S3KV, old: Any) -> None:
    for key, value in COMPAT_VALUES.items():
        kv.add(key, value)
    kv.add("dir/sub", {"slash": True})
    kv.add("blob", b"\x00\xff")
    kv.add("marker", {"$unistore": "x"})
    kv.tag_key("cfg", {"env": "prod"})
    for key, value in COMPAT_VALUES.items():
        assert old.get(key) == value
    assert old.get("dir/sub") == {"slash": True}
    assert old.get("blob") == {"$unistore": "bytes", "base64": "AP8="}
    assert old.get("marker") == {"$unistore": "json", "value": {"$unistore": "x"}}
    assert sorted(old.list_keys()) == sorted([*COMPAT_VALUES, "dir/sub", "blob", "marker"])
    assert old.get_tags("s3kv/cfg.json") == {"env": "prod"}
    assert old.key_exists("cfg") and old.get_key_size("cfg") == kv.get_key_size("cfg")
    assert old.find_keys_by_tag_value("env", "prod") == ["cfg"]


def test_retention_and_legal_hold_both_ways(seaweedfs: Any) -> None:
    from s3kv.s3kv import S3KV as OldS3KV

    bucket = seaweedfs.new_bucket(object_lock=True)
    old = OldS3KV(seaweedfs.endpoint, bucket, seaweedfs.access_key, seaweedfs.secret_key)
    with S3KV(seaweedfs.endpoint, bucket, seaweedfs.access_key, seaweedfs.secret_key) as kv:
        kv.add("doc", {"v": 1})
        until = kv.place_retention_lock("doc", 1)
        assert until > datetime.now(UTC) + timedelta(hours=23)
        mode, locked_until = kv.get_retention_lock("doc")
        assert mode == "GOVERNANCE" and abs(locked_until.timestamp() - until.timestamp()) < 2
        with pytest.raises(PermissionDenied):
            kv.delete("doc")
        kv.remove_retention_lock("doc")  # s3kv's own fails with InvalidRequest
        assert kv.get_retention_lock("doc") is None
        kv.apply_legal_hold("doc")
        assert kv.is_legal_hold_applied("doc") and old.is_legal_hold_applied("doc")
        with pytest.raises(PermissionDenied):
            kv.delete("doc")
        kv.release_legal_hold("doc")
        assert not kv.is_legal_hold_applied("doc")
        assert kv.delete("doc") is True and "doc" not in kv
        old.add("theirs", {"v": 2})
        old.place_retention_lock("theirs", 1)
        old.apply_legal_hold("theirs")
        assert kv.get_retention_lock("theirs")[0] == "GOVERNANCE"
        assert kv.is_legal_hold_applied("theirs")
        kv.release_legal_hold("theirs")
        assert not old.is_legal_hold_applied("theirs")
        with pytest.raises(KeyNotFound):
            kv.apply_legal_hold("missing")


def test_tags_merge_search_and_delete(kv: S3KV) -> None:
    for i in range(30):
        kv.add(f"item/{i:02d}", {"i": i})
    kv.add("other", 1)
    assert kv.tag_keys_with_prefix("item/", {"kind": "item"}) == 30
    for i in range(0, 30, 3):
        assert kv.tag_key(f"item/{i:02d}", {"three": "yes"}) == {"kind": "item", "three": "yes"}
    assert kv.tag_key("item/00", {"three": None}) == {"kind": "item"}  # None removes a tag
    expected = [f"item/{i:02d}" for i in range(3, 30, 3)]
    assert kv.find_keys_by_tag_value("three", "yes") == expected
    assert kv.find_keys_by_tag_value("three") == expected
    assert kv.find_keys_by_tag_value("kind", "nope") == []
    with pytest.raises(KeyNotFound):
        kv.tag_key("missing", {"a": "b"})
    assert kv.delete_by_tag("three", "yes") == len(expected)
    assert len(kv.list_keys_with_prefix("item/")) == 30 - len(expected)
    assert kv.find_keys_by_tag_value("three", "yes") == []


@pytest.mark.parametrize("few", [tagindex.FEW, 0], ids=["lookups", "listing"])
def test_tag_index_stays_exact(backend: S3Backend, old: Any, few: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tagindex, "FEW", few)  # 0: check the marked keys against the listing of s3kv/
    with S3KV(backend=backend, tag_index=False) as scan, S3KV(backend=backend, tag_index=True) as kv:
        for i in range(12):
            kv.add(f"k{i:02d}", i)
        time.sleep(1.05)  # markers written a second after the values: no same-second ambiguity
        for i in range(12):
            kv.tag_key(f"k{i:02d}", {"parity": "even" if i % 2 == 0 else "odd"})
        assert kv.backend.info(ENABLED).exists  # built at the first tag operation
        evens = [f"k{i:02d}" for i in range(0, 12, 2)]
        assert kv.find_keys_by_tag_value("parity", "even") == evens
        assert kv.find_keys_by_tag_value("parity") == sorted(evens + [f"k{i:02d}" for i in range(1, 12, 2)])
        kv.tag_key("k00", {"parity": "odd"})  # changed value: old marker gone
        kv.delete("k02")  # deleted key: dropped by the listing check
        kv.add("k04", "rewritten")  # rewritten (S3 drops its tags): dropped by the LastModified check
        expected = ["k06", "k08", "k10"]
        assert kv.find_keys_by_tag_value("parity", "even") == expected
        assert scan.find_keys_by_tag_value("parity", "even") == expected  # the scan agrees
        kv.add("k20", 20)
        kv.tag_key("k20", {"parity": "even"})  # same second as the write: checked by a tag request
        assert kv.find_keys_by_tag_value("parity", "even") == [*expected, "k20"]
        with S3KV(backend=backend) as auto:  # tag_index=None: uses the bucket's index
            assert auto._index() is not None
            assert auto.find_keys_by_tag_value("parity", "even") == [*expected, "k20"]
        old.tag_key("k01", {"parity": "even"})  # s3kv 0.1.5 does not know the index ...
        assert "k01" not in kv.find_keys_by_tag_value("parity", "even")
        kv.rebuild_tag_index()  # ... until it is rebuilt
        assert kv.find_keys_by_tag_value("parity", "even") == sorted([*expected, "k20", "k01"])
        assert "s3kv-index" not in " ".join(old.list_keys())  # s3kv never takes markers for keys
        kv.drop_tag_index()
        assert not kv.backend.info(ENABLED).exists
        assert kv.find_keys_by_tag_value("parity", "even") == sorted([*expected, "k20", "k01"])


def test_listing_and_tag_index_past_1000_keys(backend: S3Backend) -> None:
    with S3KV(backend=backend, tag_index=True) as kv:
        kv.rebuild_tag_index()  # on the empty bucket: just turns the index on
        kv.backend.store_many([(f"s3kv/key{i:05d}.json", b"%d" % i) for i in range(1100)])
        kv.backend.store("foreign/object.bin", b"x")
        keys = kv.list_keys()
        assert len(keys) == 1100 and keys[0] == "key00000" and keys[-1] == "key01099"
        assert len(kv) == 1100
        assert kv.list_keys_with_prefix("key010") == [f"key{i:05d}" for i in range(1000, 1100)]
        for i in (3, 1050, 1099):
            kv.tag_key(f"key{i:05d}", {"hot": "1"})
        # the index is checked against the listing of all 1,100 keys (two pages)
        assert kv.find_keys_by_tag_value("hot", "1") == ["key00003", "key01050", "key01099"]


def test_metadata_is_stored_as_user_metadata(kv: S3KV) -> None:
    kv.add("m", {"a": 1}, metadata={"owner": "ops", "n": 3})
    meta = kv.backend.stat("s3kv/m.json")
    assert meta.metadata == {"owner": "ops", "n": "3"}
    assert kv["m"] == {"a": 1}
