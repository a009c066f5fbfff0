"""The provider's config block: every key validated, one message naming the bad key, no network I/O."""

from __future__ import annotations

import time
from typing import Any

import pytest

from unistore.adapters.synapse.config import ProviderConfigError, parse_config

S3 = {
    "bucket": "media",
    "endpoint_url": "http://127.0.0.1:1",  # nothing listens there: parsing must not connect
    "access_key_id": "AKIAEXAMPLE",
    "secret_access_key": "very-secret-key-123",
}


def bad(config: dict[str, Any]) -> ProviderConfigError:
    with pytest.raises(ProviderConfigError) as info:
        parse_config(config)
    return info.value


def test_upstream_config_parses_without_connecting() -> None:
    t0 = time.monotonic()
    cfg = parse_config(
        {
            **S3,
            "prefix": "synapse/",
            "region_name": "eu-west-1",
            "storage_class": "STANDARD_IA",
            "threadpool_size": 8,
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }
    )
    assert time.monotonic() - t0 < 5  # (a connection attempt to port 1 would fail, not hang; see next)
    assert cfg.url == "s3:/media" and cfg.prefix == "synapse/" and cfg.threadpool_size == 8
    assert cfg.options["region"] == "eu-west-1"
    assert cfg.options["storage_class"] == "STANDARD_IA"
    assert cfg.options["checksum"] == "when_required"
    assert cfg.options["max_pool_connections"] == 8
    assert "very-secret" not in repr(cfg)


def test_defaults() -> None:
    cfg = parse_config(S3)
    assert cfg.prefix == "" and cfg.threadpool_size == 40 and cfg.timeout == 30
    assert not cfg.auto_restore and not cfg.delete_local_after_upload
    assert "storage_class" not in cfg.options  # STANDARD is not sent (keeps the fast engine)


@pytest.mark.parametrize(
    "config, key, words",
    [
        ({**S3, "bucket_name": "x"}, "bucket_name", "unknown key"),
        ({k: v for k, v in S3.items() if k != "bucket"}, "bucket", "required"),
        ({**S3, "threadpool_size": 0}, "threadpool_size", ">= 1"),
        ({**S3, "threadpool_size": "many"}, "threadpool_size", "whole number"),
        ({**S3, "threadpool_size": 40, "max_pool_connections": 10}, "max_pool_connections", "smaller than"),
        ({**S3, "storage_class": "FAST"}, "storage_class", "must be one of"),
        ({**S3, "sse_customer_algo": "DES"}, "sse_customer_algo", "AES256"),
        ({**S3, "request_checksum_calculation": "always"}, "request_checksum_calculation", "when_supported"),
        (
            {**S3, "request_checksum_calculation": "when_required", "response_checksum_validation": "when_supported"},
            "response_checksum_validation",
            "must equal",
        ),
        ({**S3, "timeout": -1}, "timeout", "> 0"),
        ({**S3, "read_timeout": "soon"}, "read_timeout", "duration"),
        ({**S3, "auto_restore": "maybe"}, "auto_restore", "true or false"),
        ({**S3, "auto_restore_max_bytes": "lots"}, "auto_restore_max_bytes", "size"),
        ({**S3, "store_remote": False}, "store_remote", "beside module:"),
        ({**S3, "store_synchronous": True}, "store_synchronous", "beside module:"),
        ({**S3, "media_retention": {"local_media_lifetime": "7d"}}, "media_retention", "homeserver.yaml"),
        ({**S3, "extra_args": {"ACL": "public-read"}}, "extra_args", "not supported"),
        ({**S3, "extra_args": {"StorageClass": "STANDARD"}, "storage_class": "STANDARD"}, "extra_args", "both"),
        ({**S3, "prefix": "/abs/"}, "prefix", "valid object names"),
        ({**S3, "prefix": "a//b/"}, "prefix", "valid object names"),
        ({**S3, "endpoint_url": "ftp://x"}, "endpoint_url", "http"),
        ({**S3, "url": "file:///srv/media"}, "bucket", "S3 setting"),
        ({"url": "file:///srv/media", "storage_class": "STANDARD_IA"}, "storage_class", "S3 setting"),
        ({"url": "file:///srv/media", "max_pool_connections": 4}, "max_pool_connections", "S3 only"),
        ({"url": "nosuch:///x"}, "url", "unknown backend scheme"),
        ({"url": "file:///srv/media", "backend_options": {"colour": "red"}}, "backend_options", "not accepted"),
    ],
)
def test_bad_config_names_the_key(config: dict[str, Any], key: str, words: str) -> None:
    err = bad(config)
    assert err.key == key, str(err)
    assert words in str(err)
    assert str(err).startswith(key + ":")


