"""The provider's ``config:`` block: every key of synapse-s3-storage-provider and of its enhanced fork.

:func:`parse_config` validates every key without any network I/O and returns a
:class:`ProviderConfig`; an unknown key or a bad value raises one :class:`ProviderConfigError` that
names the key. :func:`build_backend` turns the result into a (closed) unistore Backend.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...backends.base import Backend
from ...errors import ConfigError, UnistoreError
from ...layers.stack import parse_compression, wrap_data_layers
from ...names import check_name
from ...url import open_backend, redact

# upstream's storage classes plus the other ones AWS accepts for PUT
STORAGE_CLASSES = (
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "GLACIER",
    "DEEP_ARCHIVE",
)
CHECKSUM_MODES = ("when_supported", "when_required")
# keys that only make sense for S3 (refused together with a non-S3 ``url``)
S3_KEYS = (
    "bucket",
    "storage_class",
    "region_name",
    "endpoint_url",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "sse_customer_key",
    "sse_customer_algo",
    "request_checksum_calculation",
    "response_checksum_validation",
)
OTHER_KEYS = (
    "url",
    "backend_options",
    "prefix",
    "threadpool_size",
    "max_pool_connections",
    "connect_timeout",
    "read_timeout",
    "timeout",
    "auto_restore",
    "auto_restore_startup",
    "auto_restore_monitor_interval",
    "auto_restore_batch_size",
    "auto_restore_max_bytes",
    "encryption_key_file",
    "compression",
    # the enhanced fork's
    "extra_args",
    "media_retention",
    "store_local",
    "store_remote",
    "store_synchronous",
)
KNOWN_KEYS = S3_KEYS + OTHER_KEYS
_EXTRA_ARGS = {
    "StorageClass": "storage_class",
    "SSECustomerKey": "sse_customer_key",
    "SSECustomerAlgorithm": "sse_customer_algo",
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1, "": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


class ProviderConfigError(ConfigError):
    """A bad provider config key; ``key`` names it."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class ProviderConfig:
    """The parsed config block. ``options`` may hold secrets and never shows in the repr."""

    url: str
    options: dict[str, Any] = field(repr=False)
    prefix: str = ""
    threadpool_size: int = 40
    timeout: float = 30.0
    auto_restore: bool = False
    auto_restore_startup: bool = True
    auto_restore_monitor_interval: float = 300.0
    auto_restore_batch_size: int = 50
    auto_restore_max_bytes: int = 1024**3
    delete_local_after_upload: bool = False
    encryption_key_file: str | None = None
    compression: str | None = None

    def __repr__(self) -> str:
        return (
            f"ProviderConfig(url={redact(self.url)!r}, prefix={self.prefix!r}, threads={self.threadpool_size}, "
            f"timeout={self.timeout}, auto_restore={self.auto_restore})"
        )

    @property
    def restore_workers(self) -> int:
        return min(self.auto_restore_batch_size, 8) if self.auto_restore else 0


def _bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise ProviderConfigError(key, f"must be true or false, not {value!r}")


