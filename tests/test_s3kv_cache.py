"""The s3kv adapter's local cache: where it lives, that ``get`` reads it, invalidation, revalidation
by ETag or size+mtime per ``cache_ttl``, and a second process changing keys (posixfs, SeaweedFS)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_s3kv import wipe
from unistore.adapters.s3kv import S3KV
from unistore.adapters.s3kv.s3kv import MTIME_SETTLED
from unistore.backends.s3 import S3Backend

KINDS = ["posixfs", "seaweedfs"]
TTL = 1.0

# A second process: reads "URL<TAB>CACHE_DIR<TAB>op<TAB>key<TAB>json" lines, answers "ok" or "error ...".
WORKER = r"""
import json, sys
from unistore.adapters.s3kv import S3KV
from unistore.adapters.s3kv.s3kv import MTIME_SETTLED
stores = {}
for line in sys.stdin:
    url, cache_dir, op, key, value = line.rstrip("\n").split("\t")
    try:
        kv = stores.get((url, cache_dir))
        if kv is None:
            kv = stores[(url, cache_dir)] = S3KV.from_url(url, cache_dir=cache_dir)
        if op == "set":
            kv.add(key, json.loads(value))
        elif op == "delete":
            kv.delete(key)
        print("ok", flush=True)
    except Exception as e:
        print("error", type(e).__name__, e, flush=True)
