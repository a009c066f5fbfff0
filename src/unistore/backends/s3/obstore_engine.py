"""The obstore engine: the data path (head, get, put, delete, streams) on Rust ``object_store``.

About a tenth of boto3's CPU per request. Credentials come from the boto3 session (static keys,
or boto3's chain through :class:`BotoCredentials`, refreshed), and the endpoint is the one the
boto3 client resolved, from whatever source (option, ``AWS_ENDPOINT_URL_S3``, a profile), so both
engines always talk to the same service. object_store's retry is the only retry:
``max_attempts`` total tries, and no request outlives ``retry_timeout``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import CredentialsError, PermissionDenied
from .boto3_engine import Head
from .config import MiB, S3Config
from .errors import RangeNotSatisfiable, is_not_found, translate


class BotoCredentials:
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


def obstore_blockers(cfg: S3Config, endpoint: str | None) -> list[str]:
    """What keeps obstore from serving these options (empty: it can)."""
    blockers = []
    if cfg.storage_class:
        blockers.append("storage_class")
    if isinstance(cfg.verify, str):
        blockers.append("a CA bundle in verify")
    if cfg.addressing_style == "virtual" and endpoint:
        blockers.append("virtual addressing with a custom endpoint")
    try:
        import obstore  # noqa: F401
    except ImportError:
        blockers.append("obstore not installed")
    return blockers


def make_store(cfg: S3Config, session: Any, endpoint: str | None, *, checksum: bool = False) -> Any:
    """An obstore ``S3Store`` for the bucket at ``endpoint`` (None: AWS)."""
    from obstore.store import S3Store

    config: dict[str, Any] = {"region": cfg.region or "us-east-1", "unsigned_payload": cfg.unsigned_payload}
    if checksum:  # object-lock buckets refuse writes without a content checksum
        config["checksum_algorithm"] = "sha256"
    if endpoint:
        config["endpoint"] = endpoint.rstrip("/")
        config["virtual_hosted_style_request"] = False
    else:
        config["virtual_hosted_style_request"] = cfg.addressing_style != "path"
    if cfg.sse_key is not None:
        config["server_side_encryption"] = "sse-c"
        config["sse_customer_key_base64"] = cfg.sse_b64
    client_options: dict[str, Any] = {
        "connect_timeout": timedelta(seconds=cfg.connect_timeout),
        "read_timeout": timedelta(seconds=cfg.read_timeout),
        "pool_max_idle_per_host": str(cfg.max_pool_connections),
        "pool_idle_timeout": timedelta(seconds=60),
    }
    if endpoint and endpoint.startswith("http://"):
        client_options["allow_http"] = True
    if cfg.verify is False:
        client_options["allow_invalid_certificates"] = True
    retry = {
        "max_retries": cfg.max_attempts - 1,
        "retry_timeout": timedelta(seconds=(cfg.connect_timeout + cfg.read_timeout) * cfg.max_attempts),
        "backoff": {"init_backoff": timedelta(milliseconds=200), "max_backoff": timedelta(seconds=10), "base": 4},
    }
    kwargs: dict[str, Any] = {"config": config, "client_options": client_options, "retry_config": retry}
    if cfg.access_key is not None and cfg.secret is not None:
        config["access_key_id"] = cfg.access_key
        config["secret_access_key"] = cfg.secret.value
        if cfg.token:
            config["token"] = cfg.token.value
    else:
        kwargs["credential_provider"] = BotoCredentials(session)
    return S3Store(cfg.bucket, **kwargs)


class ObstoreEngine:
    """The data path on an obstore ``S3Store`` (same methods as :class:`~.boto3_engine.Boto3Engine`)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def head(self, key: str, name: str) -> Head | None:
        import obstore

        try:
            meta = obstore.head(self.store, key)
        except Exception as e:
            if is_not_found(e):
                return None
            error = translate(e, f"info {name}")
            if isinstance(error, PermissionDenied):  # a HEAD has no body: ask a GET whether it is the signature
                try:
                    obstore.get_range(self.store, key, start=0, length=1)
                except Exception as probe:
                    if isinstance(translate(probe, ""), CredentialsError):
                        error = translate(probe, f"info {name}")
            raise error from None
        etag = meta.get("e_tag")
        return Head(meta["size"], meta["last_modified"].timestamp(), etag, meta.get("version"))

    def get(self, key: str, name: str, rng: tuple[int, int] | dict[str, int] | None) -> bytes:
        import obstore

        try:
            if rng is None:
                return bytes(obstore.get(self.store, key).bytes())
            return bytes(obstore.get(self.store, key, options={"range": rng}).bytes())  # type: ignore[arg-type,typeddict-item]
        except Exception as e:
            text = str(e)
            if rng is not None and not is_not_found(e) and ("416" in text or "range" in text.lower()):
                raise RangeNotSatisfiable() from None
            raise translate(e, f"load {name}") from None

    def get_buffer(self, key: str, name: str, start: int, length: int) -> Any:
        """``length`` bytes from ``start`` as a zero-copy buffer."""
        import obstore

        try:
            return obstore.get_range(self.store, key, start=start, length=length)
        except Exception as e:
            raise translate(e, f"load {name}") from None

    def stream(self, key: str, name: str, start: int, length: int) -> Iterator[bytes]:
        if length == 0:
            return
        import obstore

        try:
            result = obstore.get(self.store, key, options={"range": (start, start + length)})
            yield from result.stream(min_chunk_size=1 * MiB)
        except Exception as e:
            raise translate(e, f"load {name}") from None

    def put(self, key: str, name: str, data: Any) -> Head:
        """Store ``data``; the Head of what was written (ETag and version, size and mtime not filled in)."""
        import obstore

        try:
            result = obstore.put(self.store, key, data, use_multipart=False)
        except Exception as e:
            raise translate(e, f"store {name}") from None
        etag = result.get("e_tag")
        return Head(0, 0, f'"{etag.strip(chr(34))}"' if etag else None, result.get("version"))

    def first_key_below(self, key: str, name: str) -> str | None:
        """The first key starting with ``key + "/"`` (a directory marker shows as ``key``), or None."""
        import obstore

        try:
            for chunk in obstore.list(self.store, key, chunk_size=1):
                for meta in chunk:
                    return str(meta["path"])
            return None
        except Exception as e:
            raise translate(e, f"list {name}") from None

    def delete(self, key: str, name: str) -> None:
        import obstore

        try:
            obstore.delete(self.store, key)
        except Exception as e:
            raise translate(e, f"delete {name}") from None
