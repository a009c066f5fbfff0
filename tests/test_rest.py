"""The REST protocol both ways: borgstore's client against `unistore serve`, our client against
borgstore's server, rest:// over OpenSSH, and a server under abuse."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import borgstore.store as bstore
import pytest
import urllib3
from borgstore.backends.rest import REST as BorgREST

from tests.servers.rest import PASSWORD, USER, RestServer, borgstore_serve, unistore_serve
from unistore import Store
from unistore.backends.rest import RestBackend
from unistore.errors import ConfigError, CredentialsError, ObjectNotFound
from unistore.server.protocol import MEDIA_TYPE

CONFIG = {"": {"levels": [0]}, "data/": {"levels": [2]}, "packs/": {"levels": [1]}}
KEYS = [hashlib.sha256(bytes([i])).hexdigest() for i in range(16)]


def random_ops(seed: int, n: int) -> list[tuple[Any, ...]]:
    rnd = random.Random(seed)
    ops: list[tuple[Any, ...]] = []
    for _ in range(n):
        key = "data/" + rnd.choice(KEYS)
        kinds = ["store", "load", "info", "delete", "soft", "undelete", "list", "hash"]
        kind = rnd.choices(kinds, [4, 5, 2, 1, 1, 1, 1, 1])[0]
        if kind == "store":
            ops.append((kind, key, rnd.randbytes(rnd.choice([3, 5, 300, 5000]))))
        elif kind == "load":
            ops.append((kind, key, rnd.choice([0, 2, -3]), rnd.choice([None, 1, 10])))
        else:
            ops.append((kind, key))
    return ops


def apply(store: Any, op: tuple[Any, ...]) -> Any:
    kind, key, *rest = op
    try:
        if kind == "store":
            return store.store(key, rest[0])
        if kind == "load":
            return store.load(key, offset=rest[0], size=rest[1])
        if kind == "info":
            i = store.info(key)
            return (i.exists, i.size)
        if kind == "delete":
            return store.delete(key)
        if kind == "soft":
            return store.move(key, delete=True)
        if kind == "undelete":
            return store.move(key, undelete=True)
        if kind == "hash":
            return store.hash(key)
        return sorted((i.name, i.size) for i in store.list("data"))
    except (ObjectNotFound, bstore.ObjectNotFound):
        return "not found"


def test_borgstore_client_against_unistore_serve(tmp_path: Path) -> None:
    """borgstore's own REST client, unchanged, gets the same answers as borgstore on posixfs."""
    server = unistore_serve(tmp_path, "served")
    try:
        client = BorgREST(f"http://127.0.0.1:{server.port}", username=USER, password=PASSWORD)
        over_rest = bstore.Store(backend=client, config=CONFIG)
        reference = bstore.Store(f"file://{tmp_path}/reference", config=CONFIG)
        over_rest.create()
        reference.create()
        ops = random_ops(5, 600)
        with over_rest, reference:
            for op in ops:
                assert apply(over_rest, op) == apply(reference, op), op
            for store in (over_rest, reference):
                store.store("packs/" + KEYS[3], bytes(range(256)) * 8)
            src = [(KEYS[3], 7, 9), (KEYS[3], -20, 20), (KEYS[3], 0, 0)]
            assert over_rest.gather(src, namespace="packs") == reference.gather(src, namespace="packs")
            for algorithm in ("sha256", "blake3"):
                assert over_rest.defrag(src, algorithm=algorithm, namespace="packs") == reference.defrag(
                    src, algorithm=algorithm, namespace="packs"
                )
                assert over_rest.hash("packs/" + KEYS[3], algorithm) == reference.hash("packs/" + KEYS[3], algorithm)
            assert set(over_rest.quota()) == {"limit", "usage"}
    finally:
        server.stop()


def test_unistore_client_against_borgstore_server(tmp_path: Path) -> None:
    server = borgstore_serve(tmp_path, "theirs")
    try:
        ours = Store(f"http://{USER}:{PASSWORD}@127.0.0.1:{server.port}", config=CONFIG)
        reference = bstore.Store(f"file://{tmp_path}/reference", config=CONFIG)
        ours.create()
        reference.create()
        with ours, reference:
            for op in random_ops(8, 300):
                assert apply(ours, op) == apply(reference, op), op
            ours.store("packs/" + KEYS[1], b"0123456789" * 100)
            reference.store("packs/" + KEYS[1], b"0123456789" * 100)
            src = [(KEYS[1], 5, 10), (KEYS[1], -7, 7)]
            assert ours.gather(src, namespace="packs") == reference.gather(src, namespace="packs")
            assert ours.defrag(src, algorithm="sha256", namespace="packs") == reference.defrag(
                src, algorithm="sha256", namespace="packs"
            )
    finally:
        server.stop()


