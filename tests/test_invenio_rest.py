"""A real invenio-files-rest app (SQLite) served over HTTP, a real Celery worker, SeaweedFS and a
``file://`` location: REST upload, download, range, copy, delete and multipart; direct multipart
uploads through presigned URLs with a plain HTTP client, abort, and the cleanup task; InvenioRDM's
multipart transfer calls. One app, one worker and one server for the whole module."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from math import ceil
from typing import Any

import pytest

pytest.importorskip("invenio_files_rest")

import requests  # noqa: E402

from tests.servers.invenio_app import serve_in_thread  # noqa: E402
from tests.servers.invenio_site import Site, make_site  # noqa: E402
from tests.servers.invenio_worker import start_worker  # noqa: E402
from unistore.adapters.invenio import storage_factory  # noqa: E402
from unistore.errors import ObjectNotFound  # noqa: E402

MiB = 1024 * 1024
HTTP = requests.Session()


@dataclass
class Env:
    site: Site
    base: str

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, seaweedfs: Any) -> Iterator[Env]:
    site = make_site(tmp_path_factory.mktemp("invenio-rest"), seaweedfs)
    with start_worker(site.config_path, site.workdir / "worker.log"), serve_in_thread(site.app) as base:
        yield Env(site, base)


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait for the worker to have done something (not a timing assertion: a generous bound)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker did not {what} within {timeout}s")
        time.sleep(0.2)


def storage_of(env: Env, bucket_id: str, key: str) -> Any:
    from invenio_files_rest.models import ObjectVersion

    with env.site.app.app_context():
        obj = ObjectVersion.get(bucket_id, key)
        return obj.file.storage(), obj.file.uri, obj.file.checksum, str(obj.file_id), str(obj.version_id)


def stored(storage: Any) -> bool:
    try:
        storage.backend.stat(storage.name)
        return True
    except ObjectNotFound:
        return False


@pytest.mark.parametrize("location", ["s3", "url", "local"])
def test_rest_upload_download_range(env: Env, location: str) -> None:
    bucket = env.site.new_bucket(location)
    data = os.urandom(3 * MiB + 17)
    r = HTTP.put(env.url(f"/files/{bucket}/dir/data.bin"), data=data, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["checksum"] == md5(data) and r.json()["size"] == len(data)
    first = HTTP.get(env.url(f"/files/{bucket}/dir/data.bin"), allow_redirects=False, timeout=60)
    if location == "local":
        assert first.status_code == 200 and first.content == data  # streamed by the app
        assert first.headers["Accept-Ranges"] == "bytes"
        etag = first.headers["ETag"]
        assert HTTP.get(first.url, headers={"If-None-Match": etag}, timeout=30).status_code == 304
    else:
        assert first.status_code == 302  # straight from S3, the app sends no file bytes
        assert first.headers["Location"].startswith(env.site.config["S3_ENDPOINT_URL"])
    r = HTTP.get(env.url(f"/files/{bucket}/dir/data.bin"), headers={"Range": "bytes=1000-1999"}, timeout=60)
    assert r.status_code == 206 and r.content == data[1000:2000]
    r = HTTP.get(env.url(f"/files/{bucket}/dir/data.bin"), headers={"Range": "bytes=-10"}, timeout=60)
    assert r.status_code == 206 and r.content == data[-10:]
    assert HTTP.get(env.url(f"/files/{bucket}/dir/data.bin"), timeout=60).content == data
    storage, uri, checksum, _, _ = storage_of(env, bucket, "dir/data.bin")
    if location == "s3":
        assert uri.startswith(env.site.locations["s3"] + "/")  # invenio-s3's URI layout
        assert storage.name.startswith("files/")
    assert checksum == md5(data)


@pytest.mark.parametrize("location", ["s3", "local"])
def test_rest_delete(env: Env, location: str) -> None:
    bucket = env.site.new_bucket(location)
    assert HTTP.put(env.url(f"/files/{bucket}/a.txt"), data=b"first", timeout=30).status_code == 200
    storage, _, _, _, version = storage_of(env, bucket, "a.txt")
    # a delete marker keeps the version and its data
    assert HTTP.delete(env.url(f"/files/{bucket}/a.txt"), timeout=30).status_code == 204
    assert HTTP.get(env.url(f"/files/{bucket}/a.txt"), timeout=30).status_code == 404
    assert stored(storage)
    # deleting the version for good deletes the data too (invenio-s3 leaves the object behind)
    r = HTTP.delete(env.url(f"/files/{bucket}/a.txt?versionId={version}"), timeout=30)
    assert r.status_code == 204
    wait_for(lambda: not stored(storage), "delete the data")


@pytest.mark.parametrize("location", ["s3", "local"])
def test_rest_multipart(env: Env, location: str) -> None:
    """invenio-files-rest's own multipart API: parts through the app, merged by the worker."""
    bucket = env.site.new_bucket(location)
    part = 5 * MiB
    data = os.urandom(2 * part + 12345)
    r = HTTP.post(env.url(f"/files/{bucket}/big.bin?uploads&size={len(data)}&partSize={part}"), timeout=30)
    assert r.status_code == 200, r.text
    upload_id = r.json()["id"]
    for n in reversed(range(3)):
        chunk = data[n * part : (n + 1) * part]
        r = HTTP.put(env.url(f"/files/{bucket}/big.bin?uploadId={upload_id}&partNumber={n}"), data=chunk, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["checksum"] == md5(chunk)
    storage = storage_factory_in(env, bucket, upload_id)
    if location == "s3":
        assert not stored(storage)  # no zero-filled object, no rewrite: the parts are S3 parts
    r = HTTP.post(env.url(f"/files/{bucket}/big.bin?uploadId={upload_id}"), timeout=120)
    assert r.status_code == 200, r.text
    assert HTTP.get(env.url(f"/files/{bucket}/big.bin"), timeout=60).content == data
    assert storage_of(env, bucket, "big.bin")[2] == md5(data)


def storage_factory_in(env: Env, bucket_id: str, upload_id: str) -> Any:
    from invenio_files_rest.models import MultipartObject

    with env.site.app.app_context():
        mp = MultipartObject.query.filter_by(upload_id=upload_id).one()
        return mp.file.storage()


def test_migrate_file_copies(env: Env) -> None:
    """The worker's migrate_file: server-side within the bucket, streamed to the local location."""
    from invenio_files_rest.models import ObjectVersion
    from invenio_files_rest.tasks import migrate_file

    bucket = env.site.new_bucket("s3")
    data = os.urandom(100_000)
    assert HTTP.put(env.url(f"/files/{bucket}/m.bin"), data=data, timeout=30).status_code == 200
    for target in ("archive", "local"):
        _, uri, _, file_id, _ = storage_of(env, bucket, "m.bin")
        with env.site.app.app_context():
            migrate_file.delay(file_id, target)

        def moved(target: str = target) -> bool:
            with env.site.app.app_context():
                obj = ObjectVersion.get(bucket, "m.bin")
                return bool(obj.file.uri.startswith(env.site.locations[target]))

        wait_for(moved, f"migrate to {target}")
        storage, uri2, checksum, _, _ = storage_of(env, bucket, "m.bin")
        assert checksum == md5(data) and uri2 != uri
        assert HTTP.get(env.url(f"/files/{bucket}/m.bin"), timeout=60).content == data


# ---------------------------------------------------------------------- direct multipart uploads
def start_direct(env: Env, bucket: str, key: str, size: int, **extra: Any) -> dict[str, Any]:
    r = HTTP.post(
        env.url(f"/multipart/{bucket}/files/?multipart=True"),
        json={"key": key, "size": size, "type": "application/x-test", **extra},
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def put_parts(env: Env, bucket: str, key: str, upload_id: str, chunks: dict[int, bytes]) -> dict[int, str]:
    numbers = ",".join(str(n) for n in chunks)
    r = HTTP.get(env.url(f"/multipart/{bucket}/files/{key}/{upload_id}/{numbers}/presigned"), timeout=30)
    assert r.status_code == 200, r.text
    urls = r.json()["presignedUrls"]
    etags = {}
    for n, chunk in chunks.items():
        up = requests.put(urls[str(n)], data=chunk, timeout=60)  # straight to S3, no credentials
        assert up.status_code == 200, up.text
        etags[n] = up.headers["ETag"]
    return etags


def test_direct_multipart_upload(env: Env) -> None:
    bucket = env.site.new_bucket("s3")
    part = 5 * MiB
    data = os.urandom(2 * part + 999)
    up = start_direct(env, bucket, "dir/direct.bin", len(data), partSize=part)
    assert up["parts"] == 3 and up["partSize"] == part and up["key"] == "dir/direct.bin"
    upload_id = up["uploadId"]
    base = f"/multipart/{bucket}/files/dir/direct.bin/{upload_id}"
    # a single part number works too, answered in the same shape
    one = HTTP.get(env.url(f"{base}/1/presigned"), timeout=30).json()["presignedUrls"]
    assert list(one) == ["1"]
    etags = put_parts(
        env, bucket, "dir/direct.bin", upload_id, {n + 1: data[n * part : (n + 1) * part] for n in range(3)}
    )
    listed = HTTP.get(env.url(f"{base}/parts"), timeout=30).json()
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (1, etags[1], part),
        (2, etags[2], part),
        (3, etags[3], 999),
    ]
    # the object is not downloadable before completion
    assert HTTP.get(env.url(f"/files/{bucket}/dir/direct.bin"), timeout=30).status_code != 200
    # a wrong ETag list fails cleanly and leaves the upload as it was
    wrong = [
        {"PartNumber": 1, "ETag": etags[2]},
        {"PartNumber": 2, "ETag": etags[2]},
        {"PartNumber": 3, "ETag": etags[3]},
    ]
    r = HTTP.post(env.url(f"{base}/complete"), json={"parts": wrong}, timeout=30)
    assert r.status_code == 400 and "part 1" in r.json()["message"]
    r = HTTP.post(env.url(f"{base}/complete"), json={"parts": wrong[1:]}, timeout=30)
    assert r.status_code == 400
    # permissions are invenio-files-rest's
    denied = HTTP.post(env.url(f"{base}/complete"), json={}, headers={"X-Test-Deny": "bucket-update"}, timeout=30)
    assert denied.status_code in (401, 403)
    good = [{"PartNumber": n, "ETag": etags[n]} for n in (1, 2, 3)]
    r = HTTP.post(env.url(f"{base}/complete"), json={"parts": good}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = hashlib.md5(b"".join(hashlib.md5(data[n * part : (n + 1) * part]).digest() for n in range(3)))
    assert body["checksum"] == f"etag:{expected.hexdigest()}-3"
    assert body["size"] == len(data)
    got = HTTP.get(env.url(f"/files/{bucket}/dir/direct.bin"), timeout=60)
    assert got.status_code == 200 and got.content == data
    assert HTTP.get(body["location"], timeout=60).content == data
    storage = storage_of(env, bucket, "dir/direct.bin")[0]
    assert storage.backend.stat(storage.name).content_type == "application/x-test"
    # completed: the upload is gone
    assert HTTP.get(env.url(f"{base}/parts"), timeout=30).status_code == 404
    # the worker replaces the etag: checksum by the md5, reading the file once
    from unistore.adapters.invenio.tasks import compute_checksum

    file_id = storage_of(env, bucket, "dir/direct.bin")[3]
    with env.site.app.app_context():
        assert compute_checksum.delay(file_id).get(timeout=90) == md5(data)
    assert storage_of(env, bucket, "dir/direct.bin")[2] == md5(data)


def test_direct_multipart_declared_size_is_checked(env: Env) -> None:
    bucket = env.site.new_bucket("s3")
    up = start_direct(env, bucket, "short.bin", 6 * MiB, partSize=5 * MiB)
    etags = put_parts(env, bucket, "short.bin", up["uploadId"], {1: os.urandom(5 * MiB), 2: b"x" * 10})
    base = f"/multipart/{bucket}/files/short.bin/{up['uploadId']}"
    r = HTTP.post(env.url(f"{base}/complete"), json={"parts": [{"PartNumber": n, "ETag": e} for n, e in etags.items()]})
    assert r.status_code == 400 and "declared" in r.json()["message"]
    assert HTTP.delete(env.url(f"{base}/abort"), timeout=30).status_code == 200


def test_direct_multipart_bad_requests(env: Env) -> None:
    bucket = env.site.new_bucket("s3")
    url = env.url(f"/multipart/{bucket}/files/?multipart=True")
    assert HTTP.post(url, json={"key": "k"}, timeout=30).status_code == 400  # no size
    assert HTTP.post(url, json={"key": "k", "size": 10, "partSize": 1000}, timeout=30).status_code == 400
    assert HTTP.post(url, json={"key": "k", "size": 10}, headers={"X-Test-Deny": "*"}).status_code in (401, 403)
    missing = env.url(f"/multipart/{uuid.uuid4()}/files/?multipart=True")
    assert HTTP.post(missing, json={"key": "k", "size": 10}, timeout=30).status_code == 404
    from invenio_db import db
    from invenio_files_rest.models import Bucket

    with env.site.app.app_context():
        small = Bucket.create(location=Bucket.get(bucket).location, max_file_size=1000)
        db.session.commit()
        small_id = str(small.id)
    r = HTTP.post(env.url(f"/multipart/{small_id}/files/?multipart=True"), json={"key": "k", "size": 2000})
    assert r.status_code == 400  # the bucket's size limit, as for a REST upload
    up = start_direct(env, bucket, "k", 10)
    bad = env.url(f"/multipart/{bucket}/files/k/not-the-id/1/presigned")
    assert HTTP.get(bad, timeout=30).status_code == 404
    assert HTTP.get(env.url(f"/multipart/{bucket}/files/k/{up['uploadId']}/0/presigned")).status_code == 400
    assert HTTP.delete(env.url(f"/multipart/{bucket}/files/k/{up['uploadId']}/abort")).status_code == 200


def test_direct_multipart_abort(env: Env) -> None:
    from invenio_files_rest.models import FileInstance, ObjectVersion

    bucket = env.site.new_bucket("s3")
    up = start_direct(env, bucket, "gone.bin", 7 * MiB)
    put_parts(env, bucket, "gone.bin", up["uploadId"], {1: os.urandom(5 * MiB)})
    storage, _, _, file_id, _ = storage_of(env, bucket, "gone.bin")
    assert [u for u in storage.backend.list_multipart_uploads(storage.name) if u["upload_id"] == up["uploadId"]]
    r = HTTP.delete(env.url(f"/multipart/{bucket}/files/gone.bin/{up['uploadId']}/abort"), timeout=30)
    assert r.status_code == 200 and r.json() == {}
    assert not storage.backend.list_multipart_uploads(storage.name)  # the parts are freed in S3
    with env.site.app.app_context():
        assert ObjectVersion.get(bucket, "gone.bin") is None
        assert FileInstance.get(file_id) is None
    r = HTTP.delete(env.url(f"/multipart/{bucket}/files/gone.bin/{up['uploadId']}/abort"), timeout=30)
    assert r.status_code == 404


def test_cleanup_task_in_the_worker(env: Env) -> None:
    """Expired uploads (ours and oarepo-s3's) are aborted in S3 and their records removed; idempotent."""
    from invenio_db import db
    from invenio_files_rest.models import ObjectVersion, ObjectVersionTag

    from unistore.adapters.invenio import multipart
    from unistore.adapters.invenio.tasks import cleanup_expired_multipart_uploads

    bucket = env.site.new_bucket("s3")
    expired = start_direct(env, bucket, "expired.bin", 6 * MiB)
    put_parts(env, bucket, "expired.bin", expired["uploadId"], {1: os.urandom(5 * MiB)})
    legacy = start_direct(env, bucket, "legacy.bin", 6 * MiB)
    fresh = start_direct(env, bucket, "fresh.bin", 6 * MiB)
    with env.site.app.app_context():
        # an upload as oarepo-s3 recorded it: its own tags, a naive ISO expiry
        obj = ObjectVersion.get(bucket, "legacy.bin")
        state = json.loads(obj.get_tags()[multipart.STATE_TAG])
        ObjectVersionTag.delete(obj)
        ObjectVersionTag.create(
            obj,
            multipart.OAREPO_STATE_TAG,
            json.dumps({"key": state["key"], "bucket": env.site.bucket, "upload_id": state["upload_id"]}),
        )
        ObjectVersionTag.create(obj, multipart.OAREPO_EXPIRES_TAG, datetime.utcnow().isoformat())
        far = ObjectVersion.get(bucket, "fresh.bin")
        ObjectVersionTag.create_or_update(
            far, multipart.EXPIRES_TAG, (datetime.now(UTC) + timedelta(days=30)).isoformat()
        )
        db.session.commit()
        backend = obj.file.storage().backend
    now = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    with env.site.app.app_context():
        done = cleanup_expired_multipart_uploads.delay(now=now).get(timeout=90)
    assert sorted(k.split("/", 1)[1] for k in done) == ["expired.bin", "legacy.bin"]
    pending = {u["upload_id"] for u in backend.list_multipart_uploads("files/")}
    assert expired["uploadId"] not in pending and legacy["uploadId"] not in pending
    assert fresh["uploadId"] in pending
    with env.site.app.app_context():
        assert ObjectVersion.get(bucket, "expired.bin") is None
        assert ObjectVersion.get(bucket, "fresh.bin") is not None
        assert cleanup_expired_multipart_uploads.delay(now=now).get(timeout=90) == []
    assert HTTP.delete(env.url(f"/multipart/{bucket}/files/fresh.bin/{fresh['uploadId']}/abort")).status_code == 200


# ---------------------------------------------------------------------- InvenioRDM's multipart transfer
def rdm_storage(env: Env, location: str) -> Any:
    """A storage the way invenio-records-resources' MultipartTransfer.init_file gets one."""
    from invenio_files_rest.models import FileInstance

    fi = FileInstance.create()
    return storage_factory(fileinstance=fi, default_location=env.site.locations[location], default_storage_class=None)


def test_rdm_multipart_through_presigned_links(env: Env) -> None:
    part = 5 * MiB
    data = os.urandom(2 * part + 4321)
    parts = ceil(len(data) / part)
    with env.site.app.test_request_context():
        storage = rdm_storage(env, "s3")
        assert all(
            hasattr(storage, m)
            for m in (
                "multipart_initialize_upload",
                "multipart_links",
                "multipart_set_content",
                "multipart_commit_upload",
                "multipart_abort_upload",
            )
        )
        md = storage.multipart_initialize_upload(parts, len(data), part) or {}
        md.setdefault("parts", parts)
        md.setdefault("part_size", part)
        md.setdefault("size", len(data))
        md = json.loads(json.dumps(md))  # kept in the file record's JSON
        links = storage.multipart_links(**md)
        assert [p["part"] for p in links["parts"]] == [1, 2, 3]
        assert all(p["expiration"].endswith("Z") for p in links["parts"])
        for p in links["parts"]:
            n = p["part"]
            assert requests.put(p["url"], data=data[(n - 1) * part : n * part], timeout=60).status_code == 200
        etag = storage.multipart_commit_upload(**md)
        # what InvenioRDM records, and how its checksum task splits it
        recorded = f"multipart:{etag}-{md['part_size']}"
        hexdigest, count, part_size = recorded[len("multipart:") :].rsplit("-")
        piecewise = hashlib.md5(b"".join(hashlib.md5(data[i : i + part]).digest() for i in range(0, len(data), part)))
        assert (hexdigest, count, int(part_size)) == (piecewise.hexdigest(), "3", part)
        with storage.open("rb") as fp:
            assert fp.read() == data
        assert storage.checksum() == md5(data)


def test_rdm_multipart_through_the_app_and_abort(env: Env) -> None:
    part = 5 * MiB
    data = os.urandom(part + 10)
    with env.site.app.test_request_context():
        storage = rdm_storage(env, "url")
        md = {
            **storage.multipart_initialize_upload(2, len(data), part),
            "parts": 2,
            "part_size": part,
            "size": len(data),
        }
        import io

        with pytest.raises(ValueError):
            storage.multipart_set_content(1, io.BytesIO(b"short"), 5, **md)
        storage.multipart_set_content(2, io.BytesIO(data[part:]), 10, **md)
        storage.multipart_set_content(1, io.BytesIO(data[:part]), part, **md)
        assert storage.multipart_commit_upload(**md).endswith("-2")
        with storage.open("rb") as fp:
            assert fp.read() == data
        other = rdm_storage(env, "s3")
        md = {**other.multipart_initialize_upload(2, len(data), part), "parts": 2, "part_size": part, "size": len(data)}
        other.multipart_set_content(1, io.BytesIO(data[:part]), part, **md)
        with pytest.raises(ValueError):  # a part is missing
            other.multipart_commit_upload(**md)
        other.multipart_abort_upload(**md)
        other.multipart_abort_upload(**md)  # gone already: fine
        assert not [u for u in other.backend.list_multipart_uploads(other.name)]


def test_rdm_multipart_on_a_backend_without_multipart(env: Env) -> None:
    """Without the multipart methods InvenioRDM preallocates with initialize() and writes the
    parts with update(); the checksum task then reads the file once."""
    import io

    part = 5 * MiB
    data = os.urandom(part + 77)
    with env.site.app.test_request_context():
        storage = rdm_storage(env, "local")
        assert not hasattr(storage, "multipart_initialize_upload")
        storage.initialize(size=len(data))
        storage.update(io.BytesIO(data[part:]), seek=part, size=77)
        storage.update(io.BytesIO(data[:part]), seek=0, size=part)
        assert storage.checksum() == md5(data)
        with storage.open("rb") as fp:
            assert fp.read() == data