"""


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def __call__(self, kv: S3KV, op: str, key: str, value: Any = None, *, cache_dir: Path) -> None:
        url = kv_url(kv)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{url}\t{cache_dir}\t{op}\t{key}\t{json.dumps(value)}\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", answer

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


URLS: dict[int, str] = {}


def kv_url(kv: S3KV) -> str:
    return URLS[id(kv)]


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.stop()


@pytest.fixture(autouse=True)
def _private_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture(scope="module")
def _shared() -> Iterator[dict[str, Any]]:
    """One opened SeaweedFS backend for this module (opening one costs a second here)."""
    opened: dict[str, Any] = {}
    yield opened
    for _server, be, _url in opened.values():
        be.close()


@pytest.fixture(params=KINDS)
def open_kv(request: pytest.FixtureRequest, tmp_path: Path, _shared: dict[str, Any]) -> Iterator[Any]:
    opened: list[S3KV] = []
    if request.param == "posixfs":
        url = f"file://{tmp_path}/store"
        backend = None
    else:
        if "sw" not in _shared:
            sw = request.getfixturevalue("seaweedfs")
            bucket = sw.new_bucket()
            be = S3Backend.from_url(sw.url(bucket))
            be.open()
            _shared["sw"] = (sw, be, sw.url(bucket))
        server, backend, url = _shared["sw"]
        request.addfinalizer(lambda: wipe(server, backend.bucket))

    def make(**kw: Any) -> S3KV:
        kv = S3KV(backend=backend, **kw) if backend is not None else S3KV.from_url(url, create=True, **kw)
        URLS[id(kv)] = url
        opened.append(kv)
        return kv

    yield make
    for kv in opened:
        kv.close()


def test_cache_lives_per_backend_under_the_user_cache_dir(open_kv: Any, tmp_path: Path) -> None:
    kv = open_kv()
    keys = ["a", "dir/b", "x/..y", "ü/ß/c"]
    for key in keys:
        kv[key] = {"k": key}
        assert kv[key] == {"k": key}
    root = tmp_path / "xdg-cache" / "unistore" / "s3kv"
    assert kv.cache.dir.parent == root
    scopes = [p for p in root.iterdir()]
    assert scopes == [kv.cache.dir]
    files = sorted(p for p in root.rglob("*") if p.is_file())
    entries = [p for p in files if p.suffix == ".entry"]
    assert len(entries) == len(keys)
    for p in entries:  # hashed names two levels below the scope: no key reaches outside
        assert p.parent.parent == kv.cache.dir and len(p.stem) == 64
    assert not [p for p in files if p.name.endswith(".tmp")]
    header = json.loads(entries[0].read_bytes().split(b"\n", 1)[0])
    assert set(header) >= {"key", "md5", "etag", "size", "mtime"}
    assert json.loads((kv.cache.dir / "scope.json").read_text())["scope"] == repr(kv.backend)


def test_get_reads_the_cache_until_this_process_writes(open_kv: Any) -> None:
    kv = open_kv(cache_ttl=None)
    kv["k"] = {"v": 1}
    assert kv["k"] == {"v": 1}
    kv.backend.store("s3kv/k.json", b'{"v": 2}')  # behind the cache's back
    assert kv["k"] == {"v": 1}
    assert kv.get_from_cache("k") == {"v": 1}
    assert kv.key_exists("k")
    kv["k"] = {"v": 3}
    assert kv["k"] == {"v": 3}
    kv.backend.store("s3kv/k.json", b'{"v": 4}')
    kv.clear_cache_for_key("k")
    assert kv.get_from_cache("k") is None
    assert kv["k"] == {"v": 4}


def test_ttl_zero_revalidates_every_read(open_kv: Any) -> None:
    kv = open_kv(cache_ttl=0)
    kv["k"] = "one"
    assert kv["k"] == "one"
    kv.backend.store("s3kv/k.json", b'"two"')  # same size: the ETag (or mtime) tells
    assert kv["k"] == "two"
    assert kv.get_from_cache("k") == "two"
    kv.backend.delete("s3kv/k.json")
    assert kv.get("k") is None
    assert kv.get_from_cache("k") is None


def test_settled_size_and_mtime_validate_and_catch_a_same_size_rewrite(open_kv: Any) -> None:
    kv = open_kv(cache_ttl=0)
    kv.backend.store("s3kv/k.json", b'"aaa"')
    time.sleep(MTIME_SETTLED + 0.1)  # an mtime this old validates (a whole-second clock cannot hide a rewrite)
    assert kv["k"] == "aaa"  # fetched
    assert kv["k"] == "aaa"  # revalidated (ETag, or size+mtime)
    entry = kv.cache.get("k")
    assert entry is not None and entry.size == 5 and entry.mtime is not None
    assert kv["k"] == "aaa"  # revalidated by size+mtime alone
    kv.backend.store("s3kv/k.json", b'"bbb"')  # same size, a new mtime
    assert kv["k"] == "bbb"
    assert kv["k"] == "bbb"


def test_cache_off_writes_nothing(open_kv: Any, tmp_path: Path) -> None:
    kv = open_kv(enable_local_cache=False)
    kv["k"] = 1
    assert kv["k"] == 1
    kv.backend.store("s3kv/k.json", b"2")
    assert kv["k"] == 2
    assert kv.cache_all_keys() == 0 and kv.get_from_cache("k") is None
    assert not (tmp_path / "xdg-cache").exists()


def test_cache_all_keys_clear_and_corruption(open_kv: Any) -> None:
    kv = open_kv(cache_ttl=None)
    for i in range(20):
        kv.backend.store(f"s3kv/k{i}.json", json.dumps(i).encode())
    assert kv.cache_all_keys() == 20
    assert [kv.get_from_cache(f"k{i}") for i in range(20)] == list(range(20))
    assert kv.clear_old_cache(7) == 0
    assert kv.clear_old_cache(0) == 20
    assert kv.get_from_cache("k1") is None
    assert kv["k1"] == 1
    entry = kv.cache.path("k1")
    entry.write_bytes(entry.read_bytes()[:-1])  # a torn entry is never served
    kv.backend.store("s3kv/k1.json", b"11")
    assert kv["k1"] == 11
    other = open_kv(cache_dir=kv.cache.dir.parent.parent / "elsewhere")
    other["x"] = 1
    assert other["x"] == 1
    kv.clear_cache()
    assert not kv.cache.dir.exists() and other.cache.get("x") is not None


def test_second_process_change_seen_at_once_with_ttl_zero(open_kv: Any, worker: Worker, tmp_path: Path) -> None:
    kv = open_kv(cache_ttl=0)
    kv["k"] = {"n": 1}
    assert kv["k"] == {"n": 1}
    elsewhere = tmp_path / "other-machine-cache"
    worker(kv, "set", "k", {"n": 2}, cache_dir=elsewhere)
    assert kv["k"] == {"n": 2}
    worker(kv, "set", "k", {"n": 3}, cache_dir=elsewhere)
    assert kv.get("k") == {"n": 3}
    worker(kv, "delete", "k", cache_dir=elsewhere)
    assert kv.get("k") is None


def test_second_process_change_seen_within_ttl(open_kv: Any, worker: Worker, tmp_path: Path) -> None:
    kv = open_kv(cache_ttl=TTL)
    kv["k"] = {"n": 1}
    assert kv["k"] == {"n": 1}
    validated = time.time()  # the entry was last validated at or before this moment
    worker(kv, "set", "k", {"n": 2}, cache_dir=tmp_path / "other-machine-cache")
    entry = kv.cache.get("k")
    if entry is not None and entry.age < TTL - 0.3:  # still fresh: served from the cache, no request
        assert kv["k"] == {"n": 1}
    time.sleep(max(0.0, validated + TTL + 0.05 - time.time()))
    assert kv["k"] == {"n": 2}
    assert kv["k"] == {"n": 2}


def test_second_process_with_ttl_none_until_invalidated(open_kv: Any, worker: Worker, tmp_path: Path) -> None:
    kv = open_kv(cache_ttl=None)
    kv["k"] = 1
    assert kv["k"] == 1
    worker(kv, "set", "k", 2, cache_dir=tmp_path / "other-machine-cache")
    time.sleep(0.2)
    assert kv["k"] == 1  # trusted until this process changes it
    # a unistore process of the same user on this machine shares the cache folder: its write replaces the entry
    worker(kv, "set", "k", 3, cache_dir=kv.cache.dir.parent)
    assert kv["k"] == 3
    kv.add("k", 4)
    assert kv["k"] == 4


def test_concurrent_readers_and_writers_settle_on_the_last_write(open_kv: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    kv = open_kv(cache_ttl=None)
    kv["k"] = 0

    def write(i: int) -> None:
        kv["k"] = i

    def read(_: int) -> Any:
        return kv.get("k")

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(write if i % 2 else read, i) for i in range(40)]
        for f in futures:
            f.result()
    kv["k"] = "last"
    for _ in range(3):
        assert kv["k"] == "last"
    assert os.path.exists(kv.cache.path("k")) or not kv.backend.supports("checksums")
