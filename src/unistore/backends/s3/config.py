"""Options of the S3 backend: the ``s3:``/``b2:`` URL and the keyword options, checked once.

:func:`parse_url` turns a URL into constructor arguments; :class:`S3Config` holds every option in
checked form. Secrets are held in :class:`~.redact.Secret` so that no repr shows them.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ...errors import BackendURLInvalid, ConfigError
from ...url import redact
from .redact import Secret

MiB = 1024 * 1024
GiB = 1024 * MiB

URL_RE = re.compile(
    r"^(?P<scheme>s3|b2):"
    r"(?:(?P<cred>[^@]*?)@(?=(?:[a-zA-Z][a-zA-Z0-9+.-]*://[^/]*)?/))?"
    r"(?:(?P<proto>[a-zA-Z][a-zA-Z0-9+.-]*)://(?P<host>[^/]*))?"
    r"/(?P<bucket>[^/]+)(?:/(?P<prefix>.*))?$",
    re.IGNORECASE,
)


def parse_url(url: str) -> tuple[str, str, dict[str, Any]]:
    """``(bucket, prefix, options)`` of ``(s3|b2):[profile|(key:secret)@][scheme://host[:port]]/bucket[/prefix]``."""
    m = URL_RE.match(url)
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
    return m.group("bucket"), m.group("prefix") or "", kwargs


def as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be a boolean, not {value!r}")


def sse_key_bytes(key: str | bytes) -> bytes:
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


@dataclass
class S3Config:
    """Every option of :class:`~.backend.S3Backend`, checked (see docs/s3.md for their meaning)."""

    bucket: str
    prefix: str = ""
    profile: str | None = None
    access_key: str | None = None
    secret: Secret | None = None
    token: Secret | None = None
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "auto"
    use_ssl: bool = True
    verify: bool | str = True
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_attempts: int = 3
    max_pool_connections: int = 12
    workers: int = 8
    multipart_threshold: int = 16 * MiB
    multipart_chunksize: int = 8 * MiB
    storage_class: str | None = None
    sse_key: Secret | None = None  # the raw 32 bytes
    allow_insecure_sse_c: bool = False
    checksum: str = "when_supported"
    engine: str = "auto"
    bypass_governance: bool = False
    unsigned_payload: bool = False
    b2: bool = False
    name_checks: bool = True

    @property
    def sse_b64(self) -> str | None:
        """The SSE-C key in base64 (as it travels in headers), or None."""
        return base64.b64encode(self.sse_key.value).decode("ascii") if self.sse_key is not None else None

    def secrets(self) -> list[str]:
        """Every form of every secret that could show up in a message (for scrubbing)."""
        out = [s.value for s in (self.secret, self.token) if s is not None and s.value]
        if self.sse_key is not None:
            raw: bytes = self.sse_key.value
            out += [self.sse_b64 or "", raw.decode("latin-1"), repr(raw)[2:-1]]
        return [s for s in out if len(s) >= 8]


def make_config(
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
    name_checks: bool = True,
) -> S3Config:
    """Check the options and return them as an :class:`S3Config` (ConfigError names a bad one)."""
    if not bucket:
        raise ConfigError("a bucket name is required")
    if (access_key is None) != (secret_key is None):
        raise ConfigError("give both access_key and secret_key, or neither")
    if endpoint_url is not None:
        if not re.match(r"^https?://[^/]+/?$", endpoint_url):
            raise ConfigError(f"endpoint_url must be http(s)://host[:port], not {endpoint_url!r}")
        endpoint_url = endpoint_url.rstrip("/")
        use_ssl = endpoint_url.startswith("https://")
    if addressing_style not in ("auto", "path", "virtual"):
        raise ConfigError(f"addressing_style must be auto, path or virtual, not {addressing_style!r}")
    ssl = as_bool(use_ssl, "use_ssl")
    if isinstance(verify, str) and verify.lower() not in ("true", "false"):
        checked_verify: bool | str = verify
    else:
        checked_verify = as_bool(verify, "verify")
    if int(max_attempts) < 1:
        raise ConfigError("max_attempts must be >= 1")
    n_workers = max(1, int(workers))
    if int(multipart_chunksize) < 5 * MiB:
        raise ConfigError("multipart_chunksize must be at least 5 MiB (S3's minimum part size)")
    if b2:
        checksum = "when_required"
    if checksum not in ("when_supported", "when_required"):
        raise ConfigError(f"checksum must be when_supported or when_required, not {checksum!r}")
    if engine not in ("auto", "obstore", "boto3"):
        raise ConfigError(f"engine must be auto, obstore or boto3, not {engine!r}")
    sse = Secret(sse_key_bytes(sse_customer_key)) if sse_customer_key is not None else None
    insecure = as_bool(allow_insecure_sse_c, "allow_insecure_sse_c")
    if sse is not None and not ssl and not insecure:
        raise ConfigError("refusing to send an SSE-C key over plain http; use https or allow_insecure_sse_c=True")
    return S3Config(
        bucket=bucket,
        prefix=prefix.strip("/"),
        profile=profile,
        access_key=access_key,
        secret=Secret(secret_key) if secret_key is not None else None,
        token=Secret(session_token) if session_token else None,
        endpoint_url=endpoint_url,
        region=region,
        addressing_style=addressing_style,
        use_ssl=ssl,
        verify=checked_verify,
        connect_timeout=float(connect_timeout),
        read_timeout=float(read_timeout),
        max_attempts=int(max_attempts),
        max_pool_connections=int(max_pool_connections or n_workers + 4),
        workers=n_workers,
        multipart_threshold=int(multipart_threshold),
        multipart_chunksize=int(multipart_chunksize),
        storage_class=storage_class,
        sse_key=sse,
        allow_insecure_sse_c=insecure,
        checksum=checksum,
        engine=engine,
        bypass_governance=as_bool(bypass_governance, "bypass_governance"),
        # like the AWS SDKs: over TLS the payload is protected already and need not be hashed into the signature
        unsigned_payload=ssl if unsigned_payload is None else as_bool(unsigned_payload, "unsigned_payload"),
        b2=b2,
        name_checks=as_bool(name_checks, "name_checks"),
    )


#: options readable as attributes of the backend (``backend.read_timeout`` is ``backend.config.read_timeout``)
OPTION_ATTRIBUTES = (
    "profile",
    "access_key",
    "endpoint_url",
    "region",
    "addressing_style",
    "use_ssl",
    "verify",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
    "max_pool_connections",
    "workers",
    "multipart_threshold",
    "multipart_chunksize",
    "storage_class",
    "checksum",
    "engine",
    "bypass_governance",
    "unsigned_payload",
    "b2",
    "name_checks",
)


class OptionAttributes:
    """Read-only attributes of the backend for the options in :data:`OPTION_ATTRIBUTES`."""

    config: S3Config


def _option_property(option: str) -> property:
    def get(self: OptionAttributes) -> Any:
        return getattr(self.config, option)

    return property(get, doc=f"The option ``{option}`` (read-only; see :class:`S3Config`).")


for _option in OPTION_ATTRIBUTES:
    setattr(OptionAttributes, _option, _option_property(_option))
