"""The s3kv adapter's API on every kind of backend: memory, posixfs, moto and SeaweedFS.

S3 stores share one opened bucket per server, emptied after each test; the local cache lives in the
test's tmp dir.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from unistore.adapters.s3kv import S3KV, KeyNotFound
from unistore.backends.memory import MemoryBackend
from unistore.backends.s3 import S3Backend
from unistore.errors import (
    BackendConnectionError,
    CapabilityNotSupported,
    CredentialsError,
    InvalidName,
    ObjectNotFound,
)

KINDS = ["memory", "posixfs", "moto", "seaweedfs"]


@pytest.fixture(autouse=True)
def _private_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="module")
def _shared() -> Iterator[dict[str, Any]]:
    """One opened S3 backend per server for this module (opening one costs a second here)."""
    opened: dict[str, Any] = {}
    yield opened
    for _server, be in opened.values():
        be.close()


def wipe(server: Any, bucket: str) -> None:
    client = server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def make_kv(request: pytest.FixtureRequest, kind: str, tmp_path: Path, shared: dict[str, Any], **kw: Any) -> S3KV:
    if kind == "memory":
        return S3KV.from_url(f"memory://s3kv-{uuid.uuid4().hex}", create=True, **kw)
    if kind == "posixfs":
        return S3KV.from_url(f"file://{tmp_path}/store", create=True, **kw)
    if kind not in shared:
        server = request.getfixturevalue("moto_s3" if kind == "moto" else "seaweedfs")
        be = S3Backend.from_url(server.url(server.new_bucket()))
        be.open()
        shared[kind] = (server, be)
    server, be = shared[kind]
    request.addfinalizer(lambda: wipe(server, be.bucket))
    return S3KV(backend=be, **kw)


@pytest.fixture(params=KINDS)
def kv(request: pytest.FixtureRequest, tmp_path: Path, _shared: dict[str, Any]) -> Iterator[S3KV]:
    store = make_kv(request, request.param, tmp_path, _shared, cache_dir=tmp_path / "cache")
    with store:
        yield store


VALUES: list[Any] = [
    {"a": 1, "b": [1, 2, {"c": None}]},
    [1, "two", 3.5, True, None],
    'text with ünïcode and "quotes"',
    42,
    -1.25,
    True,
    None,
    {},
    [],
    b"\x00\x01binary\xff",
    b"",
    {"$unistore": "bytes", "base64": "AAAA"},  # a dict that looks like the bytes marker stays a dict
]


def test_values_round_trip_with_s3kv_bytes(kv: S3KV) -> None:
    for i, value in enumerate(VALUES):
        kv.add(f"v{i}", value)
    for i, value in enumerate(VALUES):
        assert kv.get(f"v{i}") == value
        assert type(kv.get(f"v{i}")) is type(value)
    kv.clear_cache()
    for i, value in enumerate(VALUES):
        assert kv[f"v{i}"] == value
    # JSON is stored exactly as s3kv 0.1.5 stores it: json.dumps(value)
    assert kv.backend.load("s3kv/v0.json") == json.dumps(VALUES[0]).encode()
    assert kv.backend.load("s3kv/v2.json") == json.dumps(VALUES[2]).encode()
    assert json.loads(kv.backend.load("s3kv/v9.json")) == {"$unistore": "bytes", "base64": "AAFiaW5hcnn/"}


def test_missing_keys(kv: S3KV) -> None:
    assert kv.get("nope") is None
    assert kv.get("nope", {"d": 1}) == {"d": 1}
    with pytest.raises(KeyError):
        kv["nope"]
    with pytest.raises(KeyNotFound) as exc:
        del kv["nope"]
    assert isinstance(exc.value, ObjectNotFound) and "nope" in str(exc.value)
    assert kv.delete("nope") is False
    assert kv.key_exists("nope") is False and kv.exists("nope") is False and "nope" not in kv
    assert kv.get_key_size("nope") == 0
    assert kv.get_key_last_updated_time("nope") == 0
    with pytest.raises(KeyNotFound):
        kv.copy_key("nope", "other")
    assert kv.list_keys() == []


def test_keys_with_slashes_and_listing(kv: S3KV) -> None:
    keys = ["a", "a-b", "a/b", "a/b/c", "z", "dir/x.json", "ünï/ß", "a.", "..x", "x/..", "x/.", "trail/"]
    for key in keys:
        kv[key] = {"k": key}
    assert kv.list_keys() == sorted(keys)
    assert list(kv) == sorted(keys)
    assert len(kv) == len(keys)
    for key in keys:
        assert kv[key] == {"k": key}
        assert key in kv
    assert kv.list_keys_with_prefix("a/") == ["a/b", "a/b/c"]
    assert kv.list_keys_with_prefix("a") == ["a", "a-b", "a.", "a/b", "a/b/c"]
    assert kv.list_keys_with_prefix("a/b/") == ["a/b/c"]
    assert kv.list_keys_with_prefix("q/") == []
    assert kv.list_keys_with_prefix("") == sorted(keys)


def test_foreign_objects_are_not_keys(kv: S3KV) -> None:
    kv["mine"] = 1
    kv.backend.store("s3kv/notes.txt", b"x")
    kv.backend.store("other/thing.json", b"{}")
    kv.backend.store("top.json", b"{}")
    kv.backend.mkdir("s3kv/emptydir")
    assert kv.list_keys() == ["mine"]
    assert len(kv) == 1


INVALID_KEYS = [
    "",
    "../x",
    "a/../b",
    "./a",
    "a//b",
    "/a",
    "a\\b",
    "a\x00b",
    "tab\tkey",
    "x.tmp/y",
    "\ud800",
    "k" * 1001,
]


def test_invalid_keys_are_refused_before_any_write(kv: S3KV) -> None:
    for key in INVALID_KEYS:
        for call in (kv.add, kv.get, lambda k, *_: kv.copy_key("src", k)):
            with pytest.raises(InvalidName) as exc:
                call(key, 1)
            assert repr(key)[:40].strip("'") in str(exc.value) or key == ""
    assert not kv.backend.info("s3kv").exists


def test_non_str_key_and_non_json_value(kv: S3KV) -> None:
    with pytest.raises(InvalidName):
        kv.add(5, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'k'"):
        kv.add("k", {1, 2})
    assert 5 not in kv  # type: ignore[comparison-overlap]
    assert kv.list_keys() == []


def test_copy_merge_size_time(kv: S3KV) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    kv["a"] = {"x": 1, "y": 1}
    kv["b"] = {"y": 2}
    kv["l1"] = [1]
    kv["l2"] = [2, 3]
    kv.copy_key("a", "c/copy")
    assert kv["c/copy"] == {"x": 1, "y": 1}
    assert kv.merge_keys(["a", "b", "missing"], "m") == {"x": 1, "y": 2}
    assert kv["m"] == {"x": 1, "y": 2}
    assert kv.merge_keys(["l1", "l2"], "ml") == [1, 2, 3]
    with pytest.raises(TypeError, match="'l1'"):
        kv.merge_keys(["a", "l1"], "bad")
    assert "bad" not in kv
    assert kv.get_key_size("a") == len(json.dumps({"x": 1, "y": 1}))
    when = kv.get_key_last_updated_time("a")
    assert isinstance(when, datetime) and when.tzinfo is not None
    assert before.timestamp() - 5 <= when.timestamp() <= datetime.now(UTC).timestamp() + 5


def test_mutable_mapping(kv: S3KV) -> None:
    kv.update({"a": 1, "b": 2})
    assert dict(kv.items()) == {"a": 1, "b": 2}
    assert kv.pop("a") == 1
    assert kv.setdefault("c", [3]) == [3]
    assert sorted(kv.keys()) == ["b", "c"]
    kv.clear()
    assert len(kv) == 0


def test_overwrite_and_delete_invalidate_the_cache(kv: S3KV) -> None:
    kv["k"] = 1
    assert kv["k"] == 1
    kv["k"] = 2
    assert kv["k"] == 2
    kv.copy_key("k", "k2")
    kv["k2"] = 3
    kv.copy_key("k", "k2")
    assert kv["k2"] == 2
    kv.merge_keys([], "k2")
    assert kv["k2"] == {}
    assert kv.delete("k") is True
    assert kv.get("k") is None
    assert "k" not in kv


def test_tags_and_locks_need_the_capability(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    for kind in ("memory", "posixfs"):
        with make_kv(request, kind, tmp_path, {}) as kv:
            kv["k"] = 1
            name = type(kv.backend).__name__
            calls = [
                lambda: kv.tag_key("k", {"a": "b"}),
                lambda: kv.get_tags("k"),
                lambda: kv.find_keys_by_tag_value("a", "b"),
                lambda: kv.delete_by_tag("a", "b"),
                lambda: kv.tag_keys_with_prefix("", {"a": "b"}),
                lambda: kv.place_retention_lock("k", 1),
                lambda: kv.remove_retention_lock("k"),
                lambda: kv.apply_legal_hold("k"),
                lambda: kv.is_legal_hold_applied("k"),
                lambda: kv.release_legal_hold("k"),
                lambda: kv.add("m", 1, metadata={"a": "b"}),
            ]
            for call in calls:
                with pytest.raises(CapabilityNotSupported) as exc:
                    call()
                assert exc.value.backend == name
            assert kv["k"] == 1 and "m" not in kv


def test_memory_backend_has_no_disk_cache(tmp_path: Path) -> None:
    with S3KV(backend=MemoryBackend(), create=True, cache_dir=tmp_path / "c") as kv:
        kv["a"] = 1
        assert kv["a"] == 1 and kv.cache is None
    assert not (tmp_path / "c").exists()


def test_s3kv_constructor_and_typed_failures(seaweedfs: Any, tmp_path: Path) -> None:
    bucket = seaweedfs.new_bucket()
    args = (seaweedfs.endpoint, bucket, seaweedfs.access_key, seaweedfs.secret_key)
    with S3KV(*args, cache_dir=tmp_path / "c") as kv:
        kv.add("cfg", {"on": True})
        assert kv.get("cfg") == {"on": True}
        assert kv.key_exists("cfg")
        assert seaweedfs.client().get_object(Bucket=bucket, Key="s3kv/cfg.json")["Body"].read() == b'{"on": true}'
    with pytest.raises(CredentialsError):  # SeaweedFS checks signatures: wrong secret, no silent False
        S3KV(seaweedfs.endpoint, bucket, seaweedfs.access_key, "wrong-secret-0123456789")
    with pytest.raises(BackendConnectionError):
        S3KV("http://127.0.0.1:9", bucket, "k", "s", connect_timeout=1, max_attempts=1)


def test_connection_failures_are_typed_never_false_or_none(tmp_path: Path) -> None:
    from unistore.backends.posixfs import PosixFS
    from unistore.layers.chaos import ChaosLayer

    inner = PosixFS(str(tmp_path / "store"))
    inner.create()
    inner.open()
    with S3KV(backend=inner, cache_dir=tmp_path / "c", cache_ttl=0) as good:
        good["k"] = 1
        assert good["k"] == 1  # cached
    flaky = ChaosLayer(inner, error_rate=1.0)  # every call fails before it reaches the store
    with S3KV(backend=flaky, cache_dir=tmp_path / "c", cache_ttl=0) as kv:
        for call in (
            lambda: kv.get("k"),
            lambda: kv.get("missing"),
            lambda: kv.key_exists("k"),
            lambda: kv["k"],
            lambda: kv.add("k", 2),
            lambda: kv.delete("k"),
            lambda: kv.list_keys(),
            lambda: kv.get_key_size("k"),
        ):
            with pytest.raises(BackendConnectionError):
                call()
    inner.close()


def test_encrypted_and_compressed_values(tmp_path: Path) -> None:
    """S3KV takes the layers' options: values are encrypted at rest, read back, and a wrong key never reads."""
    import os

    from unistore.backends.posixfs import PosixFS
    from unistore.errors import IntegrityError

    key_file = tmp_path / "kv.key"
    key_file.write_bytes(os.urandom(32))
    url = f"file://{tmp_path}/kv"
    kv = S3KV.from_url(url, create=True, encryption_key_file=str(key_file), compression="zstd",
                       cache_dir=tmp_path / "cache")  # fmt: skip
    kv.add("config/db", {"password": "hunter2", "hosts": ["a", "b"]})
    assert kv.get("config/db") == {"password": "hunter2", "hosts": ["a", "b"]}
    raw = PosixFS(f"{tmp_path}/kv")
    with raw:
        assert b"hunter2" not in raw.load("s3kv/config/db.json")
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    wrong = S3KV.from_url(url, encryption_key_file=str(other), enable_local_cache=False)
    with pytest.raises(IntegrityError):
        wrong.get("config/db")