def test_rest_over_ssh_stdio(sshd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rest://user@host:port//abs/path runs the server over the suite's OpenSSH, on stdio."""
    monkeypatch.setenv(
        "UNISTORE_RSH",
        f"ssh -i {sshd.client_key} -o UserKnownHostsFile={sshd.known_hosts} -o StrictHostKeyChecking=yes "
        "-o BatchMode=yes -o IdentitiesOnly=yes",
    )
    path = tmp_path / "over-ssh"
    url = f"rest://{sshd.user}@{sshd.host}:{sshd.port}/{path}"
    store = Store(url, config=CONFIG, remote_command=f"{sys.executable} -m unistore.server")
    store.create()
    with store:
        key = "data/" + KEYS[2]
        store.store(key, b"over ssh" * 1000)
        assert store.load(key, offset=-3) == b"ssh"
        assert [i.name for i in store.list("data")] == [KEYS[2]]
        store.move(key, delete=True)
        assert store.load(key, deleted=True)[:8] == b"over ssh"
    assert (path / "data" / KEYS[2][:2] / KEYS[2][2:4] / (KEYS[2] + ".del")).exists()


def test_credentials(rest_server: RestServer) -> None:
    with pytest.raises(CredentialsError):
        be = RestBackend.from_url(rest_server.url(auth=False))
        be.open()
        be.info("x")
    wrong = RestBackend.from_url(f"http://{USER}:wrong@127.0.0.1:{rest_server.port}")
    wrong.open()
    with pytest.raises(CredentialsError):
        wrong.load("x")
    assert PASSWORD not in repr(wrong) and "wrong" not in repr(wrong)
    with pytest.raises(ConfigError, match="plain http"):
        RestBackend.from_url(f"http://{USER}:{PASSWORD}@203.0.113.5:5618")  # never over plain http off loopback


def _raw(port: int, request: bytes, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.settimeout(read_timeout)
        s.sendall(request)
        chunks = []
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks):
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def _auth() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def test_server_abuse(rest_server: RestServer, tmp_path: Path) -> None:
    http = urllib3.PoolManager()
    base = f"http://127.0.0.1:{rest_server.port}"
    headers = {"Accept": MEDIA_TYPE, "Authorization": _auth()}
    be = RestBackend.from_url(rest_server.url())
    try:
        be.create()
    except Exception:  # noqa: BLE001
        pass
    # path traversal: nothing outside the served store, in any spelling
    for path in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/a/..%2f..%2fetc", "//etc/passwd", "/a%00b"):
        r = http.request("GET", base + path, headers=headers)
        assert r.status in (400, 404), (path, r.status)
        assert b"root:" not in r.data
    r = http.request("POST", base + "/../escaped", body=b"x", headers=headers)  # normalized to /escaped
    assert not (rest_server.root.parent / "escaped").exists() and not (rest_server.root / "escaped").exists()
    assert r.status in (400, 404) or (rest_server.root / "store" / "escaped").exists()
    # missing credentials, wrong credentials, no Accept header
    assert http.request("GET", base + "/x", headers={"Accept": MEDIA_TYPE}).status == 401
    bad = {"Accept": MEDIA_TYPE, "Authorization": "Basic " + base64.b64encode(b"borg:nope").decode()}
    assert http.request("GET", base + "/x", headers=bad).status == 401
    assert http.request("GET", base + "/x", headers={"Authorization": _auth()}).status == 406
    # oversized header, oversized body
    huge = _raw(rest_server.port, b"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert huge.split(b" ")[1] in (b"400", b"431")
    big = http.request("POST", base + "/big", body=b"x" * (65 * 1024 * 1024), headers=headers)
    assert big.status == 413
    # a client that stalls mid-body gets an answer (or a closed connection) within the body timeout
    started = time.monotonic()
    stalled = _raw(
        rest_server.port,
        (f"POST /stall HTTP/1.1\r\nHost: a\r\nAccept: {MEDIA_TYPE}\r\nAuthorization: {_auth()}\r\n"
         "Content-Length: 1000\r\n\r\nonly a little").encode(),
    )
    assert time.monotonic() - started < 8
    assert stalled == b"" or stalled.split(b" ")[1] in (b"408", b"400")
    with be:
        assert not be.info("stall").exists  # nothing half-written
    # a body that does not match its hash is refused and nothing is stored
    forged = dict(headers, **{"X-Content-hash-sha256": hashlib.sha256(b"other").hexdigest()})
    assert http.request("POST", base + "/forged", body=b"x" * 300000, headers=forged).status == 422
    with be:
        assert not be.info("forged").exists
    # the access log holds no credentials
    log = (rest_server.root / "server.log").read_text()
    assert PASSWORD not in log and _auth().split()[1] not in log


def test_many_clients_no_error_no_wrong_byte(rest_server: RestServer) -> None:
    be = RestBackend.from_url(rest_server.url(), workers=16)
    try:
        be.create()
    except Exception:  # noqa: BLE001
        pass
    errors: list[BaseException] = []
    counts = [0] * 16

    def client(i: int) -> None:
        rnd = random.Random(i)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                name = f"c{i}/{rnd.randrange(20)}"
                value = hashlib.sha256(f"{i}-{counts[i]}".encode()).digest() * rnd.randint(1, 400)
                be.store(name, value)
                assert be.load(name) == value
                assert be.load(name, offset=-32) == value[-32:]
                counts[i] += 1
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    with be:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert sum(counts) > 16


def test_streamed_large_value(rest_server: RestServer, tmp_path: Path) -> None:
    be = RestBackend.from_url(rest_server.url())
    try:
        be.create()
    except Exception:  # noqa: BLE001
        pass
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for i in range(12):
            f.write(os.urandom(1024 * 1024) if i % 2 else bytes([i]) * (1024 * 1024))
    with be, open(src, "rb") as f:
        be.store_file("big", f)
        out = tmp_path / "back"
        with open(out, "wb") as g:
            assert be.load_file("big", g) == 12 * 1024 * 1024
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()
        assert be.load("big", offset=5 * 1024 * 1024 + 3, size=4) == src.read_bytes()[5 * 1024 * 1024 + 3 :][:4]
        be.delete("big")
