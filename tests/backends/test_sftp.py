"""SFTP backend: URLs, ssh config, host keys, authentication, and faults against a real OpenSSH sshd.

The contract suite (test_contract.py) covers the operations on OpenSSH and on ``rclone serve sftp``.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.sshd import OpenSSHServer, SFTPServer, free_port
from unistore.backends.sftp import SFTPBackend
from unistore.errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendURLInvalid,
    ConfigError,
    CredentialsError,
    NameConflict,
    ObjectNotFound,
)
from unistore.layers.retry import RetryLayer
from unistore.layers.stats import StatsLayer
from unistore.url import open_backend

# ----------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url,host,port,user,path",
    [
        ("sftp://host/rel/path", "host", 22, None, "rel/path"),
        ("sftp://bob@host:2222/rel", "host", 2222, "bob", "rel"),
        ("sftp://bob@host:2222//abs/path", "host", 2222, "bob", "/abs/path"),
        ("sftp://b%40x@host//abs/with%20space/", "host", 22, "b@x", "/abs/with space"),
        ("sftp://[::1]:2200/p", "::1", 2200, None, "p"),
    ],
)
def test_url_parsing(url: str, host: str, port: int, user: str | None, path: str) -> None:
    be = SFTPBackend.from_url(url, ssh_config=None)
    assert (be.hostname, be.port, be.user, be.path) == (host, port, user, path)
    assert isinstance(open_backend(url, ssh_config=None), SFTPBackend)


@pytest.mark.parametrize("url", ["sftp://host", "sftp://host/", "sftp://host//", "sftp://u:pw@host/p", "sftp:/x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(BackendURLInvalid) as e:
        SFTPBackend.from_url(url, ssh_config=None)
    assert "pw" not in str(e.value)


def _reachable_strings(obj: Any, depth: int = 4, seen: set[int] | None = None) -> Iterator[str]:
    """Every str reachable from ``obj`` through vars(), lists, tuples and dicts (not through slots)."""
    seen = seen if seen is not None else set()
    if id(obj) in seen or depth < 0:
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _reachable_strings(k, depth - 1, seen)
            yield from _reachable_strings(v, depth - 1, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            yield from _reachable_strings(v, depth - 1, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        yield from _reachable_strings(vars(obj), depth - 1, seen)


def test_password_never_shown(sshd: SFTPServer, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-Pa55word"
    caplog.set_level(logging.DEBUG, logger="unistore")
    be = SFTPBackend.from_url(sshd.url(), **sshd.options(password=secret, passphrase=secret + "2"))
    be.create()
    with StatsLayer(be) as stats:
        stats.store("x", b"1")
        assert stats.load("x") == b"1"
        assert not any(secret in s for s in _reachable_strings(be))  # not in plain vars() of anything
    be.destroy()
    assert secret not in repr(be) and secret not in repr(vars(be))
    assert secret not in caplog.text
    assert "store x1: 1 B" in caplog.text  # StatsLayer logs operations with their volume


def test_unknown_options_are_named(sshd: SFTPServer) -> None:
    with pytest.raises(ConfigError, match="bogus_option"):
        SFTPBackend.from_url(sshd.url(), bogus_option=1)
    with pytest.raises(ConfigError, match="RetryLayer"):  # retries belong to the RetryLayer now
        SFTPBackend.from_url(sshd.url(), **sshd.options(retries=3))
    with pytest.raises(ConfigError, match="retry_wait"):
        open_backend(sshd.url(), **sshd.options(retry_wait=1))


# ----------------------------------------------------------------- paths, config, lifecycle


def test_relative_path_and_ssh_config(sshd: SFTPServer, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host mytestalias\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n  UserKnownHostsFile {sshd.known_hosts}\n"
    )
    be = SFTPBackend.from_url(
        "sftp://mytestalias/rel/store", ssh_config=str(config), allow_agent=False, look_for_keys=False
    )
    assert (be.hostname, be.port, be.user) == (sshd.host, sshd.port, sshd.user)
    be.create()
    try:
        with be:
            be.store("k", b"value")
        # relative paths start at the login (start) directory, here the server's data directory
        assert (sshd.local_path("rel/store/k")).read_bytes() == b"value"
        with pytest.raises(BackendAlreadyExists):
            be.create()
    finally:
        be.destroy()
    assert not sshd.local_path("rel/store").exists()
    with pytest.raises(BackendDoesNotExist):
        be.open()
    with pytest.raises(BackendDoesNotExist):
        be.destroy()


def test_names_stay_below_root(backend_sftp: SFTPBackend, sshd: SFTPServer) -> None:
    backend_sftp.store("a/b", b"1")
    root = Path(backend_sftp._root)  # sshd runs on this machine: server paths are local paths
    assert root.parent == sshd.data
    assert (root / "a" / "b").read_bytes() == b"1"
    # a temp file of an interrupted write is never listed
    (root / "a" / "b.1234.tmp").write_bytes(b"partial")
    assert [i.name for i in backend_sftp.list("a")] == ["b"]


# ----------------------------------------------------------------- host keys and authentication


def test_unknown_host_key_refused_unless_opted_in(sshd: SFTPServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    url = sshd.url()
    be = SFTPBackend.from_url(url, **sshd.options(known_hosts=str(empty)))
    with pytest.raises(CredentialsError, match="not known"):
        be.create()
    # explicit opt-in
    ok = SFTPBackend.from_url(url, **sshd.options(known_hosts=str(empty), accept_unknown_host_key=True))
    ok.create()
    # or the caller passes the key
    with SFTPBackend.from_url(url, **sshd.options(known_hosts=str(empty), host_key=sshd.host_public_key)) as be2:
        be2.store("k", b"v")
        assert be2.load("k") == b"v"
    ok.destroy()


def test_wrong_host_key_refused(sshd: SFTPServer, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    other_key = Path(f"{sshd.client_key}.pub").read_text().split()[:2]  # some other ed25519 key
    wrong.write_text(f"[{sshd.host}]:{sshd.port} {' '.join(other_key)}\n")
    be = SFTPBackend.from_url(sshd.url(), **sshd.options(known_hosts=str(wrong)))
    with pytest.raises(CredentialsError, match="does not match"):
        be.create()
    # accept_unknown_host_key never overrides a mismatch
    be = SFTPBackend.from_url(sshd.url(), **sshd.options(known_hosts=str(wrong), accept_unknown_host_key=True))
    with pytest.raises(CredentialsError, match="does not match"):
        be.create()
    # nor does a wrong host_key option
    be = SFTPBackend.from_url(sshd.url(), **sshd.options(host_key=" ".join(other_key), known_hosts=str(tmp_path / "x")))
    with pytest.raises(CredentialsError, match="does not match"):
        be.create()


def test_wrong_client_key_refused(sshd: SFTPServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    be = SFTPBackend.from_url(sshd.url(), **sshd.options(key_filename=str(key)))
    caplog.set_level(logging.WARNING, logger="unistore")
    with pytest.raises(CredentialsError, match="authentication"):
        be.create()
    assert "retry" not in caplog.text  # refused at once, not retried like a lost connection


def test_accept_new_is_trust_on_first_use(sshd: SFTPServer, tmp_path: Path) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # neither the file nor its directory exist yet
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host tofu\n  HostName {sshd.host}\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking accept-new\n"
    )
    opts = {"ssh_config": str(config), "allow_agent": False, "look_for_keys": False}
    be = SFTPBackend.from_url("sftp://tofu/" + sshd.abs_path("tofu").lstrip("/"), **opts)
    be.create()  # first use: accepted and saved
    saved = known.read_text().split()
    assert saved == [f"[{sshd.host}]:{sshd.port}", *sshd.host_public_key.split()[:2]]
    with be:  # later connections check against the saved key
        be.store("k", b"v")
    assert len(known.read_text().splitlines()) == 1
    # a different key for that host is refused, accept-new or not
    other = Path(f"{sshd.client_key}.pub").read_text().split()[:2]
    known.write_text(f"[{sshd.host}]:{sshd.port} {' '.join(other)}\n")
    with pytest.raises(CredentialsError, match="does not match"):
        SFTPBackend.from_url("sftp://tofu/" + sshd.abs_path("tofu").lstrip("/"), **opts).open()
    known.write_text(" ".join(saved) + "\n")
    be.destroy()


def test_no_usable_auth_method_is_credentials_error(sshd_private: SFTPServer) -> None:
    # the client has nothing to offer (no key, no agent, no password): refused at once, not retried
    # like a lost connection
    opts = sshd_private.options()
    del opts["key_filename"]
    retry = RetryLayer(SFTPBackend.from_url(sshd_private.url(), **opts), attempts=3, base_delay=0.01)
    with pytest.raises(CredentialsError, match="authentication"):
        retry.create()
    assert retry.retries == 0
    # and a server that accepts none of the methods the client has
    assert isinstance(sshd_private, OpenSSHServer)
    sshd_private.stop()
    sshd_private.config.write_text(
        sshd_private.config.read_text().replace("PubkeyAuthentication yes", "PubkeyAuthentication no")
    )
    sshd_private.start()
    with pytest.raises(CredentialsError, match="authentication"):
        SFTPBackend.from_url(sshd_private.url(), **sshd_private.options()).open()


def test_connection_refused(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    be = SFTPBackend.from_url(
        f"sftp://127.0.0.1:{port}/x", ssh_config=None, connect_timeout=2, accept_unknown_host_key=True
    )
    with pytest.raises(BackendConnectionError):
        be.open()
    assert not be.opened


# ----------------------------------------------------------------- concurrency


def test_channels_are_pooled(backend_sftp: SFTPBackend) -> None:
    connects = backend_sftp.connects
    items = {f"p/{i:03d}": os.urandom(100) for i in range(64)}
    backend_sftp.store_many(items)
    assert dict(backend_sftp.load_many(sorted(items))) == items
    # the pool never opens more channels than configured, over at most `connections` SSH connections
    idle = backend_sftp._pool.idle_channels()
    assert 1 < len(idle) <= backend_sftp.channels
    assert len({id(ch.transport) for ch in idle}) <= backend_sftp.connections
    assert backend_sftp.connects == connects  # no new connection was needed


def test_list_recursive_many_directories(backend_sftp: SFTPBackend) -> None:
    names = [f"data/{a:02x}/{b:02x}/{a:02x}{b:02x}" for a in range(6) for b in range(5)]
    backend_sftp.store_many((n, n.encode()) for n in names)
    got = list(backend_sftp.list_recursive("data"))
    assert [i.name for i in got] == [n[len("data/") :] for n in sorted(names)]
    assert all(i.size == len(n) for i, n in zip(got, sorted(names), strict=True))


# ----------------------------------------------------------------- faults


class SlowReader(io.RawIOBase):
    """A seekable source that is slow to read, so a transfer can be interrupted mid-way."""

    def __init__(self, data: bytes, delay: float):
        self.buf = io.BytesIO(data)
        self.delay = delay
        self.started = threading.Event()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.buf.tell()

    def seek(self, pos: int, whence: int = 0) -> int:
        return self.buf.seek(pos, whence)

    def read(self, size: int | None = -1) -> bytes:
        data = self.buf.read(size)
        self.started.set()
        time.sleep(self.delay)
        return data


class SlowWriter(io.BytesIO):
    """A seekable destination that is slow to write (RetryLayer rewinds it to retry a load_file)."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay
        self.started = threading.Event()

    def write(self, data: Any) -> int:
        self.started.set()
        time.sleep(self.delay)
        return super().write(data)


