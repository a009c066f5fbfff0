"""A moto S3 server on 127.0.0.1 (``moto.server.ThreadedMotoServer`` on a free port).

moto accepts any credentials, ignores SSE-C and does not check presigned signatures: never use it
as the only server for a security-relevant test (use ``seaweedfs`` for those).

The fixture ``moto_s3`` has the same shape as ``seaweedfs``: ``endpoint``, ``access_key``,
``secret_key``, ``new_bucket(object_lock=False)``, ``url(bucket, prefix="")``, ``client()``.
:func:`start_moto` is the plain context manager.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.servers.s3endpoint import S3Endpoint, created_backend

ACCESS_KEY = "motokey"
SECRET_KEY = "moto-secret-0123456789"


class MotoS3(S3Endpoint):
    """A running moto server: endpoint, credentials, and helpers to create buckets and URLs."""

    def __init__(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        from moto.server import ThreadedMotoServer

        self.access_key = access_key
        self.secret_key = secret_key
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.endpoint = ""
        self._client: Any = None

    def start(self) -> None:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self._close_client()
        self._server.stop()

    def __repr__(self) -> str:
        return f"<MotoS3 {self.endpoint}>"


@contextmanager
def start_moto() -> Iterator[MotoS3]:
    """Start a moto server in a thread of this process; shut it down on exit, also on failure."""
    server = MotoS3()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """One moto S3 server for the whole test session."""
    with start_moto() as server:
        yield server


@pytest.fixture
def backend_s3_moto(moto_s3: MotoS3) -> Iterator[Any]:
    """A created, opened, empty S3Backend on the session moto server (contract suite entry ``s3_moto``)."""
    with created_backend(moto_s3, "store") as be:
        yield be
