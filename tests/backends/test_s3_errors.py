"""The S3 error contract: every failure a typed unistore error, on time, with the configured
number of tries; ranges clip like posixfs; names behave as on memory://."""

from __future__ import annotations

import http.server
import io
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.servers.seaweedfs import SeaweedFS
from unistore.backends.s3 import S3Backend
from unistore.backends.s3.config import make_config
from unistore.backends.s3.obstore_engine import ObstoreEngine, make_store
from unistore.errors import (
    BackendConnectionError,
    BackendError,
    CredentialsError,
    NameConflict,
    ObjectNotFound,
    UploadNotFound,
)


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers; counts the connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


class _NotImplementedHandler(http.server.BaseHTTPRequestHandler):
    requests = 0

    def _answer(self) -> None:
        type(self).requests += 1
        body = b'<?xml version="1.0"?><Error><Code>NotImplemented</Code><Message>no</Message></Error>'
        self.send_response(501)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)) if self.command != "HEAD" else "0")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


def test_a_server_that_never_answers_is_a_connection_error_after_max_attempts(silent: SilentServer) -> None:
    be = S3Backend.from_url(
        f"s3:k:secret-key-123@http://127.0.0.1:{silent.port}/b", connect_timeout=1, read_timeout=1, max_attempts=2
    )
    with pytest.raises(BackendConnectionError):  # botocore's ReadTimeoutError has response=None
        be.open()
    assert silent.accepted == 2  # max_attempts is the total number of tries (boto3 made 3)


def test_obstore_engine_makes_max_attempts_tries(silent: SilentServer) -> None:
    cfg = make_config("b", access_key="k", secret_key="s", connect_timeout=1, read_timeout=1, max_attempts=2)
    engine = ObstoreEngine(make_store(cfg, None, f"http://127.0.0.1:{silent.port}"))
    with pytest.raises(BackendConnectionError):
        engine.head("x", "x")
    assert silent.accepted == 2


def test_http_501_is_no_connection_error() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotImplementedHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        be = S3Backend.from_url(f"s3:k:secret-key-123@http://127.0.0.1:{server.server_port}/b", max_attempts=3)
        with pytest.raises(BackendError) as e:
            be.open()
        assert not isinstance(e.value, BackendConnectionError)  # RetryLayer must not retry what cannot work
        assert _NotImplementedHandler.requests == 1  # nor does the engine
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def sw(seaweedfs: SeaweedFS) -> Iterator[S3Backend]:
    be = S3Backend.from_url(seaweedfs.url(seaweedfs.new_bucket(), "err"))
    be.create()
    with be:
        yield be
    be.destroy()


def test_wrong_signature_is_credentials_error_on_both_engines(seaweedfs: SeaweedFS, sw: S3Backend) -> None:
    sw.store("x", b"1")
    wrong = make_config(sw.bucket, access_key=seaweedfs.access_key, secret_key="wrong-secret-xyz-123")
    engine = ObstoreEngine(make_store(wrong, None, seaweedfs.endpoint))
    for call in (lambda: engine.head("err/x", "x"), lambda: engine.get("err/x", "x", None)):
        with pytest.raises(CredentialsError) as e:
            call()
        assert "wrong-secret-xyz-123" not in str(e.value)
    boto = S3Backend.from_url(f"s3:{seaweedfs.access_key}:wrong-secret-xyz-123@{seaweedfs.endpoint}/{sw.bucket}")
    with pytest.raises(CredentialsError):
        boto.open()


def test_no_such_upload_is_upload_not_found(sw: S3Backend) -> None:
    with pytest.raises(UploadNotFound) as e:
        sw.abort_multipart("x", "no-such-upload")
    assert not isinstance(e.value, ObjectNotFound)


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_huge_sizes_clip_like_posixfs(seaweedfs: SeaweedFS, sw: S3Backend, engine: str) -> None:
    sw.store("r", b"0123456789")
    with S3Backend.from_url(seaweedfs.url(sw.bucket, "err"), engine=engine) as be:
        assert be.load("r", size=2**64) == b"0123456789"
        assert be.load("r", offset=4, size=2**64) == b"456789"
        assert be.load("r", offset=4, size=2**63 - 5) == b"456789"
        assert be.load("r", offset=20, size=2**64) == b""


def test_names_behave_as_on_memory(sw: S3Backend) -> None:
    sw.store("d/inner", b"x")
    sw.store("item", b"i")
    sw.mkdir("empty")
    for directory in ("d", "empty"):
        with pytest.raises(NameConflict):
            sw.store(directory, b"onto a directory")
        assert sw.info(directory).directory
    with pytest.raises(NameConflict):
        sw.store_file("d", io.BytesIO(b"onto a directory"))
    with pytest.raises(NameConflict):
        sw.store("item/child", b"below an item")
    with pytest.raises(NameConflict):
        sw.move("item", "d")
    with pytest.raises(NameConflict):
        sw.mkdir("item")
    assert not sw.info("item/child").exists
    with pytest.raises(ObjectNotFound):
        sw.delete("d")
    with pytest.raises(ObjectNotFound):
        sw.rmdir("item")
    with pytest.raises(ObjectNotFound):
        sw.load_file("d", io.BytesIO())
    with pytest.raises(ObjectNotFound):
        sw.hash("d")
    assert sw.load("item") == b"i" and sw.load("d/inner") == b"x"
    assert [(i.name, i.directory) for i in sw.list("")] == [("d", True), ("empty", True), ("item", False)]
