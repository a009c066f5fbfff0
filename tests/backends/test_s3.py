"""S3 backend: URL parsing, capabilities and security, against a real SeaweedFS (which enforces them)."""

from __future__ import annotations

import base64
import io
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.servers.moto import MotoS3
from tests.servers.s3endpoint import created_backend
from tests.servers.seaweedfs import SeaweedFS
from unistore.backends.base import (
    CAPABILITIES,
    CHECKSUMS,
    METADATA,
    MULTIPART,
    OBJECT_LOCK,
    PRESIGN,
    SERVER_SIDE_COPY,
    SSE_C,
    STORAGE_CLASS,
    TAGS,
)
from unistore.backends.s3 import S3Backend, listing
from unistore.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendURLInvalid,
    CapabilityNotSupported,
    ConfigError,
    CredentialsError,
    IntegrityError,
    ObjectNotFound,
    PermissionDenied,
)
from unistore.url import open_backend

SSE_KEY = base64.b64encode(b"k" * 32).decode()
OTHER_SSE_KEY = base64.b64encode(b"z" * 32).decode()


@pytest.fixture
def sw_backend(seaweedfs: SeaweedFS) -> Iterator[S3Backend]:
    with created_backend(seaweedfs, "cap") as be:
        yield be


@pytest.fixture
def locked_backend(seaweedfs: SeaweedFS) -> Iterator[S3Backend]:
    """A backend on an object-lock bucket (the bucket is left behind: locked objects cannot go)."""
    be = S3Backend.from_url(seaweedfs.url(seaweedfs.new_bucket(object_lock=True), "lock"))
    be.create()
    with be:
        yield be


