"""``s3:`` and ``b2:``: Amazon S3 and S3-compatible services (SeaweedFS, MinIO, Ceph RGW, B2, Hetzner).

URL (borgstore's syntax, key and secret URL-unquoted)::

    (s3|b2):[profile|(access_key:secret)@][scheme://host[:port]]/bucket[/prefix]

Without credentials in the URL, boto3's own chain applies (environment, profile, IAM role).

Two engines share the work:

* the data path (store, load, info, delete, streaming) runs on obstore (Rust ``object_store``) when
  it is installed: about a tenth of boto3's CPU per request. Credentials still come from boto3's
  session, so users keep boto3's credential chain (refreshable credentials are re-read).
* boto3 does everything else (listing, directory markers, copies, tags, object lock, presigned URLs,
  multipart primitives, batch deletes), and the whole data path with ``engine="boto3"``, with
  storage classes or a custom CA bundle; large values then stream through s3transfer.

Directories are zero-byte ``dir/`` markers written by ``mkdir`` (like borgstore), so an empty
directory can be told from a missing one; items imply their parent directories.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import hashlib
import heapq
import io
import logging
import os
import re
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO, NoReturn, TypeVar

from ..errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    ConfigError,
    CredentialsError,
    DirectoryNotEmpty,
    IntegrityError,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
)
from ..names import is_listable
from ..url import redact
from .base import CAPABILITIES, Backend, ItemInfo, Value, as_bytes_view, ordered_map, resolve_range

log = logging.getLogger("unistore.backends.s3")

T = TypeVar("T")

MiB = 1024 * 1024
GiB = 1024 * MiB
MAX_COPY_SIZE = 5 * GiB  # largest object a single CopyObject can copy
DELETE_BATCH = 1000  # DeleteObjects limit

_URL = re.compile(
    r"^(?P<scheme>s3|b2):"
    r"(?:(?P<cred>[^@]*?)@(?=(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*)?/))?"
    r"(?:(?P<proto>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<host>[^/]*))?"
    r"/(?P<bucket>[^/]+)(?:/(?P<prefix>.*))?$",
    re.IGNORECASE,
)

_SSE_HINTS = ("sse-c", "sse_c", "customer key", "customer-key", "customer provided", "customer-provided", "encrypt")
_NO_OBJECT_LOCK = ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError")  # error codes
_CONNECTION_HINTS = (
    "connect",
    "connection",
    "timed out",
    "timeout",
    "error sending request",
    "broken pipe",
    "reset by peer",
    "dns error",
    "network",
    "incomplete",
    "body error",
    "eof",
)


# botocore logs request headers (with SSE-C keys) and canonical requests at DEBUG: scrub our secrets
_LOG_SECRETS: set[str] = set()
_SCRUBBED_LOGGERS = (
    "botocore.endpoint",
    "botocore.auth",
    "botocore.httpsession",
    "botocore.awsrequest",
    "botocore.hooks",
    "botocore.parsers",
    "botocore.retryhandler",
    "urllib3.connectionpool",
    "s3transfer",
)


class _ScrubSecrets(logging.Filter):
    """Replaces registered secrets in log records by ``***`` (runs only for records actually emitted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _LOG_SECRETS:
            msg = record.getMessage()
            if any(secret in msg for secret in _LOG_SECRETS):
                for secret in _LOG_SECRETS:
                    msg = msg.replace(secret, "***")
                record.msg, record.args = msg, None
        return True


_SCRUBBER = _ScrubSecrets()


def _protect_logs(secrets: Iterable[str]) -> None:
    _LOG_SECRETS.update(s for s in secrets if len(s) >= 8)
    for name in _SCRUBBED_LOGGERS:
        logger = logging.getLogger(name)
        if _SCRUBBER not in logger.filters:
            logger.addFilter(_SCRUBBER)


class _Secret:
    """Holds a secret; its repr and str never show it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def _sse_key_bytes(key: str | bytes) -> bytes:
    """A 256-bit SSE-C key from raw bytes, a 32-character string, or base64 of 32 bytes."""
    if isinstance(key, bytes | bytearray):
        raw = bytes(key)
    elif len(key) == 32:
        raw = key.encode("utf-8")
    else:
        try:
            raw = base64.b64decode(key, validate=True)
        except ValueError:
            raise ConfigError("sse_customer_key must be 32 bytes, or base64 of 32 bytes") from None
    if len(raw) != 32:
        raise ConfigError("sse_customer_key must be 32 bytes (AES-256), or base64 of 32 bytes")
    return raw


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be a boolean, not {value!r}")


class S3Backend(Backend):
    """A bucket (and key prefix) on S3 or an S3-compatible service. Thread-safe."""

    schemes = ("s3", "b2")
    capabilities = CAPABILITIES

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        profile: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str = "auto",
        use_ssl: bool = True,
        verify: bool | str = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        max_pool_connections: int | None = None,
        workers: int = 8,
        multipart_threshold: int = 16 * MiB,
        multipart_chunksize: int = 8 * MiB,
        storage_class: str | None = None,
        sse_customer_key: str | bytes | None = None,
        allow_insecure_sse_c: bool = False,
        checksum: str = "when_supported",
        engine: str = "auto",
        bypass_governance: bool = False,
        unsigned_payload: bool | None = None,
        b2: bool = False,
    ) -> None:
        if not bucket:
            raise ConfigError("a bucket name is required")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._root = self.prefix + "/" if self.prefix else ""
        self.profile = profile
        if (access_key is None) != (secret_key is None):
            raise ConfigError("give both access_key and secret_key, or neither")
        self.access_key = access_key
        self._secret = _Secret(secret_key) if secret_key is not None else None
        self._token = _Secret(session_token) if session_token else None
        if endpoint_url is not None:
            if not re.match(r"^https?://[^/]+/?$", endpoint_url):
                raise ConfigError(f"endpoint_url must be http(s)://host[:port], not {endpoint_url!r}")
            endpoint_url = endpoint_url.rstrip("/")
            use_ssl = endpoint_url.startswith("https://")
        self.endpoint_url = endpoint_url
        self.region = region
        if addressing_style not in ("auto", "path", "virtual"):
            raise ConfigError(f"addressing_style must be auto, path or virtual, not {addressing_style!r}")
        self.addressing_style = addressing_style
        self.use_ssl = _as_bool(use_ssl, "use_ssl")
        self.verify = (
            verify
            if isinstance(verify, str) and verify.lower() not in ("true", "false")
            else _as_bool(verify, "verify")
        )
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.max_attempts = int(max_attempts)
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be >= 1")
        self.workers = max(1, int(workers))
        self.bulk_workers = self.workers
        self.max_pool_connections = int(max_pool_connections or self.workers + 4)
        self.multipart_threshold = int(multipart_threshold)
        self.multipart_chunksize = int(multipart_chunksize)
        if self.multipart_chunksize < 5 * MiB:
            raise ConfigError("multipart_chunksize must be at least 5 MiB (S3's minimum part size)")
        self.storage_class = storage_class
        self.b2 = b2
        if b2:
            checksum = "when_required"
        if checksum not in ("when_supported", "when_required"):
            raise ConfigError(f"checksum must be when_supported or when_required, not {checksum!r}")
        self.checksum = checksum
        self.bypass_governance = _as_bool(bypass_governance, "bypass_governance")
        # like the AWS SDKs: over TLS the payload is protected already and need not be hashed into the signature
        self.unsigned_payload = (
            self.use_ssl if unsigned_payload is None else _as_bool(unsigned_payload, "unsigned_payload")
        )
        self._sse: dict[str, Any] = {}
        self._sse_b64: _Secret | None = None
        if sse_customer_key is not None:
            raw = _sse_key_bytes(sse_customer_key)
            if not self.use_ssl and not _as_bool(allow_insecure_sse_c, "allow_insecure_sse_c"):
                raise ConfigError(
                    "refusing to send an SSE-C key over plain http; use https or allow_insecure_sse_c=True"
                )
            self._sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": _Secret(raw)}
            self._sse_b64 = _Secret(base64.b64encode(raw).decode("ascii"))
        secrets = [s.value for s in (self._secret, self._token, self._sse_b64) if s is not None]
        if self._sse:
            raw_key = self._sse["SSECustomerKey"].value
            secrets += [raw_key.decode("latin-1"), repr(raw_key)[2:-1]]
        if secrets:
            _protect_logs(secrets)
        if engine not in ("auto", "obstore", "boto3"):
            raise ConfigError(f"engine must be auto, obstore or boto3, not {engine!r}")
        self.engine = engine
        self.opened = False
        self._lock = threading.Lock()
        self._client: Any = None
        self._obs: Any = None
        self._versioned = False
        self._pool: ThreadPoolExecutor | None = None
        self._boto_session: Any = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Backend:
        """``(s3|b2):[profile|(access_key:secret)@][scheme://host[:port]]/bucket[/prefix]`` plus options."""
        m = _URL.match(url)
        if not m:
            raise BackendURLInvalid(
                "invalid s3 URL, expected (s3|b2):[profile|(key:secret)@][scheme://host[:port]]/bucket[/prefix]: "
                + redact(url)
            )
        kwargs: dict[str, Any] = {}
        cred = m.group("cred")
        if cred:
            if ":" in cred:
                key, _, secret = cred.partition(":")
                kwargs["access_key"] = urllib.parse.unquote(key)
                kwargs["secret_key"] = urllib.parse.unquote(secret)
            else:
                kwargs["profile"] = urllib.parse.unquote(cred)
        if m.group("proto"):
            proto = m.group("proto").lower()
            if proto not in ("http", "https"):
                raise BackendURLInvalid(f"endpoint scheme must be http or https: {redact(url)}")
            kwargs["endpoint_url"] = f"{proto}://{m.group('host')}"
        if m.group("scheme").lower() == "b2":
            kwargs["b2"] = True
        kwargs.update(options)
        return cls(m.group("bucket"), m.group("prefix") or "", **kwargs)

    def __repr__(self) -> str:
        where = self.endpoint_url or "aws"
        return f"<S3Backend {where}/{self.bucket}/{self.prefix}>"

    # ------------------------------------------------------------------ clients
    def _session(self) -> Any:
        import boto3

        if self.access_key is not None and self._secret is not None:
            return boto3.Session(
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self._secret.value,
                aws_session_token=self._token.value if self._token else None,
                region_name=self.region,
            )
        try:
            return boto3.Session(profile_name=self.profile, region_name=self.region)
        except Exception as e:  # botocore.exceptions.ProfileNotFound and friends
            raise CredentialsError(f"cannot use AWS profile {self.profile!r}: {type(e).__name__}") from None

    def _make_clients(self) -> None:
        from botocore.config import Config

        session = self._session()
        region = session.region_name or self.region or "us-east-1"
        self.region = region
        cfg: dict[str, Any] = dict(
            region_name=region,
            s3={"addressing_style": self.addressing_style, "payload_signing_enabled": not self.unsigned_payload},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            max_pool_connections=self.max_pool_connections,
            request_checksum_calculation=self.checksum,
            response_checksum_validation=self.checksum,
            tcp_keepalive=True,
            signature_version="s3v4",
        )
        config = Config(**cfg)
        self._client = session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            config=config,
        )
        if session.get_credentials() is None:
            raise CredentialsError(
                "no S3 credentials: give key:secret in the URL, a profile, or configure boto3's credential chain"
            )
        self._boto_session = session
        self._obs = self._make_obstore(session) if self._use_obstore() else None

    def _use_obstore(self) -> bool:
        if self.engine == "boto3":
            return False
        blockers = []
        if self.storage_class:
            blockers.append("storage_class")
        if isinstance(self.verify, str):
            blockers.append("a CA bundle in verify")
        if self.addressing_style == "virtual" and self.endpoint_url:
            blockers.append("virtual addressing with a custom endpoint")
        try:
            import obstore  # noqa: F401
        except ImportError:
            blockers.append("obstore not installed")
        if blockers:
            if self.engine == "obstore":
                raise ConfigError(f"engine='obstore' cannot be used with {', '.join(blockers)}")
            return False
        return True

    def _make_obstore(self, session: Any, *, checksum: bool = False) -> Any:
        from obstore.store import S3Store

        config: dict[str, Any] = {"region": self.region, "unsigned_payload": self.unsigned_payload}
        if checksum:  # object-lock buckets refuse writes without a content checksum
            config["checksum_algorithm"] = "sha256"
        if self.endpoint_url:
            config["endpoint"] = self.endpoint_url
            config["virtual_hosted_style_request"] = False
        else:
            config["virtual_hosted_style_request"] = self.addressing_style != "path"
        if self._sse_b64 is not None:
            config["server_side_encryption"] = "sse-c"
            config["sse_customer_key_base64"] = self._sse_b64.value
        client_options: dict[str, Any] = {
            "connect_timeout": timedelta(seconds=self.connect_timeout),
            "read_timeout": timedelta(seconds=self.read_timeout),
            "pool_max_idle_per_host": str(self.max_pool_connections),
            "pool_idle_timeout": timedelta(seconds=60),
        }
        if not self.use_ssl:
            client_options["allow_http"] = True
        if self.verify is False:
            client_options["allow_invalid_certificates"] = True
        retry = {
            "max_retries": self.max_attempts - 1,
            "retry_timeout": timedelta(seconds=max(self.connect_timeout, self.read_timeout) * self.max_attempts),
            "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=10), "base": 4},
        }
        kwargs: dict[str, Any] = {"config": config, "client_options": client_options, "retry_config": retry}
        if self.access_key is not None and self._secret is not None:
            config["access_key_id"] = self.access_key
            config["secret_access_key"] = self._secret.value
            if self._token:
                config["token"] = self._token.value
        else:
            kwargs["credential_provider"] = _BotoCredentials(session)
        return S3Store(self.bucket, **kwargs)

    @property
    def client(self) -> Any:
        """The boto3 S3 client (for operations unistore does not wrap)."""
        self._check_open()
        return self._client

    def _bulk_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="unistore-s3")
            return self._pool

    # ------------------------------------------------------------------ errors
    def _secrets(self) -> list[str]:
        out = [s.value for s in (self._secret, self._token, self._sse_b64) if s is not None]
        return [s for s in out if s]

    def _scrub(self, text: str) -> str:
        for s in self._secrets():
            text = text.replace(s, "***")
        return text

    def _raise(self, e: BaseException, what: str) -> NoReturn:
        """Turn a boto3/botocore/obstore exception into a typed unistore error."""
        if isinstance(e, BackendError):
            raise e
        name = type(e).__name__
        first_line = str(e).strip().split("\n", 1)[0]
        msg = self._scrub(f"{what}: {first_line[:400]}")
        code = ""
        status = 0
        resp = getattr(e, "response", None)
        if isinstance(resp, dict):
            code = str(resp.get("Error", {}).get("Code", ""))
            status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if name in (
            "EndpointConnectionError",
            "ConnectTimeoutError",
            "ReadTimeoutError",
            "ConnectionClosedError",
            "ProxyConnectionError",
            "SSLError",
            "ResponseStreamingError",
            "IncompleteReadError",
        ) or isinstance(e, ConnectionError | TimeoutError):
            raise BackendConnectionError(msg) from None
        if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
            raise CredentialsError(msg) from None
        if _is_not_found(e) or code in ("NoSuchKey", "404", "NotFound", "NoSuchUpload"):
            raise ObjectNotFound(msg) from None
        if code == "NoSuchBucket":
            raise BackendDoesNotExist(msg) from None
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken") or (
            name == "UnauthenticatedError"
        ):
            raise CredentialsError(msg) from None
        full = str(e)
        text = full.split("\nDebug source:", 1)[0].lower()  # obstore appends a debug dump (with "retry_timeout")
        m = re.search(r"status code: (\d{3})", full)
        if m and not status:
            status = int(m.group(1))
        if code.startswith("InvalidEncryption") or any(h in text for h in _SSE_HINTS):
            raise IntegrityError(msg) from None
        if (
            name == "PermissionDeniedError"
            or isinstance(e, PermissionError)
            or code in ("AccessDenied", "403", "Forbidden")
            or status == 403
        ):
            raise PermissionDenied(msg) from None
        if (
            name in ("GenericError", "BaseError")
            and not 400 <= status < 500
            and any(h in text for h in _CONNECTION_HINTS)
        ):
            raise BackendConnectionError(msg) from None
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            raise BackendConnectionError(msg) from None
        raise BackendError(msg) from None

    def _call(self, what: str, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except Exception as e:
            self._raise(e, what)

    def _call_or_none(
        self, what: str, absent: Callable[[BaseException], bool], func: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T | None:
        """Like :meth:`_call`, but None where ``absent(error)`` says the service answered "there is none"."""
        try:
            return func(*args, **kwargs)
        except Exception as e:
            if absent(e):
                return None
            self._raise(e, what)

    # ------------------------------------------------------------------ keys
    def _key(self, name: str) -> str:
        return self._root + self._name(name)

    def _dir_prefix(self, name: str) -> str:
        name = self._name(name, allow_root=True)
        return self._root + name + "/" if name else self._root

    def _sse_args(self) -> dict[str, Any]:
        if not self._sse:
            return {}
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": self._sse["SSECustomerKey"].value}

    def _with_copy_source_sse(self, args: dict[str, Any]) -> dict[str, Any]:
        """``args`` of a server-side copy, plus the SSE-C key to read its source with."""
        if self._sse:
            args["CopySourceSSECustomerAlgorithm"] = "AES256"
            args["CopySourceSSECustomerKey"] = self._sse["SSECustomerKey"].value
        return args

    def _put_args(self) -> dict[str, Any]:
        args = self._sse_args()
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args

    # ------------------------------------------------------------------ lifecycle
    def _bucket_exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return True
        except Exception as e:
            status = _http_status(e)
            if status == 404:
                return False
            if status == 403:  # HEAD has no body to tell bad credentials from a policy: ask with a GET
                self._any_key(self._root)
                return True
            self._raise(e, f"head bucket {self.bucket}")

    def _any_key(self, prefix: str) -> bool:
        resp = self._call("list", self._client.list_objects_v2, Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return _page_count(resp) > 0

    def _exists(self) -> bool:
        if not self._bucket_exists():
            return False
        if not self.prefix:
            return True
        return self._any_key(self._root)

    @contextlib.contextmanager
    def _clients_while_closed(self) -> Iterator[None]:
        """Clients for one call on the closed backend (create, destroy), closed again after it."""
        if self.opened:
            raise BackendMustNotBeOpen()
        self._make_clients()
        try:
            yield
        finally:
            self._close_clients()

    def create(self) -> None:
        with self._clients_while_closed():
            if not self._bucket_exists():
                args: dict[str, Any] = {"Bucket": self.bucket}
                if self.region and self.region != "us-east-1" and not self.endpoint_url:
                    args["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
                self._call(f"create bucket {self.bucket}", self._client.create_bucket, **args)
            elif self._any_key(self._root):
                raise BackendAlreadyExists(f"{self!r} exists and is not empty")
            if self.prefix:
                self._call("create", self._client.put_object, Bucket=self.bucket, Key=self._root, Body=b"")

    def destroy(self) -> None:
        with self._clients_while_closed():
            if not self._exists():
                raise BackendDoesNotExist(f"{self!r} does not exist")
            self._delete_prefix(self._root)
            if not self.prefix:
                self._call(f"delete bucket {self.bucket}", self._client.delete_bucket, Bucket=self.bucket)

    def open(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._make_clients()
        try:
            if not self._exists():
                raise BackendDoesNotExist(f"{self!r} does not exist (create it first)")
            versioning = self._call("versioning", self._client.get_bucket_versioning, Bucket=self.bucket)
            self._versioned = versioning.get("Status") in ("Enabled", "Suspended")
            if self._versioned and self._obs is not None and self._object_lock_enabled():
                self._obs = self._make_obstore(self._boto_session, checksum=True)
        except BaseException:
            self._close_clients()
            raise
        self.opened = True

    def _object_lock_enabled(self) -> bool:
        try:
            conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except Exception:  # no lock configuration (or not implemented by the service)
            return False
        return bool(conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    def close(self) -> None:
        self.opened = False
        self._close_clients()

    def _close_clients(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()
        self._client = None
        self._obs = None

    def _delete_prefix(self, prefix: str) -> int:
        """Delete every object (and every version) under ``prefix`` in DeleteObjects batches of 1,000."""
        deleted = 0
        batch: list[dict[str, str]] = []

        def flush() -> None:
            nonlocal deleted, batch
            if not batch:
                return
            args: dict[str, Any] = {"Bucket": self.bucket, "Delete": {"Objects": batch, "Quiet": True}}
            if self.bypass_governance:
                args["BypassGovernanceRetention"] = True
            resp = self._call("delete batch", self._client.delete_objects, **args)
            errors = resp.get("Errors", [])
            if errors:
                first = errors[0]
                raise PermissionDenied(
                    f"{len(errors)} of {len(batch)} deletes failed, e.g. {first.get('Key')}: {first.get('Code')}"
                )
            deleted += len(batch)
            batch = []

        try:
            paginator = self._client.get_paginator("list_object_versions")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                    batch.append({"Key": v["Key"], "VersionId": v["VersionId"]})
                    if len(batch) >= DELETE_BATCH:
                        flush()
            flush()
            return deleted
        except BackendError:
            raise
        except Exception as e:
            if _error_code(e) not in ("NotImplemented", "501"):
                self._raise(e, "list versions")
        paginator = self._client.get_paginator("list_objects_v2")
        for page in self._call("list", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix))):
            for obj in page.get("Contents", []):
                batch.append({"Key": obj["Key"]})
                if len(batch) >= DELETE_BATCH:
                    flush()
        flush()
        return deleted

    # ------------------------------------------------------------------ directories
    def mkdir(self, name: str) -> None:
        self._check_open()
        prefix = self._dir_prefix(name)
        if not prefix:
            return
        t0 = time.perf_counter()
        self._call(f"mkdir {name}", self._client.put_object, Bucket=self.bucket, Key=prefix, Body=b"")
        log.debug("mkdir %s in %.3fs", name, time.perf_counter() - t0)

    def rmdir(self, name: str) -> None:
        self._check_open()
        prefix = self._dir_prefix(name)
        resp = self._call(f"rmdir {name}", self._client.list_objects_v2, Bucket=self.bucket, Prefix=prefix, MaxKeys=2)
        keys = [o["Key"] for o in resp.get("Contents", [])]
        if not keys:
            raise ObjectNotFound(name)
        if keys != [prefix]:
            raise DirectoryNotEmpty(f"directory not empty: {name!r}")
        # boto3, not obstore: obstore drops the trailing slash of a marker key
        self._call(f"rmdir {name}", self._client.delete_object, Bucket=self.bucket, Key=prefix)

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        prefix = self._dir_prefix(name)
        t0 = time.perf_counter()
        pages = self._pages(prefix, delimiter="/")
        first = next(pages, None)
        if first is None or (name and not _page_count(first)):
            if name:
                raise ObjectNotFound(name)
        return self._list_entries(name, prefix, first, pages, t0)

    def _list_entries(
        self, name: str, prefix: str, first: dict[str, Any] | None, pages: Iterator[dict[str, Any]], t0: float
    ) -> Iterator[ItemInfo]:
        count = 0
        for page in _chain_first(first, pages):
            files = (
                ItemInfo(o["Key"][len(prefix) :], True, o["Size"], False, 0, o["LastModified"].timestamp())
                for o in page.get("Contents", [])
                if o["Key"] != prefix
            )
            dirs = (
                ItemInfo(p["Prefix"][len(prefix) :].rstrip("/"), True, 0, True) for p in page.get("CommonPrefixes", [])
            )
            for item in heapq.merge(files, dirs, key=lambda i: i.name):
                if is_listable(item.name):
                    count += 1
                    yield item
        log.debug("list %s: %d entries in %.3fs", name, count, time.perf_counter() - t0)

    def _pages(self, prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            args["Delimiter"] = delimiter
        while True:
            resp = self._call("list", self._client.list_objects_v2, **args)
            yield resp
            if not resp.get("IsTruncated"):
                return
            args["ContinuationToken"] = resp["NextContinuationToken"]

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        """Every item below ``name`` from one flat paginated prefix listing (no request per directory)."""
        self._check_open()
        prefix = self._dir_prefix(name)
        pages = self._pages(prefix)
        first = next(pages)
        if name and not _page_count(first):
            raise ObjectNotFound(name)
        return self._recursive_entries(name, prefix, _chain_first(first, pages))

    def _recursive_entries(self, name: str, prefix: str, pages: Iterable[dict[str, Any]]) -> Iterator[ItemInfo]:
        t0 = time.perf_counter()
        count = 0
        for page in pages:
            for o in page.get("Contents", []):
                rel = o["Key"][len(prefix) :]
                if not rel or rel.endswith("/"):
                    continue  # directory markers
                if all(is_listable(part) for part in rel.split("/")):
                    count += 1
                    yield ItemInfo(rel, True, o["Size"], False, 0, o["LastModified"].timestamp())
        log.debug("list_recursive %s: %d items in %.3fs", name, count, time.perf_counter() - t0)

    # ------------------------------------------------------------------ items
    def info(self, name: str) -> ItemInfo:
        self._check_open()
        name = self._name(name, allow_root=True)
        base = name.rsplit("/", 1)[-1]
        if not name:
            return ItemInfo("", True, 0, True)
        t0 = time.perf_counter()
        meta = self._head(self._key(name), name)
        if meta is not None:
            log.debug("info %s in %.3fs", name, time.perf_counter() - t0)
            return ItemInfo(base, True, meta[0], False, 0, meta[1])
        is_dir = self._any_key(self._dir_prefix(name))
        log.debug("info %s in %.3fs", name, time.perf_counter() - t0)
        return ItemInfo(base, True, 0, True) if is_dir else ItemInfo(base, False)

    def _head(self, key: str, name: str) -> tuple[int, float, str | None] | None:
        """``(size, mtime, version)`` of an object, None if missing."""
        if self._obs is not None:
            import obstore

            meta = self._call_or_none(f"info {name}", _is_not_found, obstore.head, self._obs, key)
            if meta is None:
                return None
            return meta["size"], meta["last_modified"].timestamp(), meta.get("version")
        resp = self._call_or_none(
            f"info {name}",
            lambda e: _http_status(e) == 404,
            self._client.head_object,
            Bucket=self.bucket,
            Key=key,
            **self._sse_args(),
        )
        if resp is None:
            return None
        return resp["ContentLength"], resp["LastModified"].timestamp(), resp.get("VersionId")

    def _head_existing(self, key: str, name: str) -> tuple[int, float, str | None]:
        """``(size, mtime, version)`` of an object; ObjectNotFound if missing."""
        meta = self._head(key, name)
        if meta is None:
            raise ObjectNotFound(name)
        return meta

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        self._check_open()
        key = self._key(name)
        t0 = time.perf_counter()
        if size is not None and size < 0:
            raise ReadRangeError(f"size must be >= 0 or None, not {size}")
        if size == 0:
            info = self.info(name)
            if not info.exists or info.directory:
                raise ObjectNotFound(name)
            resolve_range(info.size, offset, 0)
            return b""
        if offset < 0:
            rng: tuple[int, int] | dict[str, int] | None = {"suffix": -offset}
        elif offset > 0 or size is not None:
            rng = (offset, offset + size) if size is not None else {"offset": offset}
        else:
            rng = None
        try:
            data = self._get(key, rng)
        except _RangeNotSatisfiable:
            info = self.info(name)
            if not info.exists or info.directory:
                raise ObjectNotFound(name) from None
            resolve_range(info.size, offset, size)  # raises for a negative offset before the start
            data = b""
        if offset < 0:
            if len(data) < -offset:
                raise ReadRangeError(f"offset {offset} lies before the start of {name} ({len(data)} bytes)")
            if size is not None:
                data = data[:size]
        log.debug("load %s: %d bytes in %.3fs", name, len(data), time.perf_counter() - t0)
        return data

    def _get(self, key: str, rng: tuple[int, int] | dict[str, int] | None) -> bytes:
        if self._obs is not None:
            import obstore

            try:
                if rng is None:
                    return bytes(obstore.get(self._obs, key).bytes())
                return bytes(obstore.get(self._obs, key, options={"range": rng}).bytes())  # type: ignore[arg-type,typeddict-item]
            except Exception as e:
                text = str(e)
                if rng is not None and not _is_not_found(e) and ("416" in text or "range" in text.lower()):
                    raise _RangeNotSatisfiable() from None
                self._raise(e, f"load {key}")
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key, **self._sse_args()}
        if isinstance(rng, tuple):
            args["Range"] = f"bytes={rng[0]}-{rng[1] - 1}"
        elif rng is not None:
            args["Range"] = f"bytes=-{rng['suffix']}" if "suffix" in rng else f"bytes={rng['offset']}-"
        try:
            resp = self._client.get_object(**args)
            return resp["Body"].read()  # type: ignore[no-any-return]
        except Exception as e:
            if _error_code(e) == "InvalidRange":
                raise _RangeNotSatisfiable() from None
            self._raise(e, f"load {key}")

    def store(self, name: str, value: Value) -> None:
        self._check_open()
        key = self._key(name)
        view = as_bytes_view(value)
        t0 = time.perf_counter()
        if len(view) >= self.multipart_threshold:
            self._upload_stream(key, name, _ViewReader(view), len(view))  # type: ignore[arg-type]
        elif self._obs is not None:
            import obstore

            self._call(f"store {name}", obstore.put, self._obs, key, view, use_multipart=False)
        else:
            self._call(
                f"store {name}",
                self._client.put_object,
                Bucket=self.bucket,
                Key=key,
                Body=bytes(view),
                **self._put_args(),
            )
        log.debug("store %s: %d bytes in %.3fs", name, len(view), time.perf_counter() - t0)

    def delete(self, name: str) -> None:
        self._check_open()
        key = self._key(name)
        t0 = time.perf_counter()
        meta = self._head_existing(key, name)
        self._delete_key(key, name, meta[2])
        log.debug("delete %s in %.3fs", name, time.perf_counter() - t0)

    def _delete_key(self, key: str, name: str, version: str | None = None) -> None:
        if self._versioned or self._obs is None:
            args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
            if self._versioned:
                if version is None:
                    version = self._call(f"delete {name}", self._client.head_object, Bucket=self.bucket, Key=key).get(
                        "VersionId"
                    )
                if version:
                    args["VersionId"] = version
                if self.bypass_governance:
                    args["BypassGovernanceRetention"] = True
            self._call(f"delete {name}", self._client.delete_object, **args)
        else:
            import obstore

            self._call(f"delete {name}", obstore.delete, self._obs, key)

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        src, dst = self._key(curr_name), self._key(new_name)
        t0 = time.perf_counter()
        meta = self._head_existing(src, curr_name)
        self._copy(src, dst, curr_name, meta[0])
        self._delete_key(src, curr_name, meta[2])
        log.debug("move %s -> %s: %d bytes in %.3fs", curr_name, new_name, meta[0], time.perf_counter() - t0)

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (multipart copy above 5 GiB); no data passes through this process."""
        self._check_open()
        skey, dkey = self._key(src), self._key(dst)
        meta = self._head_existing(skey, src)
        self._copy(skey, dkey, src, meta[0])

    def _copy(self, src: str, dst: str, name: str, size: int) -> None:
        extra = self._with_copy_source_sse(self._put_args())
        source = {"Bucket": self.bucket, "Key": src}
        if size <= MAX_COPY_SIZE:
            self._call(
                f"copy {name}", self._client.copy_object, CopySource=source, Bucket=self.bucket, Key=dst, **extra
            )
            return
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=MAX_COPY_SIZE,
            multipart_chunksize=max(self.multipart_chunksize, 256 * MiB),
            max_concurrency=self.workers,
        )
        self._call(f"copy {name}", self._client.copy, source, self.bucket, dst, ExtraArgs=extra, Config=config)

    # ------------------------------------------------------------------ streaming
    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        """Stream a file to ``name``: one PUT when small, else parallel multipart (aborted on failure)."""
        self._check_open()
        key = self._key(name)
        if size is None:
            try:
                pos = file.tell()
                size = os.fstat(file.fileno()).st_size - pos
            except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
                size = None
        t0 = time.perf_counter()
        if size is not None and size < self.multipart_threshold:
            self.store(name, file.read(size))
            return
        self._upload_stream(key, name, file, size)
        log.debug("store_file %s: %s bytes in %.3fs", name, size, time.perf_counter() - t0)

    def _upload_stream(self, key: str, name: str, file: IO[bytes], size: int | None) -> None:
        started = datetime.now(UTC) - timedelta(seconds=5)
        if self._obs is not None:
            import obstore

            path = _whole_file_path(file, size)
            source: Any = path or (_LimitedReader(file, size) if size is not None else file)
            try:
                obstore.put(
                    self._obs,
                    key,
                    source,
                    use_multipart=True,
                    chunk_size=self.multipart_chunksize,
                    max_concurrency=min(self.workers, 12),
                )
            except Exception as e:
                self._abort_pending(key, started)
                self._raise(e, f"store {name}")
            if path is not None:
                file.seek(0, os.SEEK_END)  # consumed, as if read
            return
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.workers,
        )
        src = _LimitedReader(file, size) if size is not None else file
        try:
            self._client.upload_fileobj(src, self.bucket, key, ExtraArgs=self._put_args(), Config=config)
        except Exception as e:
            self._abort_pending(key, started)
            self._raise(e, f"store {name}")

    def _abort_pending(self, key: str, since: datetime) -> None:
        """Best effort: abort multipart uploads of ``key`` this call may have left behind."""
        try:
            resp = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
            for up in resp.get("Uploads", []):
                initiated = up.get("Initiated")
                if up["Key"] == key and (initiated is None or initiated >= since):
                    self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up["UploadId"])
        except Exception as e:  # the server may be gone; the upload stays invisible either way
            log.debug("could not abort pending uploads of %s: %s", key, type(e).__name__)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        """Stream ``name`` (or a range) into ``file``; large objects of a regular file in parallel ranges."""
        self._check_open()
        key = self._key(name)
        t0 = time.perf_counter()
        meta = self._head_existing(key, name)
        start, length = resolve_range(meta[0], offset, size)
        fd = _regular_fd(file)
        if fd is not None and length >= 2 * self.multipart_chunksize and self.workers > 1:
            written = self._parallel_download(key, name, fd, file.tell(), start, length)
            file.seek(written, os.SEEK_CUR)
        else:
            written = 0
            for chunk in self._stream(key, name, start, length):
                file.write(chunk)
                written += len(chunk)
        if written != length:
            raise ReadRangeError(f"{name}: got {written} of {length} bytes")
        log.debug("load_file %s: %d bytes in %.3fs", name, written, time.perf_counter() - t0)
        return written

    def _stream(self, key: str, name: str, start: int, length: int) -> Iterator[bytes]:
        if length == 0:
            return
        if self._obs is not None:
            import obstore

            try:
                result = obstore.get(self._obs, key, options={"range": (start, start + length)})
                for chunk in result.stream(min_chunk_size=1 * MiB):
                    yield chunk
            except Exception as e:
                self._raise(e, f"load {name}")
            return
        args = {"Bucket": self.bucket, "Key": key, "Range": f"bytes={start}-{start + length - 1}", **self._sse_args()}
        resp = self._call(f"load {name}", self._client.get_object, **args)
        body = resp["Body"]
        try:
            while True:
                chunk = self._call(f"load {name}", body.read, 1 * MiB)
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    def _parallel_download(self, key: str, name: str, fd: int, pos: int, start: int, length: int) -> int:
        part = self.multipart_chunksize

        def fetch(off: int, n: int) -> Any:
            if self._obs is None:
                return self._get(key, (off, off + n))
            import obstore

            # a zero-copy buffer
            return self._call(f"load {name}", obstore.get_range, self._obs, key, start=off, length=n)

        def one(off: int) -> int:
            n = min(part, length - off)
            view = memoryview(fetch(start + off, n))
            if len(view) != n:
                raise ReadRangeError(f"{name}: short read at {start + off}")
            done = 0
            while done < n:
                done += os.pwrite(fd, view[done:], pos + off + done)
            return n

        # a private pool: load_file may itself run on the bulk pool
        with ThreadPoolExecutor(max_workers=min(self.workers, 8), thread_name_prefix="unistore-s3-get") as pool:
            return sum(pool.map(one, range(0, length, part)))

    def open_reader(self, name: str) -> BinaryIO:
        """A buffered, streaming reader of ``name`` (one GET, read as it is consumed)."""
        self._check_open()
        key = self._key(name)
        meta = self._head_existing(key, name)
        raw = _IterReader(self._stream(key, name, 0, meta[0]))
        return io.BufferedReader(raw, buffer_size=1 * MiB)  # type: ignore[return-value]

    # ------------------------------------------------------------------ bulk
    def _map(self, func: Any, items: Iterable[Any]) -> Iterator[Any]:
        if self.workers <= 1:
            return map(func, items)
        return ordered_map(self._bulk_pool(), func, items, self.workers * 4)

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        """HEAD all names concurrently, then delete the existing ones in DeleteObjects batches."""
        self._check_open()
        names = list(names)
        keys = [self._key(n) for n in names]
        t0 = time.perf_counter()
        metas = list(self._map(lambda kn: self._head(kn[0], kn[1]), zip(keys, names, strict=True)))
        missing = [n for n, m in zip(names, metas, strict=True) if m is None]
        if missing and not missing_ok:
            raise ObjectNotFound(missing[0])
        batch: list[dict[str, str]] = []
        for k, m in zip(keys, metas, strict=True):
            if m is not None:
                entry = {"Key": k}
                if self._versioned and m[2]:
                    entry["VersionId"] = m[2]
                batch.append(entry)
        for i in range(0, len(batch), DELETE_BATCH):
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Delete": {"Objects": batch[i : i + DELETE_BATCH], "Quiet": True},
            }
            if self.bypass_governance:
                args["BypassGovernanceRetention"] = True
            resp = self._call("delete_many", self._client.delete_objects, **args)
            if resp.get("Errors"):
                err = resp["Errors"][0]
                raise PermissionDenied(f"delete of {err.get('Key')} failed: {err.get('Code')}")
        log.debug("delete_many: %d items in %.3fs", len(batch), time.perf_counter() - t0)
        return len(batch)

    # ------------------------------------------------------------------ capabilities: presign
    def presign(self, name: str, *, method: str = "GET", expires: int = 3600) -> str:
        self._check_open()
        ops = {"GET": "get_object", "PUT": "put_object"}
        if method.upper() not in ops:
            raise ConfigError(f"presign method must be GET or PUT, not {method!r}")
        return self._call(  # type: ignore[no-any-return]
            f"presign {name}",
            self._client.generate_presigned_url,
            ops[method.upper()],
            Params={"Bucket": self.bucket, "Key": self._key(name)},
            ExpiresIn=int(expires),
        )

    # ------------------------------------------------------------------ capabilities: tags
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

    def merge_tags(self, name: str, tags: Mapping[str, str]) -> dict[str, str]:
        """Add or update ``tags`` keeping the item's other tags; return the merged set."""
        merged = self.get_tags(name)
        merged.update({str(k): str(v) for k, v in tags.items()})
        self.put_tags(name, merged)
        return merged

    def delete_tags(self, name: str) -> None:
        self._check_open()
        self._call(f"delete tags {name}", self._client.delete_object_tagging, Bucket=self.bucket, Key=self._key(name))

    def find_by_tag(self, key: str, value: str | None = None, prefix: str = "") -> Iterator[str]:
        """Names of items below ``prefix`` with tag ``key`` (equal to ``value`` if given).

        S3 has no server-side tag search, so the tags of all items are fetched concurrently on the
        bulk thread pool (one listing page per 1,000 items, tag requests in parallel).
        """
        self._check_open()

        def tags_of(item: ItemInfo) -> tuple[str, dict[str, str] | None]:
            full = f"{prefix.strip('/')}/{item.name}" if prefix.strip("/") else item.name
            try:
                return full, self.get_tags(full)
            except ObjectNotFound:
                return full, None

        for full, tags in self._map(tags_of, self.list_recursive(prefix.strip("/"))):
            if tags is not None and key in tags and (value is None or tags[key] == value):
                yield full

    # ------------------------------------------------------------------ capabilities: object lock
    def set_retention(self, name: str, mode: str, until: datetime) -> None:
        self._check_open()
        if mode.upper() not in ("GOVERNANCE", "COMPLIANCE"):
            raise ConfigError(f"retention mode must be GOVERNANCE or COMPLIANCE, not {mode!r}")
        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(name),
            "Retention": {"Mode": mode.upper(), "RetainUntilDate": until},
        }
        if self.bypass_governance:
            args["BypassGovernanceRetention"] = True
        self._call(f"set retention {name}", self._client.put_object_retention, **args)

    def get_retention(self, name: str) -> tuple[str, datetime] | None:
        self._check_open()
        resp = self._call_or_none(
            f"get retention {name}",
            lambda e: _error_code(e) in (*_NO_OBJECT_LOCK, "NoSuchObjectRetention"),
            self._client.get_object_retention,
            Bucket=self.bucket,
            Key=self._key(name),
        )
        if resp is None:
            return None
        ret = resp.get("Retention") or {}
        if not ret.get("Mode"):
            return None
        return ret["Mode"], ret["RetainUntilDate"]

    def set_legal_hold(self, name: str, on: bool) -> None:
        self._check_open()
        self._call(
            f"set legal hold {name}",
            self._client.put_object_legal_hold,
            Bucket=self.bucket,
            Key=self._key(name),
            LegalHold={"Status": "ON" if on else "OFF"},
        )

    def get_legal_hold(self, name: str) -> bool:
        self._check_open()
        resp = self._call_or_none(
            f"get legal hold {name}",
            lambda e: _error_code(e) in (*_NO_OBJECT_LOCK, "NoSuchObjectLegalHold"),
            self._client.get_object_legal_hold,
            Bucket=self.bucket,
            Key=self._key(name),
        )
        if resp is None:
            return False
        return bool(resp.get("LegalHold", {}).get("Status") == "ON")

    # ------------------------------------------------------------------ capabilities: storage class
    def get_storage_class(self, name: str) -> str:
        """The item's storage class (``STANDARD`` when the service does not say)."""
        self._check_open()
        resp = self._call(
            f"info {name}", self._client.head_object, Bucket=self.bucket, Key=self._key(name), **self._sse_args()
        )
        return str(resp.get("StorageClass") or "STANDARD")

    def set_storage_class(self, name: str, storage_class: str) -> None:
        """Rewrite the item in place (server-side copy onto itself) with another storage class."""
        self._check_open()
        key = self._key(name)
        head = self._call(f"info {name}", self._client.head_object, Bucket=self.bucket, Key=key, **self._sse_args())
        extra = self._with_copy_source_sse(self._sse_args())
        if head.get("ContentType"):
            extra["ContentType"] = head["ContentType"]
        self._call(
            f"set storage class {name}",
            self._client.copy_object,
            CopySource={"Bucket": self.bucket, "Key": key},
            Bucket=self.bucket,
            Key=key,
            StorageClass=storage_class,
            MetadataDirective="REPLACE",
            Metadata=head.get("Metadata", {}),
            **extra,
        )

    # ------------------------------------------------------------------ capabilities: multipart
    def create_multipart(self, name: str) -> str:
        self._check_open()
        resp = self._call(
            f"create multipart {name}",
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(name),
            **self._put_args(),
        )
        return str(resp["UploadId"])

    def presign_part(self, name: str, upload_id: str, part_number: int, *, expires: int = 3600) -> str:
        self._check_open()
        if not 1 <= part_number <= 10000:
            raise ConfigError(f"part_number must be 1..10000, not {part_number}")
        return self._call(  # type: ignore[no-any-return]
            f"presign part {name}",
            self._client.generate_presigned_url,
            "upload_part",
            Params={"Bucket": self.bucket, "Key": self._key(name), "UploadId": upload_id, "PartNumber": part_number},
            ExpiresIn=int(expires),
        )

    def list_parts(self, name: str, upload_id: str) -> builtins.list[dict[str, Any]]:
        self._check_open()
        parts: builtins.list[dict[str, Any]] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(name), "UploadId": upload_id}
        while True:
            resp = self._call(f"list parts {name}", self._client.list_parts, **args)
            for p in resp.get("Parts", []):
                parts.append({"part_number": p["PartNumber"], "etag": p["ETag"], "size": p["Size"]})
            if not resp.get("IsTruncated"):
                return parts
            args["PartNumberMarker"] = resp["NextPartNumberMarker"]

    def complete_multipart(self, name: str, upload_id: str, parts: builtins.list[dict[str, Any]] | None = None) -> None:
        self._check_open()
        if parts is None:
            parts = self.list_parts(name, upload_id)
        if not parts:
            raise ConfigError(f"no parts to complete for {name}")
        mp = {
            "Parts": [
                {"PartNumber": int(p["part_number"]), "ETag": p["etag"]}
                for p in sorted(parts, key=lambda p: int(p["part_number"]))
            ]
        }
        self._call(
            f"complete multipart {name}",
            self._client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(name),
            UploadId=upload_id,
            MultipartUpload=mp,
            **self._sse_args(),
        )

    def abort_multipart(self, name: str, upload_id: str) -> None:
        self._check_open()
        self._call(
            f"abort multipart {name}",
            self._client.abort_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(name),
            UploadId=upload_id,
        )

    def list_multipart_uploads(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        self._check_open()
        full = self._root + prefix
        out: builtins.list[dict[str, Any]] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
        while True:
            resp = self._call("list multipart uploads", self._client.list_multipart_uploads, **args)
            for up in resp.get("Uploads", []):
                out.append(
                    {
                        "name": up["Key"][len(self._root) :],
                        "upload_id": up["UploadId"],
                        "initiated": up.get("Initiated"),
                    }
                )
            if not resp.get("IsTruncated"):
                return out
            args["KeyMarker"] = resp.get("NextKeyMarker", "")
            args["UploadIdMarker"] = resp.get("NextUploadIdMarker", "")

    # ------------------------------------------------------------------ hashing
    def hash(self, name: str, algorithm: str = "sha256") -> str:
        """Hex digest of the content, streamed (no value is held in memory)."""
        try:
            h = hashlib.new(algorithm)
        except ValueError:
            raise ValueError(f"unknown hash algorithm: {algorithm!r}") from None
        self._check_open()
        key = self._key(name)
        meta = self._head_existing(key, name)
        for chunk in self._stream(key, name, 0, meta[0]):
            h.update(chunk)
        return h.hexdigest()


# ---------------------------------------------------------------------- helpers
class _RangeNotSatisfiable(Exception):
    pass


class _BotoCredentials:
    """obstore credential provider backed by a boto3 session (boto3's chain, refreshed)."""

    def __init__(self, session: Any) -> None:
        self._creds = session.get_credentials()

    def __call__(self) -> dict[str, Any]:
        if self._creds is None:
            raise CredentialsError("no S3 credentials found by boto3's credential chain")
        frozen = self._creds.get_frozen_credentials()
        return {
            "access_key_id": frozen.access_key,
            "secret_access_key": frozen.secret_key,
            "token": frozen.token,
            "expires_at": datetime.now(UTC) + timedelta(minutes=5),
        }

    def __repr__(self) -> str:
        return "<boto3 credentials>"


class _LimitedReader(io.RawIOBase):
    """Reads at most ``limit`` bytes from ``file``."""

    def __init__(self, file: IO[bytes], limit: int) -> None:
        self.file = file
        self.left = limit

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0 or size > self.left:
            size = self.left
        data = self.file.read(size) if size else b""
        self.left -= len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _ViewReader(io.RawIOBase):
    """A readable stream over a memoryview, without copying the whole value."""

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), len(self.view) - self.pos)
        buffer[:n] = self.view[self.pos : self.pos + n]
        self.pos += n
        return n


class _IterReader(io.RawIOBase):
    """A raw readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._buf:
            try:
                self._buf = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._buf))
        buffer[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        super().close()


def _page_count(page: dict[str, Any]) -> int:
    """Keys plus common prefixes in a ListObjectsV2 page (not every service sends KeyCount)."""
    return len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))


def _is_not_found(e: BaseException) -> bool:
    return isinstance(e, FileNotFoundError) or type(e).__name__ == "NotFoundError"


def _error_code(e: BaseException) -> str:
    """The S3 error code of a botocore ClientError ("" for any other exception)."""
    return getattr(e, "response", {}).get("Error", {}).get("Code", "")  # type: ignore[no-any-return]


def _http_status(e: BaseException) -> int:
    """The HTTP status of a botocore ClientError (0 for any other exception)."""
    return getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 0)  # type: ignore[no-any-return]


def _chain_first(first: T | None, rest: Iterator[T]) -> Iterator[T]:
    if first is not None:
        yield first
    yield from rest


def _whole_file_path(file: IO[bytes], size: int | None) -> Path | None:
    """The path of ``file`` if it is a regular file read from its start to its end (Rust reads it then)."""
    try:
        name = getattr(file, "name", None)
        if not isinstance(name, str) or file.tell() != 0:
            return None
        st = os.fstat(file.fileno())
        on_disk = os.stat(name)
        if (st.st_dev, st.st_ino) != (on_disk.st_dev, on_disk.st_ino) or not stat.S_ISREG(st.st_mode):
            return None
        if size is not None and size != st.st_size:
            return None
        return Path(name)
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


def _regular_fd(file: IO[bytes]) -> int | None:
    """The descriptor of ``file`` if it is a regular, seekable file (for positional writes)."""
    try:
        fd = file.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        file.flush()
        return fd
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


__all__ = ["S3Backend"]
