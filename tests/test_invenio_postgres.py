"""The same storage under an invenio-files-rest app on the suite's PostgreSQL (tasks run eagerly:
the module of tests/test_invenio_rest.py has the session's real worker; invenio-files-rest's REST
multipart merge reports progress through ``current_task``, which eager tasks lack, so that flow is
tested there only)."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("invenio_files_rest")

import requests  # noqa: E402

from tests.servers.invenio_site import Site, make_site  # noqa: E402

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def pg_site(tmp_path_factory: pytest.TempPathFactory, seaweedfs: Any, postgres: Any) -> Iterator[tuple[Site, Any]]:
    uri = f"postgresql+psycopg2://{postgres.user}@{postgres.host}:{postgres.port}/{postgres.new_database()}"
    site = make_site(
        tmp_path_factory.mktemp("invenio-pg"),
        seaweedfs,
        db_uri=uri,
        extra={
            "CELERY_TASK_ALWAYS_EAGER": True,
            "CELERY_TASK_EAGER_PROPAGATES": True,
            "CELERY_RESULT_BACKEND": "cache",
            "CELERY_CACHE_BACKEND": "memory",
        },
    )
    yield site, site.app.test_client()
    from invenio_db import db

    with site.app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("location", ["s3", "url", "local"])
def test_upload_download_delete_on_postgres(pg_site: tuple[Site, Any], location: str) -> None:
    from invenio_files_rest.models import ObjectVersion

    site, client = pg_site
    bucket = site.new_bucket(location)
    data = os.urandom(2 * MiB + 1)
    r = client.put(f"/files/{bucket}/a.bin", input_stream=io.BytesIO(data), content_length=len(data))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.json["checksum"] == "md5:" + hashlib.md5(data).hexdigest()
    r = client.get(f"/files/{bucket}/a.bin")
    if location != "local":
        assert r.status_code == 302
        assert requests.get(r.headers["Location"], timeout=60).content == data
    else:
        assert r.status_code == 200 and r.get_data() == data
    with site.app.app_context():
        obj = ObjectVersion.get(bucket, "a.bin")
        storage, version = obj.file.storage(), str(obj.version_id)
    assert client.delete(f"/files/{bucket}/a.bin?versionId={version}").status_code == 204
    with pytest.raises(FileNotFoundError):
        storage.open("rb")


def test_direct_multipart_on_postgres(pg_site: tuple[Site, Any]) -> None:
    site, client = pg_site
    bucket = site.new_bucket("s3")
    data = os.urandom(6 * MiB)
    r = client.post(f"/multipart/{bucket}/files/?multipart=True", json={"key": "d.bin", "size": len(data)})
    assert r.status_code == 201, r.get_data(as_text=True)
    up = r.json
    urls = client.get(f"/multipart/{bucket}/files/d.bin/{up['uploadId']}/1,2/presigned").json["presignedUrls"]
    part = up["partSize"]
    etags = [
        requests.put(urls[str(n)], data=data[(n - 1) * part : n * part], timeout=60).headers["ETag"] for n in (1, 2)
    ]
    parts = [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]
    r = client.post(f"/multipart/{bucket}/files/d.bin/{up['uploadId']}/complete", json={"parts": parts})
    assert r.status_code == 200, r.get_data(as_text=True)
    got = client.get(f"/files/{bucket}/d.bin")
    assert requests.get(got.headers["Location"], timeout=60).content == data
