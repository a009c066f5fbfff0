"""rclone backend: URLs, binary and remote errors, the rclone rcd child's life, streaming, private config.

The contract suite (test_contract.py) covers the operations on a local remote and on an s3 remote.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.rclone import s3_remote
from unistore.backends.rclone import RcloneBackend
from unistore.errors import BackendDoesNotExist, BackendURLInvalid, ConfigError, ObjectNotFound
from unistore.url import open_backend


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, reparented to an init that does not reap, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_dead(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def empty_config(tmp_path: Path) -> str:
    conf = tmp_path / "rclone.conf"
    conf.write_text("")
    return str(conf)


@pytest.fixture
def local(tmp_path: Path, empty_config: str) -> Iterator[RcloneBackend]:
    be = RcloneBackend.from_url(f"rclone:{tmp_path / 'store'}", config_file=empty_config)
    be.create()
    with be:
        yield be
    be.destroy()


# ----------------------------------------------------------------- URLs and configuration errors


@pytest.mark.parametrize(
    "url,path",
    [("rclone:remote:path/sub", "remote:path/sub"), ("rclone:remote:", "remote:"), ("rclone:/abs/dir", "/abs/dir")],
)
def test_url_parsing(url: str, path: str) -> None:
    be = open_backend(url)
    assert isinstance(be, RcloneBackend)
    assert be.path == path
    assert not be.opened and be.pid is None  # nothing is started before open()


@pytest.mark.parametrize("url", ["rclone:", "rclone://"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(BackendURLInvalid):
        RcloneBackend.from_url(url)


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    be = RcloneBackend.from_url(f"rclone:{tmp_path}", binary=str(tmp_path / "no-rclone"))
    with pytest.raises(ConfigError, match="rclone binary"):
        be.open()
    monkeypatch.setenv("RCLONE_BINARY", str(tmp_path / "also-missing"))
    with pytest.raises(ConfigError, match="RCLONE_BINARY|rclone binary"):
        RcloneBackend.from_url(f"rclone:{tmp_path}").open()


def test_unconfigured_remote_is_a_clear_error(empty_config: str) -> None:
    be = RcloneBackend.from_url("rclone:nosuchremote:bucket/path", config_file=empty_config)
    with pytest.raises(ConfigError, match="not configured"):
        be.open()
    assert be.pid is None and not be.opened


def test_open_missing_storage(tmp_path: Path, empty_config: str) -> None:
    be = RcloneBackend.from_url(f"rclone:{tmp_path / 'never-created'}", config_file=empty_config)
    with pytest.raises(BackendDoesNotExist):
        be.open()
    with pytest.raises(BackendDoesNotExist):
        be.destroy()


# ----------------------------------------------------------------- the rcd child process


def test_rcd_started_on_open_stopped_on_close(tmp_path: Path, empty_config: str) -> None:
    be = RcloneBackend.from_url(f"rclone:{tmp_path / 's'}", config_file=empty_config)
    be.create()
    be.open()
    pid = be.pid
    assert pid is not None and alive(pid)
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"127.0.0.1:0" in cmdline  # loopback, port chosen by the kernel
    assert not any(b"rc-pass" in a for a in cmdline)  # the password is not on the command line
    be.store("k", b"v")
    be.close()
    assert not alive(pid)
    assert be.pid is None
    be.open()
    assert be.pid != pid and be.load("k") == b"v"
    be.close()
    be.destroy()


def test_opened_from_a_short_lived_thread(tmp_path: Path, empty_config: str) -> None:
    # PR_SET_PDEATHSIG follows the thread that forked the child: the child must outlive this thread
    be = RcloneBackend.from_url(f"rclone:{tmp_path / 's'}", config_file=empty_config)
    be.create()
    t = threading.Thread(target=be.open)
    t.start()
    t.join()
    try:
        time.sleep(0.3)
        assert be.pid is not None and alive(be.pid)
        be.store("k", b"still here")
        assert be.load("k") == b"still here"
    finally:
        be.close()
        be.destroy()


CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from unistore.backends.rclone import RcloneBackend
    be = RcloneBackend.from_url("rclone:" + sys.argv[1], config_file=sys.argv[2])
    be.create()
    how = sys.argv[3]
    if how == "thread":
        t = threading.Thread(target=be.open); t.start(); t.join()
    else:
        be.open()
    be.store("k", b"v")
    print(be.pid, flush=True)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    # "exit" and "thread": leave without close()
    """
)


@pytest.mark.parametrize("how", ["exit", "kill", "thread"])
def test_rcd_never_outlives_python(tmp_path: Path, empty_config: str, how: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "s"), empty_config, how],
        capture_output=True,
        timeout=120,
    )
    pid = int(proc.stdout.split()[0])
    try:
        assert wait_dead(pid), f"rclone rcd {pid} outlived its Python process ({how})"
    finally:
        if alive(pid):
            os.kill(pid, 9)
    assert (tmp_path / "s" / "k").read_bytes() == b"v"


