"""A moto S3 server on 127.0.0.1 (``moto.server.ThreadedMotoServer`` on a free port).

moto accepts any credentials, ignores SSE-C and does not check presigned signatures: never use it
as the only server for a security-relevant test (use ``seaweedfs`` for those).

The fixture ``moto_s3`` has the same shape as ``seaweedfs``: ``endpoint``, ``access_key``,
``secret_key``, ``new_bucket(object_lock=False)``, ``url(bucket, prefix="")``, ``client()``.
:func:`start_moto` is the plain context manager.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

ACCESS_KEY = "motokey"
SECRET_KEY = "moto-secret-0123456789"


class MotoS3:
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
        if self._client is not None:
            self._client.close()
            self._client = None
        self._server.stop()

    def client(self) -> Any:
        """A boto3 S3 client for this server (for test setup and inspection)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            )
        return self._client

    def new_bucket(self, object_lock: bool = False) -> str:
        """Create a uniquely named bucket (with object lock enabled if asked) and return its name."""
        name = f"t-{uuid.uuid4().hex[:20]}"
        kwargs: dict[str, Any] = {"Bucket": name}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        self.client().create_bucket(**kwargs)
        return name

    def url(self, bucket: str, prefix: str = "") -> str:
        """The unistore ``s3:`` URL for ``bucket`` (and ``prefix``) on this server, with credentials."""
        path = f"{bucket}/{prefix.strip('/')}" if prefix.strip("/") else bucket
        return f"s3:{self.access_key}:{self.secret_key}@{self.endpoint}/{path}"

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
    from unistore.backends.s3 import S3Backend

    be = S3Backend.from_url(moto_s3.url(moto_s3.new_bucket(), "store"))
    be.create()
    with be:
        yield be
    be.destroy()
