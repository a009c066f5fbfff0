"""rclone: typed errors like memory://'s, real mtimes, clipped ranges, and secrets of inline remotes
kept out of repr(), messages and logs."""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from unistore import Store
from unistore.backends.rclone import RcloneBackend
from unistore.errors import (
    BackendDoesNotExist,
    ConfigError,
    CredentialsError,
    InvalidName,
    NameConflict,
    ObjectNotFound,
    UnistoreError,
)


@pytest.fixture
def local(tmp_path: Path) -> Iterator[RcloneBackend]:
    conf = tmp_path / "rclone.conf"
    conf.write_text("")
    be = RcloneBackend.from_url(f"rclone:{tmp_path / 'store'}", config_file=str(conf))
    be.create()
    with be:
        yield be
    be.destroy()


def test_item_where_a_directory_is_and_back(local: RcloneBackend) -> None:
    local.mkdir("d/x")
    local.store("i", b"v")
    with pytest.raises(NameConflict):
        local.store("d/x", b"onto a directory")
    with pytest.raises(NameConflict):
        local.store("i/child", b"below an item")
    with pytest.raises(NameConflict):
        local.move("i", "d/x")
    assert local.load("i") == b"v" and local.info("d/x").directory
    assert local.info("i/child").exists is False
    with pytest.raises(ObjectNotFound):
        local.load_file("d", io.BytesIO())
    with pytest.raises(ObjectNotFound):
        local.hash("d")
    with pytest.raises(ObjectNotFound):
        local.delete("d/x")
    with pytest.raises(ObjectNotFound):
        local.rmdir("i")
    with pytest.raises(ObjectNotFound):
        local.move("missing", "missing")  # rclone itself answers "ok"
    local.move("i", "i")  # an existing item onto itself: nothing happens
    assert local.load("i") == b"v"


def test_list_recursive_order_is_memory_order(local: RcloneBackend) -> None:
    for name in ["o/a/b", "o/a-c", "o/a0", "o/ab/c"]:
        local.store(name, b"1")
    assert [i.name for i in local.list_recursive("o")] == sorted(["a/b", "a-c", "a0", "ab/c"])


@pytest.mark.parametrize("bad", ["x.tmp", "d/y.hid", "z.tmp/w"])
def test_own_names_refused(local: RcloneBackend, bad: str) -> None:
    with pytest.raises(InvalidName):
        local.store(bad, b"v")


def test_long_names_are_invalid_names(local: RcloneBackend) -> None:
    with pytest.raises(InvalidName):
        local.store("x" * 300, b"v")
    with pytest.raises(InvalidName):
        local.store("/".join(["a"] * 2100), b"v")


@pytest.mark.parametrize("offset,size", [(2**63, None), (2**63 - 1, 10), (2**64, 5), (1, 2**64), (2**70, 2**70)])
def test_huge_ranges_are_clipped(local: RcloneBackend, offset: int, size: int | None) -> None:
    local.store("r", b"0123456789")
    expected = b"0123456789"[offset : None if size is None else offset + size]
    assert local.load("r", offset=offset, size=size) == expected
    out = io.BytesIO()
    assert local.load_file("r", out, offset=offset, size=size) == len(expected)


def test_mtime_is_real(local: RcloneBackend, tmp_path: Path) -> None:
    before = time.time()
    local.store("m/a", b"1")
    on_disk = os.stat(tmp_path / "store" / "m" / "a").st_mtime
    assert abs(on_disk - before) < 60
    assert local.info("m/a").mtime == pytest.approx(on_disk, abs=1)
    assert [i.mtime for i in local.list("m")] == [pytest.approx(on_disk, abs=1)]
    assert [i.mtime for i in local.list_recursive("")] == [pytest.approx(on_disk, abs=1)]


def test_unknown_options_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bogus"):
        RcloneBackend.from_url(f"rclone:{tmp_path}", bogus=1)


# ----------------------------------------------------------------- inline remotes and secrets


def _inline(seaweedfs: Any, bucket: str, secret: str) -> str:
    return (
        f"rclone::s3,provider=SeaweedFS,access_key_id={seaweedfs.access_key},secret_access_key={secret},"
        f"endpoint='{seaweedfs.endpoint}',region=us-east-1,directory_markers=true:{bucket}/p"
    )


def test_inline_remote_secret_never_shown(seaweedfs: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bucket = seaweedfs.new_bucket()
    url = _inline(seaweedfs, bucket, seaweedfs.secret_key)
    store = Store(url, config={"": {"levels": [0]}})
    be = store.backend
    assert isinstance(be, RcloneBackend)
    assert seaweedfs.secret_key not in repr(be) and seaweedfs.secret_key not in repr(store)
    assert "secret_access_key=***" in repr(be)
    store.create()
    with store:
        store.store("k", b"inline")
        assert store.load("k") == b"inline"
        pid = be.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert seaweedfs.secret_key.encode() not in cmdline
        with pytest.raises(ObjectNotFound) as e:
            store.load("missing")
        assert seaweedfs.secret_key not in str(e.value)
    assert seaweedfs.client().get_object(Bucket=bucket, Key="p/k")["Body"].read() == b"inline"
    store.destroy()
    assert seaweedfs.secret_key not in caplog.text


def test_wrong_secret_is_credentials_error(seaweedfs: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bucket = seaweedfs.new_bucket()
    RcloneBackend.from_url(_inline(seaweedfs, bucket, seaweedfs.secret_key)).create()
    wrong = "Wr0ngSecretKeyValue0123456789"
    be = RcloneBackend.from_url(_inline(seaweedfs, bucket, wrong))
    with pytest.raises(UnistoreError) as e:
        be.open()
    assert isinstance(e.value, CredentialsError), repr(e.value)
    assert not isinstance(e.value, BackendDoesNotExist)
    assert wrong not in str(e.value) and wrong not in repr(be) and wrong not in caplog.text
    assert be.pid is None
