"""The capability API on S3 (SeaweedFS): metadata, checksums, presign with response headers, tag
merge and search, retention removal, multipart with metadata, bucket CORS."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.servers.seaweedfs import SeaweedFS
from unistore.backends.base import StoreMeta
from unistore.backends.s3 import S3Backend
from unistore.errors import ObjectNotFound, PermissionDenied

MiB = 1024 * 1024
SSE_KEY = base64.b64encode(b"c" * 32).decode()


@pytest.fixture
def be(seaweedfs: SeaweedFS) -> Iterator[S3Backend]:
    backend = S3Backend.from_url(
        seaweedfs.url(seaweedfs.new_bucket(), "caps"), multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB
    )
    backend.create()
    with backend:
        yield backend
    backend.destroy()


META = StoreMeta(
    content_type="text/csv",
    content_disposition='attachment; filename="data.csv"',
    metadata={"owner": "alice", "record": "42"},
    storage_class="STANDARD_IA",
)


@pytest.mark.parametrize("how", ["bytes", "large bytes", "file", "large file"])
def test_store_with_meta_and_stat(be: S3Backend, how: str) -> None:
    value = os.urandom(7 * MiB if how.startswith("large") else 1000)
    data = value if how.endswith("bytes") else io.BytesIO(value)
    be.store_with_meta("m", data, META)
    meta = be.stat("m")
    assert (meta.name, meta.size) == ("m", len(value))
    assert (meta.content_type, meta.content_disposition) == (META.content_type, META.content_disposition)
    assert meta.metadata == {"owner": "alice", "record": "42"}
    assert meta.storage_class == "STANDARD_IA"
    if how.startswith("large"):  # multipart: the ETag is <md5 of the part md5s>-<parts>, no md5 of the value
        parts = [value[i : i + 5 * MiB] for i in range(0, len(value), 5 * MiB)]
        digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        assert meta.etag == f"{digest}-{len(parts)}" and meta.checksums == {}
    else:
        assert meta.etag == hashlib.md5(value).hexdigest() == meta.checksums["md5"]
    assert be.load("m") == value


def test_stat_of_plain_items_directories_and_missing(be: S3Backend) -> None:
    be.store("p/x", b"plain")
    meta = be.stat("p/x")
    assert meta.checksums == {"md5": hashlib.md5(b"plain").hexdigest()} and meta.metadata == {}
    assert not meta.etag.startswith('"')  # type: ignore[union-attr]
    for name in ("p", "missing"):
        with pytest.raises(ObjectNotFound):
            be.stat(name)


def test_no_md5_claimed_under_sse_c(seaweedfs: SeaweedFS) -> None:
    url = seaweedfs.url(seaweedfs.new_bucket(), "enc")
    keyed = S3Backend.from_url(url, sse_customer_key=SSE_KEY, allow_insecure_sse_c=True)
    keyed.create()
    with keyed:
        keyed.store("e", b"secret")
        assert keyed.stat("e").checksums == {}  # an SSE-C ETag is no md5 of the plaintext
        keyed.store_with_meta("typed", b"x", StoreMeta(content_type="text/plain"))
        assert keyed.stat("typed").content_type == "text/plain"


def test_presign_with_response_headers(be: S3Backend) -> None:
    be.store("doc", b"%PDF-1.7 ...")
    url = be.presign("doc", content_type="application/pdf", content_disposition='inline; filename="a.pdf"')
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.read() == b"%PDF-1.7 ..."
        assert resp.headers["Content-Type"] == "application/pdf"
        assert resp.headers["Content-Disposition"] == 'inline; filename="a.pdf"'
    put = be.presign("up", method="PUT", content_type="image/png")
    req = urllib.request.Request(put, data=b"png", method="PUT", headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200
    assert be.stat("up").content_type == "image/png"


def test_update_tags_and_find_by_tag(be: S3Backend) -> None:
    for i in range(40):
        be.store(f"files/{i:02d}", b"x")
        be.put_tags(f"files/{i:02d}", {"state": "done" if i % 3 else "new", "n": str(i)})
    be.store("elsewhere", b"y")
    be.put_tags("elsewhere", {"state": "new"})
    assert be.update_tags("files/00", {"state": "done", "extra": "1", "n": None}) == {"state": "done", "extra": "1"}
    assert be.get_tags("files/00") == {"state": "done", "extra": "1"}
    new = sorted(be.find_by_tag("state", "new", prefix="files"))
    assert new == [f"files/{i:02d}" for i in range(3, 40, 3)]
    assert sorted(be.find_by_tag("extra")) == ["files/00"]
    assert sorted(be.find_by_tag("state", "new")) == sorted([*new, "elsewhere"])


def test_clear_retention(seaweedfs: SeaweedFS) -> None:
    be = S3Backend.from_url(seaweedfs.url(seaweedfs.new_bucket(object_lock=True), "lock"))
    be.create()
    with be:
        until = datetime.now(UTC) + timedelta(days=1)
        be.store("gov", b"g")
        be.set_retention("gov", "GOVERNANCE", until)
        with pytest.raises(PermissionDenied):
            be.delete("gov")
        be.clear_retention("gov")
        assert be.get_retention("gov") is None
        be.delete("gov")
        assert not be.info("gov").exists
        be.store("comp", b"c")
        be.set_retention("comp", "COMPLIANCE", until)
        with pytest.raises(PermissionDenied):
            be.clear_retention("comp")
        assert be.get_retention("comp")[0] == "COMPLIANCE"  # type: ignore[index]


def test_multipart_with_meta(be: S3Backend) -> None:
    uid = be.create_multipart("mp", meta=StoreMeta(content_type="video/mp4", metadata={"k": "v"}))
    etag = be.upload_part("mp", uid, 1, b"v" * 100)
    assert be.complete_multipart("mp", uid, [{"part_number": 1, "etag": etag}]).endswith("-1")
    meta = be.stat("mp")
    assert (meta.content_type, meta.metadata, meta.size) == ("video/mp4", {"k": "v"}, 100)


def test_set_cors(be: S3Backend, seaweedfs: SeaweedFS) -> None:
    rules = [
        {
            "AllowedOrigins": ["https://app.example"],
            "AllowedMethods": ["GET", "PUT"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": 600,
        }
    ]
    be.set_cors(rules)
    got = seaweedfs.client().get_bucket_cors(Bucket=be.bucket)["CORSRules"]
    assert got[0]["AllowedOrigins"] == ["https://app.example"] and got[0]["ExposeHeaders"] == ["ETag"]
    assert be.get_cors()[0]["AllowedMethods"] == ["GET", "PUT"]
    be.set_cors([])
    assert be.get_cors() == []