def _int(config: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProviderConfigError(key, f"must be a whole number >= {minimum}, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ProviderConfigError(key, f"must be a whole number >= {minimum}, not {value!r}") from None
    if number < minimum:
        raise ProviderConfigError(key, f"must be >= {minimum}, not {number}")
    return number


def parse_seconds(value: Any, key: str, *, allow_zero: bool = False) -> float:
    """A duration in seconds from a number or ``"300"``, ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``."""
    seconds: float
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_UNITS[(m.group(2) or "").lower()]
    else:
        raise ProviderConfigError(key, f"must be a number of seconds or a duration such as 30s, 5m, 1h; not {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ProviderConfigError(key, f"must be {'>= 0' if allow_zero else '> 0'}, not {value!r}")
    return seconds


def parse_size(value: Any, key: str) -> int:
    """Bytes from a number or ``"500M"``, ``"10GiB"``, ``"1T"`` (powers of 1024)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        power = " kmgtp".index((m.group(2) or " ").lower())
        return int(float(m.group(1)) * 1024**power)
    raise ProviderConfigError(key, f"must be a number of bytes or a size such as 500M, 10G; not {value!r}")


def _str(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ProviderConfigError(key, f"must be a non-empty string, not {value!r}")
    return value


def _refuse_fork_only(config: Mapping[str, Any]) -> bool:
    """The fork's in-``config`` flags and ``media_retention``; returns delete_local_after_upload."""
    for key in ("store_remote", "store_synchronous"):
        if key in config:
            raise ProviderConfigError(
                key,
                f"inside config is the enhanced fork's setting; set {key}: beside module: instead "
                "(Synapse's own flag for this provider)",
            )
    if "media_retention" in config:
        raise ProviderConfigError(
            "media_retention",
            "the enhanced fork's timers are lost at every restart and are not supported; use Synapse's own "
            "media_retention in homeserver.yaml to expire media, and `s3_media_upload update` + "
            "`s3_media_upload upload --delete` (run from cron) to free local disk",
        )
    # the fork's store_local: false means "delete the local copy once it is uploaded"
    return not _bool(config, "store_local", True)


def _extra_args(config: Mapping[str, Any]) -> dict[str, Any]:
    """The fork's boto3 ExtraArgs, mapped onto the equivalent keys (only those have a meaning here)."""
    extra = config.get("extra_args", {})
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise ProviderConfigError("extra_args", f"must be a mapping, not {extra!r}")
    out: dict[str, Any] = {}
    for name, value in extra.items():
        if name not in _EXTRA_ARGS:
            raise ProviderConfigError(
                "extra_args",
                f"{name!r} is not supported; supported: {', '.join(_EXTRA_ARGS)} (the same as the keys "
                f"{', '.join(_EXTRA_ARGS.values())})",
            )
        target = _EXTRA_ARGS[name]
        if target in config:
            raise ProviderConfigError("extra_args", f"{name} and {target} are both given; give one")
        out[target] = value
    return out


def _s3_options(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    bucket = _str(config, "bucket")
    if bucket is None:
        raise ProviderConfigError("bucket", "is required (or give url: for any unistore backend)")
    if "/" in bucket:
        raise ProviderConfigError("bucket", f"must be a bucket name without '/', not {bucket!r}")
    options: dict[str, Any] = {}
    for key, option in (
        ("region_name", "region"),
        ("endpoint_url", "endpoint_url"),
        ("access_key_id", "access_key"),
        ("secret_access_key", "secret_key"),
        ("session_token", "session_token"),
    ):
        value = _str(config, key)
        if value is not None:
            options[option] = value
    if ("access_key" in options) != ("secret_key" in options):
        raise ProviderConfigError("access_key_id", "give access_key_id and secret_access_key together, or neither")
    if "session_token" in options and "access_key" not in options:
        raise ProviderConfigError("session_token", "needs access_key_id and secret_access_key")
    merged = {**config, **_extra_args(config)}
    storage_class = merged.get("storage_class")
    if storage_class is not None:
        if storage_class not in STORAGE_CLASSES:
            raise ProviderConfigError(
                "storage_class", f"must be one of {', '.join(STORAGE_CLASSES)}, not {storage_class!r}"
            )
        if storage_class != "STANDARD":  # STANDARD is every bucket's default: no need to send it
            options["storage_class"] = storage_class
    sse_key = merged.get("sse_customer_key")
    algo = merged.get("sse_customer_algo", "AES256")
    if algo != "AES256":
        raise ProviderConfigError("sse_customer_algo", f"must be AES256 (the only SSE-C algorithm), not {algo!r}")
    if sse_key is not None:
        if not isinstance(sse_key, str) or not sse_key:
            raise ProviderConfigError("sse_customer_key", "must be a non-empty string")
        options["sse_customer_key"] = sse_key
    modes = {}
    for k in ("request_checksum_calculation", "response_checksum_validation"):
        if k in config:
            if config[k] not in CHECKSUM_MODES:
                raise ProviderConfigError(k, f"must be when_supported or when_required, not {config[k]!r}")
            modes[k] = config[k]
    if len(set(modes.values())) > 1:
        raise ProviderConfigError(
            "response_checksum_validation",
            "must equal request_checksum_calculation (unistore's S3 backend applies one checksum mode to both)",
        )
    if modes:
        options["checksum"] = next(iter(modes.values()))
    options["max_attempts"] = 2  # a stopped server fails within read_timeout x 2, not 3
    return f"s3:/{bucket}", options


def parse_config(config: Mapping[str, Any] | None) -> ProviderConfig:
    """Validate the whole ``config:`` block (no network I/O) and return it parsed."""
    config = dict(config or {})
    unknown = sorted(set(config) - set(KNOWN_KEYS))
    if unknown:
        raise ProviderConfigError(unknown[0], f"unknown key (known keys: {', '.join(sorted(KNOWN_KEYS))})")
    delete_local = _refuse_fork_only(config)

    url = _str(config, "url")
    if url is not None:
        s3_given = [k for k in S3_KEYS if k in config]
        if s3_given and not url.lower().startswith(("s3:", "b2:")):
            raise ProviderConfigError(
                s3_given[0], "is an S3 setting; with a non-S3 url give backend options in backend_options"
            )
        if "bucket" in config:
            raise ProviderConfigError("bucket", "give either url or bucket, not both")
        if s3_given or "extra_args" in config:
            _, options = _s3_options({**config, "bucket": "x"})
        else:
            options = {}
    else:
        url, options = _s3_options(config)

    scheme = url.split(":", 1)[0].lower()
    connect_timeout = parse_seconds(config.get("connect_timeout", 5), "connect_timeout")
    read_timeout = parse_seconds(config.get("read_timeout", 20), "read_timeout")
    if scheme in ("s3", "b2"):
        options.update(connect_timeout=connect_timeout, read_timeout=read_timeout)
    elif scheme == "sftp":
        options.update(connect_timeout=connect_timeout, timeout=read_timeout)
    timeout = parse_seconds(config.get("timeout", 30), "timeout")

    threads = _int(config, "threadpool_size", 40, 1)
    auto_restore = _bool(config, "auto_restore", False)
    batch = _int(config, "auto_restore_batch_size", 50, 1)
    restore_workers = min(batch, 8) if auto_restore else 0
    if scheme in ("s3", "b2"):
        needed = threads + restore_workers
        connections = _int(config, "max_pool_connections", needed, 1)
        if connections < needed:
            raise ProviderConfigError(
                "max_pool_connections",
                f"is {connections}, smaller than the {needed} threads that use it (threadpool_size {threads}"
                + (f" + {restore_workers} auto-restore workers" if restore_workers else "")
                + "): raise it or lower threadpool_size",
            )
        options["max_pool_connections"] = connections
        options["workers"] = 4  # parallel parts of one large upload or download
    elif "max_pool_connections" in config:
        raise ProviderConfigError(
            "max_pool_connections", f"applies to S3 only; {scheme}: backends size their own pools"
        )

    backend_options = config.get("backend_options") or {}
    if not isinstance(backend_options, Mapping):
        raise ProviderConfigError("backend_options", f"must be a mapping, not {backend_options!r}")
    options.update(backend_options)

    prefix = config.get("prefix", "")
    if not isinstance(prefix, str):
        raise ProviderConfigError("prefix", f"must be a string, not {prefix!r}")
    if prefix:
        try:
            check_name(prefix + "local_content/aa/bb/x")
        except UnistoreError as e:
            raise ProviderConfigError("prefix", f"{prefix!r} does not give valid object names: {e}") from None

    parsed = ProviderConfig(
        url=url,
        options=options,
        prefix=prefix,
        threadpool_size=threads,
        timeout=timeout,
        auto_restore=auto_restore,
        auto_restore_startup=_bool(config, "auto_restore_startup", True),
        auto_restore_monitor_interval=parse_seconds(
            config.get("auto_restore_monitor_interval", 300), "auto_restore_monitor_interval", allow_zero=True
        ),
        auto_restore_batch_size=batch,
        auto_restore_max_bytes=parse_size(config.get("auto_restore_max_bytes", 1024**3), "auto_restore_max_bytes"),
        delete_local_after_upload=delete_local,
        encryption_key_file=_str(config, "encryption_key_file"),
        compression=_str(config, "compression"),
    )
    if parsed.compression is not None:
        try:
            parse_compression(parsed.compression)
        except ConfigError as e:
            raise ProviderConfigError("compression", str(e)) from None
    build_backend(parsed)  # constructing a backend validates its options; it does not connect
    return parsed


_OPTION_KEYS = (
    ("sse", "sse_customer_key"),
    ("endpoint_url", "endpoint_url"),
    ("storage_class", "storage_class"),
    ("access_key", "access_key_id"),
    ("secret_key", "secret_access_key"),
    ("session_token", "session_token"),
    ("region", "region_name"),
    ("checksum", "request_checksum_calculation"),
)


def build_backend(config: ProviderConfig) -> Backend:
    """The (not yet opened) backend the config names."""
    try:
        backend = open_backend(config.url, **config.options)
    except TypeError as e:
        raise ProviderConfigError(
            "backend_options", f"not accepted by the {config.url.split(':')[0]} backend: {e}"
        ) from None
    except UnistoreError as e:
        message = redact(str(e))
        if "unknown option" in message.lower():
            raise ProviderConfigError("backend_options", f"not accepted by the backend: {message}") from None
        key = next((k for hint, k in _OPTION_KEYS if hint in message.lower()), "url")
        raise ProviderConfigError(key, message) from None
    if config.encryption_key_file is None and config.compression is None:
        return backend
    try:
        return wrap_data_layers(
            backend, encryption_key_file=config.encryption_key_file, compression=config.compression
        )
    except ConfigError as e:
        key = "compression" if "compression" in str(e) else "encryption_key_file"
        raise ProviderConfigError(key, str(e)) from None