def test_fork_keys() -> None:
    cfg = parse_config(
        {
            **S3,
            "store_local": False,  # the fork's: delete the local copy once uploaded
            "max_pool_connections": 64,
            "threadpool_size": 20,
            "extra_args": {"StorageClass": "STANDARD_IA"},
            "auto_restore": True,
            "auto_restore_startup": "false",
            "auto_restore_monitor_interval": "5m",
            "auto_restore_batch_size": 10,
            "auto_restore_max_bytes": "2G",
        }
    )
    assert cfg.delete_local_after_upload
    assert cfg.options["max_pool_connections"] == 64 and cfg.options["storage_class"] == "STANDARD_IA"
    assert cfg.auto_restore and not cfg.auto_restore_startup
    assert cfg.auto_restore_monitor_interval == 300 and cfg.auto_restore_batch_size == 10
    assert cfg.auto_restore_max_bytes == 2 * 1024**3
    # the pool must cover the auto-restore workers too
    err = bad({**S3, "threadpool_size": 20, "max_pool_connections": 20, "auto_restore": True})
    assert err.key == "max_pool_connections" and "auto-restore" in str(err)


def test_url_config(tmp_path: Any) -> None:
    cfg = parse_config({"url": f"file://{tmp_path}", "prefix": "media/", "timeout": "10s"})
    assert cfg.url == f"file://{tmp_path}" and cfg.timeout == 10
    sftp = {"url": "sftp://u@127.0.0.1:1//srv/media", "read_timeout": 7, "backend_options": {"channels": 2}}
    cfg = parse_config(sftp)
    assert cfg.options["timeout"] == 7 and cfg.options["channels"] == 2


def test_synapse_reports_the_key() -> None:
    """Through Synapse's own module loader, as at start-up."""
    from synapse.config._base import ConfigError, format_config_error
    from synapse.util.module_loader import load_module

    provider = {"module": "unistore.adapters.synapse.S3StorageProviderBackend", "config": {**S3, "threadpool_size": 0}}
    with pytest.raises(ConfigError) as info:
        load_module(provider, ("media_storage_providers", "<item 0>"))
    text = "".join(format_config_error(info.value))
    assert "media_storage_providers.<item 0>.config.threadpool_size" in text and "must be >= 1, not 0" in text
    cls, parsed = load_module({**provider, "config": S3}, ("media_storage_providers", "<item 0>"))
    assert cls.__name__ == "S3StorageProviderBackend" and parsed.url == "s3:/media"


def test_encryption_and_compression_keys(tmp_path: Any) -> None:
    """The provider takes the layers' options: media are encrypted (and compressed) in the backend."""
    import os

    from unistore.adapters.synapse.config import build_backend
    from unistore.backends.posixfs import PosixFS
    from unistore.layers.compress import CompressLayer
    from unistore.layers.encrypt import EncryptLayer

    key_file = tmp_path / "media.key"
    key_file.write_bytes(os.urandom(32))
    url = f"file://{tmp_path}/media"
    parsed = parse_config({"url": url, "encryption_key_file": str(key_file), "compression": "zstd:5"})
    backend = build_backend(parsed)
    assert isinstance(backend, CompressLayer) and isinstance(backend.unwrap(), EncryptLayer)
    raw = PosixFS(f"{tmp_path}/media")
    raw.create()
    with backend:
        backend.store("local_content/ab/cd/efgh", b"a picture of a cat " * 100)
        assert backend.load("local_content/ab/cd/efgh") == b"a picture of a cat " * 100
    with raw:
        assert b"cat" not in raw.load("local_content/ab/cd/efgh")
    with pytest.raises(ProviderConfigError) as e:
        parse_config({"url": url, "compression": "gzip"})
    assert e.value.key == "compression"
    with pytest.raises(ProviderConfigError) as e:
        parse_config({"url": url, "encryption_key_file": str(tmp_path / "missing.key")})
    assert e.value.key == "encryption_key_file"