# ----------------------------------------------------------------- data


class Unseekable(io.RawIOBase):
    def __init__(self, data: bytes):
        self.src = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: Any) -> int:
        chunk = self.src.read(min(len(b), 100_000))
        b[: len(chunk)] = chunk
        return len(chunk)


def test_stream_from_unseekable_source(local: RcloneBackend) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    local.store_file("u/v", io.BufferedReader(Unseekable(data)))
    assert local.info("u/v").size == len(data)
    assert local.load("u/v", offset=1024 * 1024, size=10) == data[1024 * 1024 : 1024 * 1024 + 10]
    out = io.BytesIO()
    assert local.load_file("u/v", out, offset=-100) == 100
    assert out.getvalue() == data[-100:]


def test_local_writes_are_atomic_and_temp_names_hidden(local: RcloneBackend, tmp_path: Path) -> None:
    local.store("d/a", b"1")
    (tmp_path / "store" / "d" / "b.0123.tmp").write_bytes(b"partial upload")
    assert [i.name for i in local.list("d")] == ["a"]
    assert [i.name for i in local.list_recursive("")] == ["d/a"]
    # nothing but the value itself is left in the directory after a store
    assert sorted(os.listdir(tmp_path / "store" / "d")) == ["a", "b.0123.tmp"]


def test_list_missing_and_file(local: RcloneBackend) -> None:
    local.store("f", b"x")
    with pytest.raises(ObjectNotFound):
        list(local.list("missing"))
    with pytest.raises(ObjectNotFound):
        list(local.list("f"))


def test_private_config_for_s3_remote(seaweedfs: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="unistore")
    remote = s3_remote(seaweedfs)
    bucket = seaweedfs.new_bucket()
    be = RcloneBackend.from_url(f"rclone:weed:{bucket}/p", remotes={"weed": remote})
    be.create()
    with be:
        pid = be.pid
        assert pid is not None
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        conf = cmdline[cmdline.index(b"--config") + 1].decode()
        assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600
        be.store("a/b", b"on s3")
        assert be.load("a/b") == b"on s3"
        # the value really is an object in the bucket
        assert seaweedfs.client().get_object(Bucket=bucket, Key="p/a/b")["Body"].read() == b"on s3"
    assert not os.path.exists(conf)  # removed on close
    be.destroy()
    assert remote["secret_access_key"] not in caplog.text
    assert remote["secret_access_key"] not in repr(be)


def test_rc_errors_do_not_leak_rcd(tmp_path: Path, empty_config: str) -> None:
    be = RcloneBackend.from_url(f"rclone:{tmp_path / 's'}", config_file=empty_config)
    be.create()
    with be:
        pid = be.pid
        with pytest.raises(ObjectNotFound):
            be.load("nope")
        with pytest.raises(ObjectNotFound):
            be.delete("nope")
    assert pid is not None and not alive(pid)
    be.destroy()


def test_store_over_rclone(tmp_path: Path, empty_config: str) -> None:
    """The documented example: a borgstore-compatible Store on an rclone: URL."""
    from unistore import Store

    store = Store(
        f"rclone:{tmp_path / 's'}", config={"": {"levels": [0]}, "data/": {"levels": [2]}}, config_file=empty_config
    )
    store.create()
    try:
        with store:
            store.store("data/0123abcd", b"value")
            assert store.load("data/0123abcd") == b"value"
            assert [i.name for i in store.list("data")] == ["0123abcd"]
        assert (tmp_path / "s" / "data" / "01" / "23" / "0123abcd").read_bytes() == b"value"
    finally:
        store.destroy()


def test_open_reader_streams(local: RcloneBackend) -> None:
    data = os.urandom(20 * 1024 * 1024 + 3)
    local.store_file("big", io.BytesIO(data))
    with local.open_reader("big") as r:
        assert r.read(10) == data[:10]
        rest = bytearray()
        while chunk := r.read(1024 * 1024):
            rest += chunk
    assert bytes(rest) == data[10:]
    with pytest.raises(ObjectNotFound):
        local.open_reader("missing")
    local.store("after", b"the backend is still usable")  # the reader had its own connection
    assert local.load("after") == b"the backend is still usable"


def test_dead_rcd_gives_connection_error(tmp_path: Path, empty_config: str) -> None:
    from unistore.errors import BackendConnectionError

    be = RcloneBackend.from_url(f"rclone:{tmp_path / 's'}", config_file=empty_config, timeout=10)
    be.create()
    be.open()
    try:
        be.store("k", b"v")
        pid = be.pid
        assert pid is not None
        os.kill(pid, 9)
        assert wait_dead(pid)
        with pytest.raises(BackendConnectionError, match="rclone"):
            be.load("k")
    finally:
        be.close()
    be.open()  # a fresh rcd
    try:
        assert be.load("k") == b"v"
    finally:
        be.close()
    be.destroy()
