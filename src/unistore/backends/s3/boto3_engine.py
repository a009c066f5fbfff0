"""The boto3 engine: the boto3 session and client, and the data path on botocore.

boto3 always serves the control path (listing, copies, tags, object lock, presigning, multipart);
with ``engine="boto3"`` (or options obstore lacks) it serves the data path too. botocore's own
retry (mode "standard") is the only retry here: ``max_attempts`` is its *total* number of tries.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import CredentialsError, PermissionDenied
from .config import MiB, S3Config
from .errors import RangeNotSatisfiable, error_code, http_status, translate


@dataclass(frozen=True)
class Head:
    """What a HEAD tells about an object."""

    size: int
    mtime: float
    etag: str | None  # quoted, as the service sends it
    version: str | None = None


def make_session(cfg: S3Config) -> Any:
    """A boto3 session: static keys from the options, else boto3's chain (environment, profile, role)."""
    import boto3

    if cfg.access_key is not None and cfg.secret is not None:
        return boto3.Session(
            aws_access_key_id=cfg.access_key,
            aws_secret_access_key=cfg.secret.value,
            aws_session_token=cfg.token.value if cfg.token else None,
            region_name=cfg.region,
        )
    try:
        return boto3.Session(profile_name=cfg.profile, region_name=cfg.region)
    except Exception as e:  # botocore.exceptions.ProfileNotFound and friends
        raise CredentialsError(f"cannot use AWS profile {cfg.profile!r}: {type(e).__name__}") from None


def make_client(cfg: S3Config, session: Any, *, attempts: int | None = None, timeout: float | None = None) -> Any:
    """The boto3 S3 client: ``attempts`` total tries (default ``max_attempts``), the configured timeouts."""
    from botocore.config import Config

    options: dict[str, Any] = dict(
        region_name=cfg.region,
        s3={"addressing_style": cfg.addressing_style, "payload_signing_enabled": not cfg.unsigned_payload},
        connect_timeout=timeout or cfg.connect_timeout,
        read_timeout=timeout or cfg.read_timeout,
        retries={"total_max_attempts": attempts or cfg.max_attempts, "mode": "standard"},
        max_pool_connections=cfg.max_pool_connections,
        request_checksum_calculation=cfg.checksum,
        response_checksum_validation=cfg.checksum,
        tcp_keepalive=True,
        signature_version="s3v4",
    )
    config = Config(**options)
    return session.client(
        "s3",
        endpoint_url=cfg.endpoint_url,
        use_ssl=cfg.use_ssl,
        verify=cfg.verify,
        config=config,
    )


def is_aws_endpoint(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws")) or host == "amazonaws.com"


class Boto3Engine:
    """The data path on a boto3 client (``key`` is the full object key, ``name`` the label for errors)."""

    def __init__(self, client: Any, cfg: S3Config) -> None:
        self.client = client
        self.bucket = cfg.bucket
        self.sse = sse_args(cfg)
        self.put_extra = dict(self.sse)
        if cfg.storage_class:
            self.put_extra["StorageClass"] = cfg.storage_class

    def head(self, key: str, name: str) -> Head | None:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=key, **self.sse)
        except Exception as e:
            if http_status(e) == 404:
                return None
            error = translate(e, f"info {name}")
            if isinstance(error, PermissionDenied):  # a HEAD has no body: ask a GET whether it is the signature
                try:
                    self.client.get_object(Bucket=self.bucket, Key=key, Range="bytes=0-0", **self.sse)
                except Exception as probe:
                    if isinstance(translate(probe, ""), CredentialsError):
                        error = translate(probe, f"info {name}")
            raise error from None
        return Head(resp["ContentLength"], resp["LastModified"].timestamp(), resp.get("ETag"), resp.get("VersionId"))

    def get(self, key: str, name: str, rng: tuple[int, int] | dict[str, int] | None) -> bytes:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self.sse}
        if isinstance(rng, tuple):
            args["Range"] = f"bytes={rng[0]}-{rng[1] - 1}"
        elif rng is not None:
            args["Range"] = f"bytes=-{rng['suffix']}" if "suffix" in rng else f"bytes={rng['offset']}-"
        try:
            resp = self.client.get_object(**args)
            return resp["Body"].read()  # type: ignore[no-any-return]
        except Exception as e:
            if error_code(e) == "InvalidRange":
                raise RangeNotSatisfiable() from None
            raise translate(e, f"load {name}") from None

    def get_buffer(self, key: str, name: str, start: int, length: int) -> bytes:
        return self.get(key, name, (start, start + length))

    def stream(self, key: str, name: str, start: int, length: int) -> Iterator[bytes]:
        if length == 0:
            return
        args = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={start}-{start + length - 1}", **self.sse}
        try:
            body = self.client.get_object(**args)["Body"]
        except Exception as e:
            raise translate(e, f"load {name}") from None
        try:
            while True:
                try:
                    chunk = body.read(1 * MiB)
                except Exception as e:
                    raise translate(e, f"load {name}") from None
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def put(self, key: str, name: str, data: Any) -> Head:
        """Store ``data``; the Head of what was written (ETag and version, size and mtime not filled in)."""
        try:
            resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), **self.put_extra)
        except Exception as e:
            raise translate(e, f"store {name}") from None
        return Head(0, 0, resp.get("ETag"), resp.get("VersionId"))

    def first_key_below(self, key: str, name: str) -> str | None:
        """The first key starting with ``key + "/"`` (a directory marker is ``key/``), or None."""
        try:
            resp = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key + "/", MaxKeys=1)
        except Exception as e:
            raise translate(e, f"list {name}") from None
        found = resp.get("Contents") or []
        return str(found[0]["Key"]) if found else None

    def delete(self, key: str, name: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as e:
            raise translate(e, f"delete {name}") from None


def sse_args(cfg: S3Config) -> dict[str, Any]:
    """The SSE-C request arguments (empty without a key)."""
    if cfg.sse_key is None:
        return {}
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": cfg.sse_key.value}


def copy_source_sse_args(cfg: S3Config) -> dict[str, Any]:
    """The SSE-C arguments to read the source of a server-side copy with."""
    if cfg.sse_key is None:
        return {}
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": cfg.sse_key.value}