def _in_thread(func: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = func()
        except BaseException as e:  # noqa: BLE001
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_sshd_killed_mid_transfer_recovers(sshd_private: SFTPServer) -> None:
    server = sshd_private
    be = SFTPBackend.from_url(server.url(), **server.options(timeout=10, connect_timeout=5))
    be.create()
    retry = RetryLayer(be, attempts=6, base_delay=0.3)
    retry.open()
    try:
        data = os.urandom(32 * 1024 * 1024)
        src = SlowReader(data, delay=0.3)
        t, out = _in_thread(lambda: retry.store_file("big", src))
        assert src.started.wait(30)
        server.stop()  # kills sshd and every session process: the transfer breaks
        server.start()  # same port, same host key
        t.join(120)
        assert not t.is_alive()
        assert "error" not in out, out.get("error")
        # the first attempt broke, RetryLayer retried, and the backend made a new connection for it
        assert retry.retries >= 1
        assert be.connects >= 2
        assert be.load("big") == data

        # a download interrupted mid-way is retried from the start into the rewound destination
        dst = SlowWriter(delay=0.05)
        connects, retries = be.connects, retry.retries
        t, out = _in_thread(lambda: retry.load_file("big", dst))
        assert dst.started.wait(30)
        server.restart()
        t.join(120)
        assert not t.is_alive()
        assert "error" not in out, out.get("error")
        assert out["result"] == len(data)
        assert hashlib.sha256(dst.getvalue()).digest() == hashlib.sha256(data).digest()
        assert retry.retries > retries and be.connects > connects

        # and plain operations go on after the restart: the next call reconnects by itself
        server.restart()
        connects = be.connects
        try:
            be.store("after", b"restart")
        except BackendConnectionError:  # the dead connection may be noticed only by this call
            be.store("after", b"restart")  # and the next one reconnects (the backend itself never retries)
        assert be.connects == connects + 1
        assert be.load("after") == b"restart"
        assert {i.name for i in be.list("")} == {"after", "big"}
    finally:
        retry.close()


def test_unresponsive_server_times_out(sshd_private: SFTPServer) -> None:
    server = sshd_private
    be = SFTPBackend.from_url(server.url(), **server.options(timeout=1, connect_timeout=1))
    be.create()
    be.open()
    try:
        be.store("k", b"v")
        connects = be.connects
        server.freeze()  # sshd and its sessions stop answering; sockets stay open
        t, out = _in_thread(lambda: be.load("k"))
        t.join(60)  # far above timeout
        assert not t.is_alive(), "the backend hung on a server that stopped answering"
        assert isinstance(out.get("error"), BackendConnectionError), out
        server.thaw()
        # the backend reconnects once the server answers again
        assert be.load("k") == b"v"
        assert be.connects == connects + 1
    finally:
        server.thaw()
        be.close()


def test_missing_item_is_not_a_connection_error(backend_sftp: SFTPBackend) -> None:
    with pytest.raises(ObjectNotFound):
        backend_sftp.load("nothing/here")
    # the channel that saw the error is still usable
    backend_sftp.store("ok", b"1")
    assert backend_sftp.load("ok") == b"1"


def test_store_over_sftp(sshd: SFTPServer) -> None:
    """The documented example: a borgstore-compatible Store on an sftp:// URL."""
    from unistore import Store

    store = Store(sshd.url(), config={"": {"levels": [0]}, "data/": {"levels": [2]}}, **sshd.options())
    store.create()
    try:
        with store:
            key = "data/0123abcd"
            store.store(key, b"value")
            assert store.load(key, offset=1, size=3) == b"alu"
            assert [i.name for i in store.list("data")] == ["0123abcd"]
        assert any(p.name == "0123abcd" for p in sshd.data.rglob("0123abcd"))
    finally:
        store.destroy()


def test_store_many_batches_with_failures(backend_sftp: SFTPBackend, sshd: SFTPServer) -> None:
    backend_sftp.mkdir("b/taken")  # a directory where one value should go
    items = {f"b/{i:02d}": bytes([i]) * 100 for i in range(40)}
    items["b/taken"] = b"cannot replace a directory"
    items["b/new/dir/x"] = b"in a directory that does not exist yet"
    with pytest.raises(NameConflict):
        backend_sftp.store_many(items)
    for name, value in items.items():
        if name != "b/taken":
            assert backend_sftp.load(name) == value
    assert backend_sftp.info("b/taken").directory
    # no temp file is left behind
    assert not [p for p in Path(backend_sftp._root).rglob("*.tmp")]


def test_open_reader_streams(backend_sftp: SFTPBackend) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    backend_sftp.store("big", data)
    with backend_sftp.open_reader("big") as r:
        assert r.read(10) == data[:10]
        rest = bytearray()
        while chunk := r.read(100_000):
            rest += chunk
        # the pool goes on working while the reader holds its own channel
        backend_sftp.store("other", b"x")
    assert bytes(rest) == data[10:]
    with pytest.raises(ObjectNotFound):
        backend_sftp.open_reader("missing")
    assert backend_sftp.load("other") == b"x"


def test_load_many_batches(backend_sftp: SFTPBackend) -> None:
    items = {f"lm/{i:03d}": os.urandom(i * 997) for i in range(70)}
    items["lm/big"] = os.urandom(3 * 1024 * 1024 + 1)  # more than the first READs of a batch
    backend_sftp.store_many(items)
    order = sorted(items, reverse=True)
    assert list(backend_sftp.load_many(order)) == [(n, items[n]) for n in order]
    backend_sftp.mkdir("lm/dir")
    got = []
    with pytest.raises(ObjectNotFound):
        for name, value in backend_sftp.load_many(["lm/001", "lm/002", "lm/missing", "lm/003"]):
            got.append((name, value))
    assert got == [("lm/001", items["lm/001"]), ("lm/002", items["lm/002"])]  # the items before the error
    with pytest.raises(ObjectNotFound):
        list(backend_sftp.load_many(["lm/dir"]))
    backend_sftp.store("after", b"ok")  # the channel is in a clean state afterwards
    assert backend_sftp.load("after") == b"ok"