def http(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---------------------------------------------------------------------- URLs and options
def test_url_with_keys_endpoint_and_prefix() -> None:
    be = S3Backend.from_url("s3:AK%3Ax:se%2Fc%40ret@http://127.0.0.1:9000/bucket/some/prefix/")
    assert (be.config.access_key, be.bucket, be.prefix, be.config.endpoint_url) == (
        "AK:x",
        "bucket",
        "some/prefix",
        "http://127.0.0.1:9000",
    )
    assert be.config.secret is not None and be.config.secret.value == "se/c@ret"
    assert be.config.use_ssl is False and be.config.checksum == "when_supported"
    assert "se/c@ret" not in repr(be) and "se%2Fc%40ret" not in repr(be)


def test_url_profile_aws_and_b2() -> None:
    be = S3Backend.from_url("s3:myprofile@/bucket")
    cfg = be.config
    assert (cfg.profile, cfg.access_key, cfg.endpoint_url, be.prefix) == ("myprofile", None, None, "")
    assert cfg.use_ssl
    b2 = S3Backend.from_url("b2:kid:appkey@https://s3.us-west-004.backblazeb2.com/bkt/p")
    assert b2.config.b2 and b2.config.checksum == "when_required" and b2.config.use_ssl
    assert isinstance(open_backend("s3:/bucket/x", region="eu-central-1"), S3Backend)


def test_url_options() -> None:
    be = S3Backend.from_url(
        "s3:/b",
        region="eu-west-1",
        addressing_style="path",
        connect_timeout=3,
        read_timeout=7,
        max_attempts=5,
        workers=4,
        max_pool_connections=9,
        multipart_threshold=32 * 1024 * 1024,
        multipart_chunksize=16 * 1024 * 1024,
        storage_class="STANDARD_IA",
        checksum="when_required",
    )
    cfg = be.config
    assert (cfg.region, cfg.addressing_style, cfg.connect_timeout, cfg.read_timeout) == ("eu-west-1", "path", 3.0, 7.0)
    assert (cfg.max_attempts, be.bulk_workers, cfg.max_pool_connections) == (5, 4, 9)
    assert (cfg.multipart_threshold, cfg.multipart_chunksize, cfg.storage_class) == (32 << 20, 16 << 20, "STANDARD_IA")


@pytest.mark.parametrize("url", ["s3:", "s3:bucket", "s3:ftp://host/bucket", "s3:k:s@http://h", "x3:/b"])
def test_invalid_urls(url: str) -> None:
    with pytest.raises(BackendURLInvalid):
        S3Backend.from_url(url)


@pytest.mark.parametrize(
    "options",
    [
        {"addressing_style": "sideways"},
        {"checksum": "never"},
        {"engine": "curl"},
        {"multipart_chunksize": 1024},
        {"max_attempts": 0},
        {"sse_customer_key": "too short"},
        {"access_key": "only-key"},
    ],
)
def test_invalid_options(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        S3Backend("bucket", **options)


def test_sse_c_over_plain_http_needs_opt_in() -> None:
    with pytest.raises(ConfigError, match="plain http"):
        S3Backend.from_url("s3:k:s@http://127.0.0.1:1/b", sse_customer_key=SSE_KEY)
    be = S3Backend.from_url("s3:k:s@http://127.0.0.1:1/b", sse_customer_key=SSE_KEY, allow_insecure_sse_c=True)
    assert SSE_KEY not in repr(be) and SSE_KEY not in repr(vars(be))
    assert S3Backend.from_url("s3:k:s@https://h/b", sse_customer_key=SSE_KEY).config.use_ssl


def test_capabilities_are_decided_per_instance(seaweedfs: SeaweedFS) -> None:
    """What each instance claims is what it can do: asking for more raises CapabilityNotSupported."""
    plain_bucket, locked_bucket = seaweedfs.new_bucket(), seaweedfs.new_bucket(object_lock=True)
    always = {TAGS, MULTIPART, SERVER_SIDE_COPY, STORAGE_CLASS, METADATA, CHECKSUMS}
    plain = S3Backend.from_url(seaweedfs.url(plain_bucket, "p"))
    locked = S3Backend.from_url(seaweedfs.url(locked_bucket, "p"))
    keyed = S3Backend.from_url(seaweedfs.url(plain_bucket, "k"), sse_customer_key=SSE_KEY, allow_insecure_sse_c=True)
    for be in (plain, locked, keyed):
        be.create()
        be.open()
    try:
        assert plain.capabilities == frozenset(always | {PRESIGN})  # no key, no object lock on this bucket
        assert locked.capabilities == frozenset(always | {PRESIGN, OBJECT_LOCK})
        assert keyed.capabilities == frozenset(always | {SSE_C})  # presign refused, not claimed, under SSE-C
        plain.store("x", b"1")
        for call in (lambda: plain.set_legal_hold("x", True), lambda: plain.get_retention("x")):
            with pytest.raises(CapabilityNotSupported) as e:
                call()
            assert e.value.capability == OBJECT_LOCK
        with pytest.raises(CapabilityNotSupported) as e:
            keyed.presign("x")
        assert e.value.capability == PRESIGN
        for be in (plain, locked, keyed):
            for cap in CAPABILITIES:
                assert be.supports(cap) == (cap in be.capabilities)
    finally:
        for be in (plain, locked, keyed):
            be.close()


# ---------------------------------------------------------------------- lifecycle and credentials
def test_wrong_secret_is_credentials_error(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.new_bucket()
    be = S3Backend.from_url(f"s3:{seaweedfs.access_key}:wrong-secret-xyz@{seaweedfs.endpoint}/{bucket}/p")
    with pytest.raises(CredentialsError) as e:
        be.create()
    assert "wrong-secret-xyz" not in str(e.value)


def test_open_missing_and_create_twice(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.new_bucket()
    be = S3Backend.from_url(seaweedfs.url(bucket, "never"))
    with pytest.raises(BackendDoesNotExist):
        be.open()
    with pytest.raises(BackendDoesNotExist):
        be.destroy()
    be.create()
    with be:
        be.store("x", b"1")
    with pytest.raises(BackendAlreadyExists):
        be.create()
    be.destroy()
    with pytest.raises(BackendDoesNotExist):
        be.open()


def test_create_makes_missing_bucket_and_destroy_removes_it(seaweedfs: SeaweedFS) -> None:
    bucket = f"fresh-{os.urandom(6).hex()}"
    be = S3Backend.from_url(seaweedfs.url(bucket))
    be.create()
    with be:
        be.store("k", b"v")
        assert be.load("k") == b"v"
    be.destroy()
    names = [b["Name"] for b in seaweedfs.client().list_buckets()["Buckets"]]
    assert bucket not in names


def test_boto3_credential_chain_from_environment(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweedfs.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweedfs.secret_key)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    bucket = seaweedfs.new_bucket()
    for engine in ("obstore", "boto3"):
        be = S3Backend.from_url(f"s3:{seaweedfs.endpoint}/{bucket}/{engine}", engine=engine)
        be.create()
        with be:
            be.store("env", b"from env")
            assert be.load("env") == b"from env"
        be.destroy()


# ---------------------------------------------------------------------- listing and batches
def test_pagination_past_1000_keys(sw_backend: S3Backend) -> None:
    items = {f"many/{i:05d}": b"%d" % i for i in range(1105)}
    sw_backend.store_many(items)
    sw_backend.store("many/sub/deep", b"d")
    listed = list(sw_backend.list("many"))
    assert len(listed) == 1106 and listed[-1].name == "sub" and listed[-1].directory
    assert [i.name for i in listed[:-1]] == sorted(k.split("/", 1)[1] for k in items)
    rec = list(sw_backend.list_recursive("many"))
    assert len(rec) == 1106 and rec[-1].name == "sub/deep"
    assert listing.delete_prefix(sw_backend.client, sw_backend.bucket, sw_backend._root + "many/") == 1106
    assert [i for i in sw_backend.list("many") if not i.directory] == []  # SeaweedFS keeps empty folders


def test_list_recursive_is_flat(sw_backend: S3Backend) -> None:
    for i in range(20):
        sw_backend.store(f"nest/{i:02d}/{i:02d}/item{i}", b"x")
    calls: list[str] = []
    original = sw_backend._client.list_objects_v2

    def counting(**kwargs: Any) -> Any:
        calls.append(kwargs.get("Delimiter", ""))
        return original(**kwargs)

    sw_backend._client.list_objects_v2 = counting
    try:
        rec = list(sw_backend.list_recursive("nest"))
    finally:
        sw_backend._client.list_objects_v2 = original
    assert len(rec) == 20 and rec[0].name == "00/00/item0"
    assert calls == [""]  # one request, no delimiter, no request per directory


def test_engines_share_one_layout(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.new_bucket()
    a = S3Backend.from_url(seaweedfs.url(bucket, "shared"), engine="obstore")
    b = S3Backend.from_url(seaweedfs.url(bucket, "shared"), engine="boto3")
    a.create()
    with a, b:
        for name in ["plain", "with space", "pct%20x", "uni-ü", "q?x#y", "d/e/f"]:
            a.store(name, name.encode())
            assert b.load(name) == name.encode()
            assert seaweedfs.client().get_object(Bucket=bucket, Key=f"shared/{name}")["Body"].read() == name.encode()
    a.destroy()


# ---------------------------------------------------------------------- presigned URLs
def test_presigned_get_and_put(sw_backend: S3Backend) -> None:
    sw_backend.store("pre/get", b"presigned body")
    url = sw_backend.presign("pre/get", expires=300)
    assert http("GET", url) == (200, b"presigned body")
    put_url = sw_backend.presign("pre/put", method="PUT", expires=300)
    status, _ = http("PUT", put_url, b"uploaded")
    assert status == 200
    assert sw_backend.load("pre/put") == b"uploaded"
    with pytest.raises(ConfigError):
        sw_backend.presign("x", method="DELETE")


def test_presigned_tampered_and_expired_refused(sw_backend: S3Backend) -> None:
    sw_backend.store("pre/secret", b"not for you")
    url = sw_backend.presign("pre/secret", expires=300)
    sig_at = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
    flipped = "0" if url[sig_at] != "0" else "1"
    tampered = url[:sig_at] + flipped + url[sig_at + 1 :]
    assert http("GET", tampered)[0] == 403
    other_key = url.replace("pre/secret", "pre/other")
    assert http("GET", other_key)[0] == 403
    short = sw_backend.presign("pre/secret", expires=1)
    time.sleep(2.5)
    status, body = http("GET", short)
    assert status == 403 and b"not for you" not in body


# ---------------------------------------------------------------------- tags
def test_tags_put_get_merge_delete_find(sw_backend: S3Backend) -> None:
    for i in range(6):
        sw_backend.store(f"t/{i}", b"x")
    sw_backend.put_tags("t/0", {"color": "red", "size": "s"})
    sw_backend.put_tags("t/3", {"color": "blue"})
    sw_backend.put_tags("t/5", {"color": "red"})
    assert sw_backend.get_tags("t/0") == {"color": "red", "size": "s"}
    merged = sw_backend.update_tags("t/0", {"size": "m", "owner": "me"})
    assert merged == {"color": "red", "size": "m", "owner": "me"} == sw_backend.get_tags("t/0")
    assert sw_backend.update_tags("t/0", {"size": None}) == {"color": "red", "owner": "me"}  # None removes
    sw_backend.put_tags("t/3", {"shape": "round"})  # put replaces
    assert sw_backend.get_tags("t/3") == {"shape": "round"}
    assert sorted(sw_backend.find_by_tag("color", "red", prefix="t")) == ["t/0", "t/5"]
    assert sorted(sw_backend.find_by_tag("shape")) == ["t/3"]
    sw_backend.delete_tags("t/0")
    assert sw_backend.get_tags("t/0") == {}
    with pytest.raises(ObjectNotFound):
        sw_backend.get_tags("t/missing")


# ---------------------------------------------------------------------- object lock
def test_legal_hold_blocks_deletion(locked_backend: S3Backend) -> None:
    be = locked_backend
    be.store("held", b"evidence")
    assert be.get_legal_hold("held") is False
    be.set_legal_hold("held", True)
    assert be.get_legal_hold("held") is True
    with pytest.raises(PermissionDenied):
        be.delete("held")
    assert be.load("held") == b"evidence"
    be.set_legal_hold("held", False)
    assert be.get_legal_hold("held") is False
    be.delete("held")
    assert not be.info("held").exists


def test_retention_governance_and_compliance(locked_backend: S3Backend, seaweedfs: SeaweedFS) -> None:
    be = locked_backend
    until = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    be.store("gov", b"g")
    assert be.get_retention("gov") is None
    be.set_retention("gov", "GOVERNANCE", until)
    mode, got = be.get_retention("gov")  # type: ignore[misc]
    assert mode == "GOVERNANCE" and abs((got - until).total_seconds()) < 2
    with pytest.raises(PermissionDenied):
        be.delete("gov")
    bypass = S3Backend.from_url(seaweedfs.url(be.bucket, "lock"), bypass_governance=True)
    with bypass:
        bypass.delete("gov")
        assert not bypass.info("gov").exists
    be.store("comp", b"c")
    be.set_retention("comp", "COMPLIANCE", until)
    assert be.get_retention("comp")[0] == "COMPLIANCE"  # type: ignore[index]
    with pytest.raises(PermissionDenied):
        be.delete("comp")
    with pytest.raises(ConfigError):
        be.set_retention("comp", "FOREVER", until)


# ---------------------------------------------------------------------- SSE-C
def test_sse_c_roundtrip_and_enforced(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.new_bucket()
    url = seaweedfs.url(bucket, "enc")
    for engine in ("obstore", "boto3"):
        be = S3Backend.from_url(url, sse_customer_key=SSE_KEY, allow_insecure_sse_c=True, engine=engine)
        if engine == "obstore":
            be.create()
        with be:
            be.store(f"{engine}/small", b"secret data")
            be.store_file(f"{engine}/big", io.BytesIO(os.urandom(20 * 1024 * 1024)))
            assert be.load(f"{engine}/small") == b"secret data"
            assert be.load(f"{engine}/small", offset=-4) == b"data"
            assert be.info(f"{engine}/big").size == 20 * 1024 * 1024
            be.copy(f"{engine}/small", f"{engine}/copy")
            assert be.load(f"{engine}/copy") == b"secret data"
    raw = seaweedfs.client()
    with pytest.raises(Exception) as e:  # the server refuses a read without the key
        raw.get_object(Bucket=bucket, Key="enc/obstore/small")
    assert "secret data" not in str(e.value)
    for engine in ("obstore", "boto3"):
        nokey = S3Backend.from_url(url, engine=engine)
        wrong = S3Backend.from_url(url, sse_customer_key=OTHER_SSE_KEY, allow_insecure_sse_c=True, engine=engine)
        with nokey, wrong:
            for be, error in ((nokey, IntegrityError), (wrong, PermissionDenied)):
                with pytest.raises(error) as err:
                    be.load("obstore/small")
                assert SSE_KEY not in str(err.value) and OTHER_SSE_KEY not in str(err.value)


# ---------------------------------------------------------------------- server-side copy, storage class
def test_server_side_copy_and_move(sw_backend: S3Backend) -> None:
    sw_backend.store("c/a", b"A" * 1000)
    sent: list[str] = []
    original = sw_backend._client.copy_object

    def spy(**kwargs: Any) -> Any:
        sent.append(kwargs["Key"])
        return original(**kwargs)

    sw_backend._client.copy_object = spy
    try:
        sw_backend.copy("c/a", "c/b")
        sw_backend.move("c/b", "c/d")
    finally:
        sw_backend._client.copy_object = original
    assert sent == ["cap/c/b", "cap/c/d"]
    assert sw_backend.load("c/d") == b"A" * 1000 and not sw_backend.info("c/b").exists


def test_storage_class(seaweedfs: SeaweedFS) -> None:
    bucket = seaweedfs.new_bucket()
    be = S3Backend.from_url(seaweedfs.url(bucket, "sc"), storage_class="STANDARD_IA")
    be.create()
    with be:
        be.store("ia", b"cold")
        assert be.get_storage_class("ia") == "STANDARD_IA"
        be.set_storage_class("ia", "STANDARD")
        assert be.get_storage_class("ia") == "STANDARD"
        assert be.load("ia") == b"cold"
    be.destroy()


# ---------------------------------------------------------------------- multipart primitives
def test_client_side_multipart_upload(sw_backend: S3Backend) -> None:
    part1 = os.urandom(5 * 1024 * 1024)
    part2 = b"tail bytes"
    uid = sw_backend.create_multipart("mp/obj")
    pending = sw_backend.list_multipart_uploads("mp/")
    assert [(p["name"], p["upload_id"]) for p in pending] == [("mp/obj", uid)]
    for number, data in ((1, part1), (2, part2)):
        status, _ = http("PUT", sw_backend.presign_part("mp/obj", uid, number), data)
        assert status == 200
    parts = sw_backend.list_parts("mp/obj", uid)
    assert [(p["part_number"], p["size"]) for p in parts] == [(1, len(part1)), (2, len(part2))]
    assert not sw_backend.info("mp/obj").exists  # nothing visible before completion
    sw_backend.complete_multipart("mp/obj", uid)
    assert sw_backend.load("mp/obj") == part1 + part2
    assert sw_backend.list_multipart_uploads("mp/") == []
    uid2 = sw_backend.create_multipart("mp/aborted")
    status, _ = http("PUT", sw_backend.presign_part("mp/aborted", uid2, 1), b"x" * 100)
    assert status == 200
    sw_backend.abort_multipart("mp/aborted", uid2)
    assert sw_backend.list_multipart_uploads("mp/") == []
    assert not sw_backend.info("mp/aborted").exists
    with pytest.raises(ConfigError):
        sw_backend.presign_part("mp/obj", uid, 0)


# ---------------------------------------------------------------------- secrets and logging
class _Everything(logging.Handler):
    """Keeps every record, formatted as a handler would write it (message and traceback)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))
        self.lines: list[str] = []
        self.names: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.names.add(record.name)


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_no_secret_in_any_log_record(seaweedfs: SeaweedFS, engine: str) -> None:
    root = logging.getLogger()
    handler, level = _Everything(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        bucket = seaweedfs.new_bucket()
        be = S3Backend.from_url(
            seaweedfs.url(bucket, "logs"),
            sse_customer_key=SSE_KEY,
            allow_insecure_sse_c=True,
            engine=engine,
            multipart_threshold=5 * 1024 * 1024,
            multipart_chunksize=5 * 1024 * 1024,
        )
        be.create()
        with be:
            be.store("x", b"12345")
            assert be.load("x") == b"12345"
            be.copy("x", "y")
            be.move("y", "z")
            be.store_file("big", io.BytesIO(os.urandom(11 * 1024 * 1024)))  # multipart, parts on threads
            assert be.load("big", offset=-3, size=3) and be.stat("big").size == 11 * 1024 * 1024
            with pytest.raises(ObjectNotFound) as e:
                be.load("missing")
            assert seaweedfs.secret_key not in str(e.value)
        be.destroy()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    text = "\n".join(handler.lines)
    assert "customer-key" in text.lower() or engine == "obstore"  # botocore did log the SSE-C headers...
    raw = base64.b64decode(SSE_KEY)
    for secret in (seaweedfs.secret_key, SSE_KEY, raw.decode("latin-1"), repr(raw)[2:-1]):
        assert secret not in text  # ...scrubbed, from every logger (s3transfer.tasks and friends included)


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
@pytest.mark.parametrize("source", ["environment", "profile"])
def test_sse_c_key_never_goes_to_a_plain_http_endpoint_from_any_source(
    seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine: str, source: str
) -> None:
    bucket = seaweedfs.new_bucket()
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    if source == "environment":
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweedfs.endpoint)  # http://
        url = f"s3:{seaweedfs.access_key}:{seaweedfs.secret_key}@/{bucket}/e"
    else:
        (tmp_path / "config").write_text(f"[profile weed]\nendpoint_url = {seaweedfs.endpoint}\nregion = us-east-1\n")
        (tmp_path / "credentials").write_text(
            f"[weed]\naws_access_key_id = {seaweedfs.access_key}\naws_secret_access_key = {seaweedfs.secret_key}\n"
        )
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
        url = f"s3:weed@/{bucket}/e"
    keyed = S3Backend.from_url(url, sse_customer_key=SSE_KEY, engine=engine)
    assert keyed.config.use_ssl  # nothing in the URL or the options says http...
    for call in (keyed.create, keyed.open):
        with pytest.raises(ConfigError, match="plain http"):  # ...but the endpoint boto3 resolved does
            call()
    # with the explicit opt-in both engines use that endpoint (obstore included) and encrypt
    allowed = S3Backend.from_url(url, sse_customer_key=SSE_KEY, allow_insecure_sse_c=True, engine=engine)
    allowed.create()
    with allowed:
        allowed.store("k", b"encrypted")
        assert allowed.load("k") == b"encrypted"
    with pytest.raises(Exception) as e:  # the server refuses a read without the key: it was encrypted
        seaweedfs.client().get_object(Bucket=bucket, Key="e/k")
    assert "encrypted" not in str(e.value)


def test_moto_fixture_shape(moto_s3: MotoS3) -> None:
    bucket = moto_s3.new_bucket()
    be = S3Backend.from_url(moto_s3.url(bucket, "m"))
    be.create()
    with be:
        be.store("a", b"b")
        assert moto_s3.client().get_object(Bucket=bucket, Key="m/a")["Body"].read() == b"b"
    be.destroy()


# ---------------------------------------------------------------------- through the Store
def test_store_with_nested_namespace_on_s3(seaweedfs: SeaweedFS) -> None:
    from unistore import Store

    url = seaweedfs.url(seaweedfs.new_bucket(), "repo")
    store = Store(url, config={"": {"levels": [0]}, "data/": {"levels": [2]}})
    store.create()
    with store:
        keys = [f"data/{i:064x}" for i in range(30)]
        store.store_many((k, k.encode()) for k in keys)
        store.store("config", b"c")
        assert store.load(keys[7]) == keys[7].encode()
        assert sorted(i.name for i in store.list("data")) == sorted(k.split("/")[1] for k in keys)
        assert store.load("config") == b"c"
        store.delete(keys[0])
        assert len(list(store.list("data"))) == 29
    store.destroy()


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_large_value_goes_multipart(seaweedfs: SeaweedFS, engine: str) -> None:
    bucket = seaweedfs.new_bucket()
    be = S3Backend.from_url(
        seaweedfs.url(bucket, "mp"),
        engine=engine,
        multipart_threshold=6 * 1024 * 1024,
        multipart_chunksize=5 * 1024 * 1024,
    )
    be.create()
    value = os.urandom(13 * 1024 * 1024)
    with be:
        be.store("large", memoryview(value))
        be.store("small", value[:1000])
        assert be.load("large") == value
        assert be.load("large", offset=5 * 1024 * 1024 - 3, size=6) == value[5 * 1024 * 1024 - 3 : 5 * 1024 * 1024 + 3]
    raw = seaweedfs.client()
    # a multipart upload's ETag ends in -<number of parts>; a single PUT's does not
    assert raw.head_object(Bucket=bucket, Key="mp/large")["ETag"].strip('"').endswith("-3")
    assert "-" not in raw.head_object(Bucket=bucket, Key="mp/small")["ETag"]
    be.destroy()
