"""What the S3 test servers (``moto``, ``seaweedfs``) offer alike: endpoint, credentials, a boto3
client, new buckets, unistore URLs, and a created backend on a fresh bucket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class S3Endpoint:
    """A running S3 server as tests see it; a subclass sets ``endpoint``, the credentials and
    ``_client = None``, and starts and stops the server."""

    endpoint: str
    access_key: str
    secret_key: str
    _client: Any

    def _client_options(self) -> dict[str, Any]:
        """botocore ``Config`` options this server's client needs beyond path addressing and one attempt."""
        return {}

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
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **self._client_options()),
            )
        return self._client

    def _close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

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


@contextmanager
def created_backend(server: S3Endpoint, prefix: str) -> Iterator[Any]:
    """A created, opened, empty S3Backend at ``prefix`` of a new bucket on ``server``; destroyed after."""
    from unistore.backends.s3 import S3Backend

    be = S3Backend.from_url(server.url(server.new_bucket(), prefix))
    be.create()
    with be:
        yield be
    be.destroy()
