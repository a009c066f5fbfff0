"""The optional capabilities of S3Backend: which an instance has (decided at open), and metadata,
checksums, presigned URLs, tags, object lock, storage classes and bucket CORS.

Per instance: ``sse_c`` only with a key, and then no ``presign`` (a presigned GET of an SSE-C
object would need the key in the request, so the URL could not be handed out);
``object_lock`` only where the bucket has object lock enabled (known after ``open``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from ...errors import ConfigError
from ..capabilities import (
    CHECKSUMS,
    METADATA,
    MULTIPART,
    OBJECT_LOCK,
    PRESIGN,
    SERVER_SIDE_COPY,
    SSE_C,
    STORAGE_CLASS,
    TAGS,
    ObjectMeta,
    StoreMeta,
)
from .config import S3Config
from .errors import NO_OBJECT_LOCK, error_code, http_status, translate

if TYPE_CHECKING:
    from .boto3_engine import Boto3Engine

_MD5 = re.compile(r"^[0-9a-f]{32}$")


def initial_capabilities(cfg: S3Config, *, object_lock: bool = False) -> frozenset[str]:
    """The capabilities of a backend with these options (``object_lock`` as found at open)."""
    caps = {TAGS, MULTIPART, SERVER_SIDE_COPY, STORAGE_CLASS, METADATA, CHECKSUMS}
    if cfg.sse_key is not None:
        caps.add(SSE_C)
    else:
        caps.add(PRESIGN)
    if object_lock:
        caps.add(OBJECT_LOCK)
    return frozenset(caps)


def unquote(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def store_args(meta: StoreMeta | None) -> dict[str, Any]:
    """The PutObject/CreateMultipartUpload arguments of a metadata record."""
    args: dict[str, Any] = {}
    if meta is None:
        return args
    if meta.content_type:
        args["ContentType"] = meta.content_type
    if meta.content_disposition:
        args["ContentDisposition"] = meta.content_disposition
    if meta.metadata:
        args["Metadata"] = {str(k): str(v) for k, v in meta.metadata.items()}
    if meta.storage_class:
        args["StorageClass"] = meta.storage_class
    return args


class S3Capabilities:
    """Mixed into S3Backend (uses its client, keys and checks)."""

    if TYPE_CHECKING:
        bucket: str
        config: S3Config
        capabilities: frozenset[str]
        _client: Any
        _boto: Boto3Engine | None

        def _check_open(self) -> None: ...
        def _key(self, name: str) -> str: ...
        def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any: ...
        def require(self, capability: str) -> None: ...
        def _check_store_target(self, name: str) -> None: ...
        def _upload(self, key: str, name: str, file: IO[bytes], size: int | None, extra: dict[str, Any]) -> str: ...
        def store(self, name: str, value: Any) -> None: ...
        def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None: ...
        def _put_small(self, key: str, name: str, data: bytes, extra: dict[str, Any] | None) -> None: ...
        def _store_stream(self, name: str, file: IO[bytes], size: int | None, extra: dict[str, Any] | None) -> None: ...

    def _sse(self) -> dict[str, Any]:
        return self._boto.sse if self._boto is not None else {}

    def _head(self, name: str) -> dict[str, Any]:
        from ...errors import ObjectNotFound

        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._key(name), **self._sse())  # type: ignore[no-any-return]
        except Exception as e:
            if http_status(e) == 404:
                raise ObjectNotFound(name) from None
            raise translate(e, f"stat {name}") from None

    # ------------------------------------------------------------------ metadata and checksums
    def stat(self, name: str) -> ObjectMeta:
        """Size, mtime, ETag (unquoted), md5 where the ETag is one, content type, disposition, metadata, class."""
        self._check_open()
        resp = self._head(name)
        etag = unquote(resp.get("ETag"))
        plain_md5 = (
            etag is not None
            and _MD5.match(etag) is not None
            and not resp.get("SSECustomerAlgorithm")
            and resp.get("ServerSideEncryption") != "aws:kms"
        )
        return ObjectMeta(
            name=name,
            size=int(resp["ContentLength"]),
            mtime=resp["LastModified"].timestamp(),
            etag=etag,
            checksums={"md5": etag} if plain_md5 and etag else {},
            content_type=resp.get("ContentType"),
            content_disposition=resp.get("ContentDisposition"),
            metadata=dict(resp.get("Metadata") or {}),
            storage_class=str(resp.get("StorageClass") or "STANDARD"),
        )

    def store_with_meta(self, name: str, data: Any, meta: StoreMeta | None = None, *, size: int | None = None) -> None:
        """Store ``data`` (bytes-like or a binary file) with content type, disposition, metadata, class."""
        self._check_open()
        if not meta:
            if isinstance(data, bytes | bytearray | memoryview):
                self.store(name, data)
            else:
                self.store_file(name, data, size=size)
            return
        assert self._boto is not None
        extra = {**self._boto.put_extra, **store_args(meta)}
        self._check_store_target(name)
        if isinstance(data, bytes | bytearray | memoryview):
            view = memoryview(data).cast("B")
            if len(view) < self.config.multipart_threshold:
                self._put_small(self._key(name), name, bytes(view), extra)
                return
            from .streams import ViewReader

            self._upload(self._key(name), name, ViewReader(view), len(view), extra)  # type: ignore[arg-type]
            return
        self._store_stream(name, data, size, extra)

    # ------------------------------------------------------------------ presigned URLs
    def presign(
        self,
        name: str,
        *,
        method: str = "GET",
        expires: int = 3600,
        content_type: str | None = None,
        content_disposition: str | None = None,
    ) -> str:
        """A SigV4 URL for GET (with the response headers asked for) or PUT; refused under SSE-C."""
        self.require(PRESIGN)
        self._check_open()
        ops = {"GET": "get_object", "PUT": "put_object"}
        if method.upper() not in ops:
            raise ConfigError(f"presign method must be GET or PUT, not {method!r}")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(name)}
        if method.upper() == "GET":
            if content_type:
                params["ResponseContentType"] = content_type
            if content_disposition:
                params["ResponseContentDisposition"] = content_disposition
        else:
            if content_type:
                params["ContentType"] = content_type
            if content_disposition:
                params["ContentDisposition"] = content_disposition
        return self._call(  # type: ignore[no-any-return]
            f"presign {name}",
            self._client.generate_presigned_url,
            ops[method.upper()],
            Params=params,
            ExpiresIn=int(expires),
        )

    # ------------------------------------------------------------------ tags
    def get_tags(self, name: str) -> dict[str, str]:
        self._check_open()
        resp = self._call(f"get tags {name}", self._client.get_object_tagging, Bucket=self.bucket, Key=self._key(name))
        return {t["Key"]: t["Value"] for t in resp.get("TagSet", [])}

    def put_tags(self, name: str, tags: Mapping[str, str]) -> None:
        self._check_open()
        tagset = [{"Key": str(k), "Value": str(v)} for k, v in tags.items()]
        self._call(
            f"put tags {name}",
            self._client.put_object_tagging,
            Bucket=self.bucket,
            Key=self._key(name),
            Tagging={"TagSet": tagset},
        )

    def delete_tags(self, name: str) -> None:
        self._check_open()
        self._call(f"delete tags {name}", self._client.delete_object_tagging, Bucket=self.bucket, Key=self._key(name))

    # ------------------------------------------------------------------ object lock
    def set_retention(self, name: str, mode: str, until: datetime) -> None:
        self.require(OBJECT_LOCK)
        self._check_open()
        if mode.upper() not in ("GOVERNANCE", "COMPLIANCE"):
            raise ConfigError(f"retention mode must be GOVERNANCE or COMPLIANCE, not {mode!r}")
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(name),
            "Retention": {"Mode": mode.upper(), "RetainUntilDate": until},
        }
        if self.config.bypass_governance:
            args["BypassGovernanceRetention"] = True
        self._call(f"set retention {name}", self._client.put_object_retention, **args)

    def get_retention(self, name: str) -> tuple[str, datetime] | None:
        self.require(OBJECT_LOCK)
        self._check_open()
        try:
            resp = self._client.get_object_retention(Bucket=self.bucket, Key=self._key(name))
        except Exception as e:
            if error_code(e) in (*NO_OBJECT_LOCK, "NoSuchObjectRetention"):
                return None
            raise translate(e, f"get retention {name}") from None
        ret = resp.get("Retention") or {}
        until = aware(ret.get("RetainUntilDate"))
        if not ret.get("Mode") or until is None or until <= datetime.now(UTC):
            return None  # none, or lapsed: it protects nothing any more
        return ret["Mode"], until

    def clear_retention(self, name: str) -> None:
        """Remove a GOVERNANCE retention (bypassing it; needs s3:BypassGovernanceRetention).

        COMPLIANCE cannot be removed (PermissionDenied). Services that cannot remove a retention
        (SeaweedFS 4.x answers InvalidRequest) get it shortened to lapse at once: the call returns
        when it has lapsed (within about two seconds).
        """
        self.require(OBJECT_LOCK)
        self._check_open()
        key = self._key(name)
        try:
            self._client.put_object_retention(Bucket=self.bucket, Key=key, Retention={}, BypassGovernanceRetention=True)
            return
        except Exception as e:
            if error_code(e) not in ("InvalidRequest", "MalformedXML"):
                raise translate(e, f"clear retention {name}") from None
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
        self._call(
            f"clear retention {name}",
            self._client.put_object_retention,
            Bucket=self.bucket,
            Key=key,
            Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
            BypassGovernanceRetention=True,
        )
        time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.0)  # the service counts in seconds

    def set_legal_hold(self, name: str, on: bool) -> None:
        self.require(OBJECT_LOCK)
        self._check_open()
        self._call(
            f"set legal hold {name}",
            self._client.put_object_legal_hold,
            Bucket=self.bucket,
            Key=self._key(name),
            LegalHold={"Status": "ON" if on else "OFF"},
        )

    def get_legal_hold(self, name: str) -> bool:
        self.require(OBJECT_LOCK)
        self._check_open()
        try:
            resp = self._client.get_object_legal_hold(Bucket=self.bucket, Key=self._key(name))
        except Exception as e:
            if error_code(e) in (*NO_OBJECT_LOCK, "NoSuchObjectLegalHold"):
                return False
            raise translate(e, f"get legal hold {name}") from None
        return bool(resp.get("LegalHold", {}).get("Status") == "ON")

    # ------------------------------------------------------------------ storage class
    def get_storage_class(self, name: str) -> str:
        """The item's storage class (``STANDARD`` when the service does not say)."""
        self._check_open()
        return str(self._head(name).get("StorageClass") or "STANDARD")

    def set_storage_class(self, name: str, storage_class: str) -> None:
        """Rewrite the item in place (server-side copy onto itself) with another storage class."""
        self._check_open()
        from .boto3_engine import copy_source_sse_args

        key = self._key(name)
        head = self._head(name)
        extra = {**self._sse(), **copy_source_sse_args(self.config)}
        for field in ("ContentType", "ContentDisposition"):
            if head.get(field):
                extra[field] = head[field]
        self._call(
            f"set storage class {name}",
            self._client.copy_object,
            CopySource={"Bucket": self.bucket, "Key": key},
            Bucket=self.bucket,
            Key=key,
            StorageClass=storage_class,
            MetadataDirective="REPLACE",
            Metadata=head.get("Metadata", {}),
            CopySourceIfMatch=head["ETag"],
            **extra,
        )

    # ------------------------------------------------------------------ bucket CORS (S3 only)
    def set_cors(self, rules: list[dict[str, Any]]) -> None:
        """Replace the bucket's CORS rules (PutBucketCors), boto3's shape: ``AllowedOrigins``,
        ``AllowedMethods``, ``AllowedHeaders``, ``ExposeHeaders``, ``MaxAgeSeconds``. An empty list
        removes them."""
        self._check_open()
        if not rules:
            self._call("delete cors", self._client.delete_bucket_cors, Bucket=self.bucket)
            return
        self._call(
            "set cors", self._client.put_bucket_cors, Bucket=self.bucket, CORSConfiguration={"CORSRules": list(rules)}
        )

    def get_cors(self) -> list[dict[str, Any]]:
        """The bucket's CORS rules (empty when it has none)."""
        self._check_open()
        try:
            return list(self._client.get_bucket_cors(Bucket=self.bucket).get("CORSRules", []))
        except Exception as e:
            if error_code(e) == "NoSuchCORSConfiguration":
                return []
            raise translate(e, "get cors") from None


def aware(value: Any) -> datetime | None:
    """An aware datetime (UTC when the service sent none)."""
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
