"""SFTP errors: the same typed error as memory:// for the same misuse, on OpenSSH and on
``rclone serve sftp``; name limits, huge ranges, the backend's own names, a full disk, a read-only server.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.sshd import OpenSSHServer
from unistore.backends.base import Backend
from unistore.backends.sftp import SFTPBackend
from unistore.errors import InvalidName, NameConflict, ObjectNotFound, PermissionDenied, QuotaExceeded


@pytest.fixture(params=["sftp", "sftp_rclone"])
def be(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"backend_{request.param}")  # type: ignore[no-any-return]


def test_item_where_a_directory_is_and_back(be: Backend) -> None:
    be.mkdir("d/x")
    be.store("i", b"v")
    with pytest.raises(NameConflict):
        be.store("d/x", b"onto a directory")
    assert be.info("d/x").directory
    with pytest.raises(NameConflict):
        be.store("i/child", b"below an item")
    assert be.load("i") == b"v"
    with pytest.raises(NameConflict):
        be.move("i", "d/x")
    assert be.load("i") == b"v" and be.info("d/x").directory
    assert be.info("i/child").exists is False
    with pytest.raises(ObjectNotFound):
        be.load_file("d", io.BytesIO())
    with pytest.raises(ObjectNotFound):
        be.hash("d")
    with pytest.raises(ObjectNotFound):
        be.load("d")
    # rclone serve sftp removes a directory on REMOVE and an item on RMDIR: neither may happen
    with pytest.raises(ObjectNotFound):
        be.delete("d/x")
    assert be.info("d/x").directory
    with pytest.raises(ObjectNotFound):
        be.rmdir("i")
    assert be.load("i") == b"v"
    with pytest.raises(ObjectNotFound):
        be.move("missing", "missing")


def test_list_recursive_order_is_memory_order(be: Backend) -> None:
    for name in ["o/a/b", "o/a-c", "o/a0", "o/ab/c"]:
        be.store(name, b"1")
    assert [i.name for i in be.list_recursive("o")] == sorted(["a/b", "a-c", "a0", "ab/c"])


@pytest.mark.parametrize("bad", ["x.tmp", "d/y.hid", "z.tmp/w", "quota.hid"])
def test_own_names_refused(be: Backend, bad: str) -> None:
    with pytest.raises(InvalidName):
        be.store(bad, b"v")
    with pytest.raises(InvalidName):
        be.load(bad)


def test_name_limits(be: Backend) -> None:
    with pytest.raises(InvalidName):
        be.store("x" * 256, b"v")  # a segment over NAME_MAX
    with pytest.raises(InvalidName):
        be.store("/".join(["a"] * 2100), b"v")  # a path over PATH_MAX, and no RecursionError
    long = "y" * 250  # fits, though its temp name would not
    be.store(long, b"v")
    assert be.load(long) == b"v"
    assert [i.name for i in be.list("")] == [long]
    deep = "/".join(["d"] * 300)
    be.store(deep, b"deep")
    assert be.load(deep) == b"deep"


@pytest.mark.parametrize("offset,size", [(2**63, None), (2**63 - 1, 10), (2**64, 5), (1, 2**64), (2**70, 2**70)])
def test_huge_ranges_are_clipped(be: Backend, offset: int, size: int | None) -> None:
    be.store("r", b"0123456789")
    expected = b"0123456789"[offset : None if size is None else offset + size]
    assert be.load("r", offset=offset, size=size) == expected
    out = io.BytesIO()
    assert be.load_file("r", out, offset=offset, size=size) == len(expected)


# ----------------------------------------------------------------- server-side refusals


@pytest.fixture(scope="module")
def sshd_small_disk() -> Iterator[OpenSSHServer]:
    """An OpenSSH server whose data directory is a 4 MiB tmpfs (mounting needs root, as CI runs)."""
    base = Path(tempfile.mkdtemp(prefix="unistore-sshd-full-"))
    server = OpenSSHServer(base)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(server.data)], capture_output=True)
    if mounted.returncode:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.decode().strip()}")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        subprocess.run(["umount", str(server.data)], check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_full_disk_is_quota_exceeded(sshd_small_disk: OpenSSHServer) -> None:
    be = SFTPBackend.from_url(sshd_small_disk.url(), **sshd_small_disk.options())
    be.create()
    with be:
        be.store("small", b"fits")
        with pytest.raises(QuotaExceeded):
            be.store("big", os.urandom(6 * 1024 * 1024))
        with pytest.raises(QuotaExceeded):
            be.store_many({f"m/{i}": os.urandom(1024 * 1024) for i in range(6)})
        assert be.load("small") == b"fits"
        assert not [p for p in Path(sshd_small_disk.data).rglob("*.tmp")]  # no temp file is left
    be.destroy()


def test_read_only_server_is_permission_denied(sshd_private: OpenSSHServer) -> None:
    be = SFTPBackend.from_url(sshd_private.url(), **sshd_private.options())
    be.create()
    with be:
        be.store("k", b"v")
    sshd_private.stop()
    sshd_private.config.write_text(sshd_private.config.read_text().replace("internal-sftp -d", "internal-sftp -R -d"))
    sshd_private.start()
    with be:
        assert be.load("k") == b"v"
        with pytest.raises(PermissionDenied):
            be.store("k", b"w")
        with pytest.raises(PermissionDenied):
            be.delete("k")
        with pytest.raises(PermissionDenied):
            be.store_many({"a": b"1", "b": b"2"})
        assert be.load("k") == b"v"
