"""The ``<s3blobstorage>`` ZConfig section: every key applies or is refused by name, two S3 clients
(the download timeouts govern cold reads), a missing bucket is an error unless creation is asked for."""

from __future__ import annotations

import base64
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import ZConfig
import ZODB
import ZODB.config
from ZODB.MappingStorage import MappingStorage
from ZODB.utils import p64, u64

from unistore.adapters.zodb import S3BlobStorage, blob_name
from unistore.errors import BackendConnectionError, BackendDoesNotExist, ConfigError

from .servers.seaweedfs import start_seaweedfs
from .zodb_storages import commit_blob, unique


def _config(body: str, base: str = "<mappingstorage/>") -> str:
    lines = "\n".join("    " + line.strip() for line in body.strip().splitlines())
    return f"""
%import unistore.adapters.zodb
<zodb>
  <s3blobstorage>
{lines}
    {base}
  </s3blobstorage>
</zodb>
"""


def _open(body: str, base: str = "<mappingstorage/>") -> Any:
    return ZODB.config.databaseFromString(_config(body, base))


def _keys_of(server: Any, bucket: str, prefix: str = "") -> str:
    """The bucket-name mode keys (zodb-s3blobs' spelling) of ``bucket`` on ``server``."""
    lines = [
        f"bucket-name {bucket}",
        f"s3-endpoint-url {server.endpoint}",
        "s3-region us-east-1",
        f"s3-access-key {server.access_key}",
        f"s3-secret-key {server.secret_key}",
        "s3-addressing-style path",
    ]
    if prefix:
        lines.append(f"s3-prefix {prefix}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- basics


def test_zconfig_url_and_env_substitution(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLOB_STORE", f"file://{tmp_path}/store")
    config = f"""
    %import unistore.adapters.zodb
    <zodb>
      <s3blobstorage>
        url $(BLOB_STORE)
        create-bucket true
        cache-dir {tmp_path}/cache
        cache-size 10MB
        staging-dir {tmp_path}/staging
        <filestorage>
          path {tmp_path}/Data.fs
        </filestorage>
      </s3blobstorage>
    </zodb>
    """
    db = ZODB.config.databaseFromString(config)
    try:
        storage = db.storage
        assert isinstance(storage, S3BlobStorage)
        assert storage.temporaryDirectory() == f"{tmp_path}/staging"
        assert storage.cache.size_limit == 10 * 1024 * 1024
        oid, tid = commit_blob(db, "b", b"configured")
        assert (tmp_path / "store" / blob_name(oid, tid)).read_bytes() == b"configured"
        assert db.supportsUndo()  # FileStorage's interfaces stay visible
    finally:
        db.close()


def test_zconfig_needs_url_or_bucket(tmp_path: Any) -> None:
    config = f"""
    %import unistore.adapters.zodb
    <zodb>
      <s3blobstorage>
        cache-dir {tmp_path}/cache
        <mappingstorage/>
      </s3blobstorage>
    </zodb>
    """
    with pytest.raises(ValueError, match="url or bucket-name"):
        ZODB.config.databaseFromString(config)


def test_zconfig_requires_cache_dir() -> None:
    config = """
    %import unistore.adapters.zodb
    <zodb>
      <s3blobstorage>
        url memory://x
        <mappingstorage/>
      </s3blobstorage>
    </zodb>
    """
    with pytest.raises(ZConfig.ConfigurationError):
        ZODB.config.databaseFromString(config)


def test_zconfig_s3_keys_keep_zodb_s3blobs_layout(
    seaweedfs: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zodb-s3blobs configuration works with only the %import line changed, on its bucket."""
    bucket = seaweedfs.new_bucket()
    client = seaweedfs.client()
    # a blob written by zodb-s3blobs before the switch
    client.put_object(Bucket=bucket, Key="zope/blobs/7/3f.blob", Body=b"written before the switch")
    monkeypatch.setenv("S3_KEY", seaweedfs.access_key)
    monkeypatch.setenv("S3_SECRET", seaweedfs.secret_key)
    config = f"""
    %import unistore.adapters.zodb
    <zodb>
      <s3blobstorage>
        bucket-name {bucket}
        s3-prefix zope
        s3-endpoint-url {seaweedfs.endpoint}
        s3-region us-east-1
        s3-access-key $(S3_KEY)
        s3-secret-key $(S3_SECRET)
        s3-use-ssl false
        s3-addressing-style path
        s3-connect-timeout 5
        s3-read-timeout 30
        cache-dir {tmp_path}/cache
        cache-size 1GB
        <mappingstorage/>
      </s3blobstorage>
    </zodb>
    """
    db = ZODB.config.databaseFromString(config)
    try:
        with open(db.storage.loadBlob(p64(7), p64(0x3F)), "rb") as f:
            assert f.read() == b"written before the switch"
        oid, tid = commit_blob(db, "b", b"new blob")
        key = f"zope/blobs/{u64(oid):x}/{u64(tid):x}.blob"
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"new blob"
        assert seaweedfs.secret_key not in repr(db.storage)
    finally:
        db.close()


def test_unknown_key_is_refused_by_name(tmp_path: Any) -> None:
    with pytest.raises(ZConfig.ConfigurationError, match="s3-download-timeout"):
        _open(f"url memory://{unique()}\ncreate-bucket true\ncache-dir {tmp_path}/c\ns3-download-timeout 5")


# ----------------------------------------------------------------------------------------------- url + s3-* keys


@pytest.mark.parametrize(
    "extra",
    [
        "bucket-name other",
        "s3-prefix other",
        "s3-endpoint-url http://127.0.0.1:1",
        "s3-use-ssl false",
        "bucket-name other\ns3-prefix other",
    ],
)
def test_url_refuses_keys_that_say_where(extra: str, tmp_path: Any) -> None:
    url = "s3:key:secret@http://127.0.0.1:1/bucket/prefix"
    keys = [line.split()[0] for line in extra.splitlines()]
    with pytest.raises(ConfigError, match="conflict with url") as info:
        _open(f"url {url}\ncache-dir {tmp_path}/c\n{extra}")
    assert all(key in str(info.value) for key in keys)


def test_non_s3_url_refuses_s3_keys(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="s3-download-read-timeout, s3-region, s3-sse-customer-key") as info:
        _open(
            f"url file://{tmp_path}/store\ncreate-bucket true\ncache-dir {tmp_path}/c\ns3-region eu-west-1\n"
            f"s3-sse-customer-key {base64.b64encode(b'k' * 32).decode()}\ns3-download-read-timeout 3"
        )
    assert "file:" in str(info.value)


def test_url_credentials_given_twice_are_refused(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="s3-access-key, s3-secret-key conflict with the credentials"):
        _open(f"url s3:k:s@http://127.0.0.1:1/b\ncache-dir {tmp_path}/c\ns3-access-key k2\ns3-secret-key s2")


def test_url_takes_credentials_and_tuning_from_the_keys(seaweedfs: Any, tmp_path: Any) -> None:
    """An s3 url without credentials plus s3-access-key/s3-secret-key (dropped before: no credentials)."""
    bucket = seaweedfs.new_bucket()
    db = _open(
        f"url s3:{seaweedfs.endpoint}/{bucket}/site\ncache-dir {tmp_path}/c\ns3-access-key {seaweedfs.access_key}\n"
        f"s3-secret-key {seaweedfs.secret_key}\ns3-region us-east-1\ns3-addressing-style path\n"
        "s3-connect-timeout 7\ns3-read-timeout 70\ns3-download-connect-timeout 3\ns3-download-read-timeout 4\n"
        "s3-download-max-attempts 3\nupload-workers 3"
    )
    try:
        storage = db.storage
        oid, tid = commit_blob(db, "b", b"with the keys' credentials")
        obj = seaweedfs.client().get_object(Bucket=bucket, Key=f"site/{blob_name(oid, tid)}")
        assert obj["Body"].read() == b"with the keys' credentials"
        up, down = storage.backend, storage.download_backend
        assert (up.connect_timeout, up.read_timeout, up.workers) == (7, 70, 3)
        assert (down.connect_timeout, down.read_timeout, down.max_attempts) == (3, 4, 3)
        assert up.addressing_style == down.addressing_style == "path"
        assert seaweedfs.secret_key not in repr(storage)
    finally:
        db.close()


def test_download_client_defaults_are_zodb_s3blobs(seaweedfs: Any, tmp_path: Any) -> None:
    db = _open(f"url {seaweedfs.url(seaweedfs.new_bucket())}\ncache-dir {tmp_path}/c")
    try:
        up, down = db.storage.backend, db.storage.download_backend
        assert (up.connect_timeout, up.read_timeout, up.workers) == (60, 300, 8)
        assert (down.connect_timeout, down.read_timeout, down.max_attempts) == (5, 10, 2)
    finally:
        db.close()


def test_url_applies_the_sse_c_key(seaweedfs: Any, tmp_path: Any) -> None:
    """The SSE-C key given with url is used (before, it was dropped and blobs were stored unencrypted)."""
    key = base64.b64encode(os.urandom(32)).decode()
    url = seaweedfs.url(seaweedfs.new_bucket(), "enc")
    # over plain http the key is refused unless explicitly allowed: proof that it is not dropped
    with pytest.raises(ConfigError, match="SSE-C"):
        _open(f"url {url}\ncache-dir {tmp_path}/c\ns3-sse-customer-key {key}")
    db = _open(f"url {url}\ncache-dir {tmp_path}/c\ns3-sse-customer-key {key}\ns3-allow-insecure-sse-c true")
    try:
        oid, tid = commit_blob(db, "b", b"secret blob")
        bucket = url.rsplit("/", 2)[1]
        client = seaweedfs.client()
        name = f"enc/{blob_name(oid, tid)}"
        with pytest.raises(Exception, match="must provide the customer key"):
            client.get_object(Bucket=bucket, Key=name)  # stored encrypted: unreadable without the key
        raw = base64.b64decode(key)
        obj = client.get_object(Bucket=bucket, Key=name, SSECustomerAlgorithm="AES256", SSECustomerKey=raw)
        assert obj["Body"].read() == b"secret blob"
        # and a cold read (download client) carries the key as well
        storage = S3BlobStorage(MappingStorage(), db.storage.download_backend, str(tmp_path / "c2"))
        with open(storage.loadBlob(oid, tid), "rb") as f:
            assert f.read() == b"secret blob"
        storage.close()
    finally:
        db.close()


# ----------------------------------------------------------------------------------------------- bucket-name keys


def test_use_ssl_conflicting_with_the_endpoint_is_refused(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="s3-use-ssl true conflicts with s3-endpoint-url http://"):
        _open(f"bucket-name b\ns3-endpoint-url http://127.0.0.1:1\ns3-use-ssl true\ncache-dir {tmp_path}/c")


def test_half_a_key_pair_is_refused(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="s3-access-key is given without its pair"):
        _open(f"bucket-name b\ns3-endpoint-url http://127.0.0.1:1\ns3-access-key k\ncache-dir {tmp_path}/c")


@pytest.mark.parametrize("workers", [0, -2])
def test_upload_workers_below_one_are_refused(workers: int, tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="upload-workers"):
        _open(f"url memory://{unique()}\ncreate-bucket true\ncache-dir {tmp_path}/c\nupload-workers {workers}")


def test_one_upload_worker_is_one(seaweedfs: Any, tmp_path: Any) -> None:
    """upload-workers 1 means one upload at a time and a pool sized for it (it was floored at 4)."""
    db = _open(
        _keys_of(seaweedfs, seaweedfs.new_bucket()) + f"\ns3-use-ssl false\nupload-workers 1\ncache-dir {tmp_path}/c"
    )
    try:
        assert db.storage.backend.workers == 1
        assert db.storage.upload_workers == 1
        commit_blob(db, "b", b"one at a time")
    finally:
        db.close()


def test_missing_bucket_is_an_error_unless_creation_is_asked(seaweedfs: Any, tmp_path: Any) -> None:
    bucket = f"t-missing-{unique()}"
    keys = _keys_of(seaweedfs, bucket, "site") + f"\ncache-dir {tmp_path}/c"
    with pytest.raises(BackendDoesNotExist, match="create-bucket true"):
        _open(keys)
    client = seaweedfs.client()
    assert bucket not in {b["Name"] for b in client.list_buckets()["Buckets"]}  # nothing was created
    db = _open(keys + "\ncreate-bucket true")
    try:
        oid, tid = commit_blob(db, "b", b"in a new bucket")
        key = f"site/blobs/{u64(oid):x}/{u64(tid):x}.blob"
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"in a new bucket"
    finally:
        db.close()


def test_new_prefix_in_an_existing_bucket_needs_no_creation(seaweedfs: Any, tmp_path: Any) -> None:
    bucket = seaweedfs.new_bucket()
    for body in (_keys_of(seaweedfs, bucket, "new-site"), f"url {seaweedfs.url(bucket, 'other-site')}"):
        db = _open(body + f"\ncache-dir {tmp_path}/{unique()}")
        try:
            commit_blob(db, "b", b"first blob of a site")
        finally:
            db.close()


def test_python_api_refuses_a_missing_backend(tmp_path: Any) -> None:
    with pytest.raises(BackendDoesNotExist, match="create=True"):
        S3BlobStorage(MappingStorage(), f"file://{tmp_path}/missing", str(tmp_path / "c"))
    assert not (tmp_path / "missing").exists()
    S3BlobStorage(MappingStorage(), f"file://{tmp_path}/missing", str(tmp_path / "c"), create=True).close()
    assert (tmp_path / "missing").is_dir()


# ----------------------------------------------------------------------------------------------- frozen server


@pytest.fixture(scope="module")
def frozen_seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A SeaweedFS of this module's own (the tests freeze it with SIGSTOP) and a bucket on it."""
    with start_seaweedfs(tmp_path_factory.mktemp("frozen-seaweedfs")) as server:
        bucket = server.new_bucket()
        server.client().put_object(Bucket=bucket, Key="warm-up", Body=b"x")  # SeaweedFS sets up the bucket
        yield server, bucket
        server.kill()  # nothing to keep: no graceful stop needed


@pytest.mark.parametrize("mode", ["url", "bucket-name"])
def test_cold_read_of_a_frozen_server_fails_within_the_download_bound(
    mode: str, frozen_seaweedfs: tuple[Any, str], tmp_path: Any
) -> None:
    """SIGSTOP SeaweedFS: a cold read fails with a typed error after the download client's attempts
    (2 x 1 s here), not after the upload client's 300 s read timeout (it waited 300 s x 3 before)."""
    server, bucket = frozen_seaweedfs
    where = f"url {server.url(bucket, mode)}" if mode == "url" else _keys_of(server, bucket, mode)
    timeouts = (
        "s3-connect-timeout 60\ns3-read-timeout 300\n"
        "s3-download-connect-timeout 1\ns3-download-read-timeout 1\ns3-download-max-attempts 2"
    )
    writer = _open(f"{where}\ncache-dir {tmp_path}/w\n{timeouts}")
    try:
        oid, tid = commit_blob(writer, "b", b"x" * 1000)
    finally:
        writer.close()
    reader = _open(f"{where}\ncache-dir {tmp_path}/r\n{timeouts}")  # opened (bucket checked) before the freeze
    try:
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(BackendConnectionError):
                reader.storage.loadBlob(oid, tid)
            elapsed = time.monotonic() - t0
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        assert elapsed < 30, elapsed  # the download bound is about 2 s; the upload client's is 300 s
        # the server is back: the same read now succeeds
        with open(reader.storage.loadBlob(oid, tid), "rb") as f:
            assert f.read() == b"x" * 1000
    finally:
        reader.close()
