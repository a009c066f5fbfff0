"""invenio-files-rest's own storage test cases, ported to unistore's storage, on a ``file://``
location and on SeaweedFS (``s3://`` URIs), plus what the storage does beyond them."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("invenio_files_rest")

from invenio_files_rest.errors import FileSizeError, StorageError, UnexpectedFileSizeError  # noqa: E402
from invenio_files_rest.limiters import FileSizeLimit  # noqa: E402

from tests.servers.invenio_site import Site, make_site  # noqa: E402
from unistore.adapters.invenio import storage_factory  # noqa: E402
from unistore.adapters.invenio.rdm import UnistoreMultipartFileStorage  # noqa: E402
from unistore.adapters.invenio.storage import UnistoreFileStorage  # noqa: E402
from unistore.backends.base import MULTIPART, PRESIGN  # noqa: E402
from unistore.errors import ObjectNotFound  # noqa: E402

MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, seaweedfs: Any) -> Iterator[Site]:
    s = make_site(tmp_path_factory.mktemp("invenio-storage"), seaweedfs)
    with s.app.app_context():
        yield s


@pytest.fixture(params=["local", "s3"])
def location(request: pytest.FixtureRequest, site: Site) -> str:
    return site.locations[request.param]


@pytest.fixture
def storage(location: str) -> UnistoreFileStorage:
    """A storage at a new ``<location>/ab/cd/<uuid>/data``."""
    u = uuid.uuid4().hex
    return storage_factory(fileurl=f"{location}/{u[:2]}/{u[2:4]}/{u[4:]}/data", size=None)


def exists(s: UnistoreFileStorage) -> bool:
    try:
        s.backend.stat(s.name)
        return True
    except ObjectNotFound:
        return False


def content(s: UnistoreFileStorage) -> bytes:
    with s.open("rb") as fp:
        return fp.read()  # type: ignore[no-any-return]


def test_factory_picks_the_class_by_capability(site: Site) -> None:
    local = storage_factory(fileurl=site.locations["local"] + "/aa/bb/x/data", size=0)
    s3 = storage_factory(fileurl=site.locations["s3"] + "/aa/bb/x/data", size=0)
    assert type(local) is UnistoreFileStorage
    assert not hasattr(local, "multipart_initialize_upload")  # InvenioRDM then uploads through the app
    assert type(s3) is UnistoreMultipartFileStorage
    assert s3.backend.supports(MULTIPART) and s3.backend.supports(PRESIGN)
    assert s3.name == "files/aa/bb/x/data"  # the object key, as invenio-s3 writes it
    url = storage_factory(fileurl=site.locations["url"] + "/aa/bb/x/data", size=0)
    assert url.name == "aa/bb/x/data" and url.backend.supports(MULTIPART)


def test_factory_for_a_new_file_instance(site: Site) -> None:
    from invenio_files_rest.models import FileInstance

    fi = FileInstance.create()
    s = storage_factory(fileinstance=fi, default_location=site.locations["s3"], default_storage_class="S")
    h = str(fi.id)
    assert s.fileurl == f"{site.locations['s3']}/{h[:2]}/{h[2:4]}/{h[4:]}/data"


def test_initialize_writes_nothing(storage: UnistoreFileStorage) -> None:
    uri, size, checksum = storage.initialize(size=100)
    assert (uri, size, checksum) == (storage.fileurl, 100, None)
    assert not exists(storage)  # no zero-filled object (invenio-s3 uploads 100 zero bytes)
    assert storage.initialize() == (storage.fileurl, 0, None)
    storage.delete()


def test_delete(storage: UnistoreFileStorage) -> None:
    storage.save(io.BytesIO(b"somedata"))
    assert exists(storage)
    assert storage.delete() is True
    assert not exists(storage)
    assert storage.delete() is True  # idempotent: a retried cleanup task does not fail


def test_delete_keeps_a_neighbour(location: str) -> None:
    u = uuid.uuid4().hex
    a = storage_factory(fileurl=f"{location}/{u[:2]}/{u[2:]}/data", size=None)
    b = storage_factory(fileurl=f"{location}/{u[:2]}/{u[2:]}/other", size=None)
    a.save(io.BytesIO(b"a"))
    b.save(io.BytesIO(b"b"))
    a.delete()
    assert not exists(a) and content(b) == b"b"
    b.delete()


def test_save(storage: UnistoreFileStorage) -> None:
    data = b"somedata"
    uri, size, checksum = storage.save(io.BytesIO(data))
    assert uri == storage.fileurl and size == len(data) and checksum == md5(data)
    assert content(storage) == data
    assert storage.checksum() == md5(data)
    storage.delete()


def test_save_failure_cleans_up(storage: UnistoreFileStorage) -> None:
    def fail(total: Any, size: Any) -> None:
        raise RuntimeError("Something bad happened")

    with pytest.raises(RuntimeError):
        storage.save(io.BytesIO(b"somedata"), chunk_size=4, progress_callback=fail)
    assert not exists(storage)


def test_save_progress(storage: UnistoreFileStorage) -> None:
    seen = {"size": 0}

    def callback(total: Any, size: int) -> None:
        seen["size"] = size

    storage.save(io.BytesIO(b"somedata"), progress_callback=callback)
    assert seen["size"] == len(b"somedata")
    storage.delete()


def test_save_limits(storage: UnistoreFileStorage) -> None:
    data = b"somedata"
    assert storage.save(io.BytesIO(data), size=len(data))[1] == len(data)
    assert storage.save(io.BytesIO(data), size_limit=len(data))[1] == len(data)
    with pytest.raises(UnexpectedFileSizeError):
        storage.save(io.BytesIO(data), size=len(data) - 1)
    with pytest.raises(UnexpectedFileSizeError):
        storage.save(io.BytesIO(data), size=len(data) + 1)
    with pytest.raises(FileSizeError):
        storage.save(io.BytesIO(data), size_limit=FileSizeLimit(len(data) - 1, "bla"))
    assert not exists(storage)  # a refused upload leaves nothing behind


def test_update_small_parts_on_local(site: Site) -> None:
    s = storage_factory(fileurl=site.locations["local"] + f"/up/{uuid.uuid4().hex}/data", size=None)
    s.initialize(size=100)
    s.update(io.BytesIO(b"cd"), seek=2, size=2)
    s.update(io.BytesIO(b"ab"), seek=0, size=2)
    data = content(s)
    assert data[:4] == b"abcd" and len(data) == 100 and data[4:] == bytes(96)
    size, checksum = s.update(io.BytesIO(b"ef"), seek=4, size=2)
    assert (size, checksum) == (2, md5(b"ef"))
    assert content(s)[:6] == b"abcdef"
    assert s.checksum() == md5(b"abcdef" + bytes(94))
    s.delete()
    assert not os.path.exists(os.path.join(s.backend.base_path, s.name.rpartition("/")[0]))  # type: ignore[attr-defined]


def test_update_parts_on_s3_are_multipart_parts(site: Site) -> None:
    """Parts go to one S3 multipart upload, completed when the file is first read: no rewrite."""
    size = 11 * MiB
    blob = os.urandom(size)
    s = storage_factory(fileurl=site.locations["s3"] + f"/up/{uuid.uuid4().hex}/data", size=size)
    s.initialize(size=size)
    assert not exists(s)
    for seek in (10 * MiB, 5 * MiB, 0):  # any order
        n, checksum = s.update(io.BytesIO(blob[seek : seek + 5 * MiB]), seek=seek, size=min(5 * MiB, size - seek))
        assert checksum == md5(blob[seek : seek + 5 * MiB])
    assert not exists(s)
    assert s.checksum() == md5(blob)  # completes the upload, then reads once
    assert content(s) == blob
    with pytest.raises(StorageError):  # S3 parts are >= 5 MiB except the last
        s.update(io.BytesIO(b"x"), seek=0, size=1)
    s.delete()


def test_checksum(storage: UnistoreFileStorage) -> None:
    data = os.urandom(3000)
    storage.save(io.BytesIO(data))
    seen = {"size": 0}

    def callback(total: int, size: int) -> None:
        seen["size"] = size

    fresh = storage_factory(fileurl=storage.fileurl, size=len(data))
    assert fresh.checksum(chunk_size=2, progress_callback=callback) == md5(data)
    assert seen["size"] == len(data)
    assert fresh.checksum(verify=True) == md5(data)  # read back and hashed
    storage.delete()


def test_checksum_failure(storage: UnistoreFileStorage) -> None:
    storage.save(io.BytesIO(b"data"))

    def callback(total: int, size: int) -> None:
        raise OSError(1, "Permission")

    fresh = storage_factory(fileurl=storage.fileurl, size=4)
    with pytest.raises(StorageError):
        fresh.checksum(progress_callback=callback)
    storage.delete()
    with pytest.raises(StorageError):
        fresh.checksum()


def test_open_is_seekable(storage: UnistoreFileStorage) -> None:
    data = bytes(range(256)) * 40
    storage.save(io.BytesIO(data))
    fp = storage.open("rb")
    assert fp.seekable()
    fp.seek(1000)
    assert fp.read(10) == data[1000:1010]
    fp.seek(-6, io.SEEK_END)
    assert fp.read() == data[-6:]
    fp.close()
    with storage.open("wb") as w:
        w.write(b"rewritten")
    assert content(storage) == b"rewritten"
    storage.delete()
    with pytest.raises(FileNotFoundError):
        storage.open("rb")


def _send(site: Site, s: UnistoreFileStorage, *args: Any, **kwargs: Any) -> Any:
    with site.app.test_request_context():
        return s.send_file(*args, **kwargs)


def test_send_file_streams_without_presign(site: Site) -> None:
    s = storage_factory(fileurl=site.locations["local"] + f"/sf/{uuid.uuid4().hex}/data", size=None)
    data = b"sendthis"
    _, size, checksum = s.save(io.BytesIO(data))
    res = _send(site, s, "myfilename.txt", mimetype="text/plain", checksum=checksum)
    assert res.status_code == 200
    h = res.headers
    assert h["Content-Type"] == "text/plain; charset=utf-8"
    assert h["Content-Length"] == str(size)
    assert h["Content-MD5"] == checksum[4:]
    assert h["ETag"] == f'"{checksum}"'
    assert b"".join(res.response) == data
    res = _send(site, s, "myfilename.txt", mimetype="text/plain", checksum="crc32:test")
    assert "Content-MD5" not in res.headers
    res = _send(site, s, "myfilename.txt", mimetype="text/plain", checksum=checksum, as_attachment=True)
    assert res.headers["Content-Disposition"] == "attachment; filename=myfilename.txt"
    assert "attachment" not in _send(site, s, "f.txt", mimetype="text/plain").headers["Content-Disposition"]
    s.delete()


def test_send_file_xss_prevention(site: Site, location: str) -> None:
    s = storage_factory(fileurl=f"{location}/xss/{uuid.uuid4().hex}/data", size=None)
    _, size, checksum = s.save(io.BytesIO(b'<html><body><script>alert("xss");</script></body></html>'))
    h = _send(site, s, "myfilename.html", mimetype="text/html", checksum=checksum).headers
    assert h["Content-Security-Policy"] == "default-src 'none';"
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Download-Options"] == "noopen"
    assert h["X-Permitted-Cross-Domain-Policies"] == "none"
    assert h["X-Frame-Options"] == "deny"
    assert h["X-XSS-Protection"] == "1; mode=block"
    assert h["Content-Disposition"] == "inline"
    assert _send(site, s, "image.png", mimetype="image/png").headers["Content-Disposition"] == "inline"
    assert _send(site, s, "archive.zip").headers["Content-Disposition"] == "attachment; filename=archive.zip"
    assert _send(site, s, "doc.pdf").headers["Content-Disposition"] == "attachment; filename=doc.pdf"
    res = _send(site, s, "żółć.dat", mimetype="application/octet-stream")
    assert set(res.headers["Content-Disposition"].split("; ")) == {
        "attachment",
        "filename=zoc.dat",
        "filename*=UTF-8''%C5%BC%C3%B3%C5%82%C4%87.dat",
    }
    s.delete()


def test_send_file_redirects_to_a_presigned_url(site: Site) -> None:
    import requests

    s = storage_factory(fileurl=site.locations["s3"] + f"/rd/{uuid.uuid4().hex}/data", size=None)
    s.save(io.BytesIO(b"<b>hello</b>"))
    res = _send(site, s, "page.html", mimetype="text/html", restricted=False)
    assert res.status_code == 302
    assert "max-age=60" in res.headers["Cache-Control"] and "public" in res.headers["Cache-Control"]
    got = requests.get(res.headers["Location"], timeout=30)
    assert got.content == b"<b>hello</b>"
    assert got.headers["Content-Type"] == "text/plain"  # sanitised, as a streamed download
    assert got.headers["Content-Disposition"] == "inline"
    res = _send(site, s, "page.html", as_attachment=True)
    assert "no-cache" in res.headers["Cache-Control"]
    got = requests.get(res.headers["Location"], timeout=30)
    assert got.headers["Content-Disposition"] == "attachment; filename=page.html"
    s.delete()


def test_send_file_failure(site: Site, location: str) -> None:
    s = storage_factory(fileurl=f"{location}/gone/{uuid.uuid4().hex}/data", size=3)
    site.app.config["UNISTORE_INVENIO_REDIRECT_DOWNLOADS"] = False
    try:
        with pytest.raises(StorageError):
            _send(site, s, "test.txt")
    finally:
        site.app.config["UNISTORE_INVENIO_REDIRECT_DOWNLOADS"] = True


@pytest.mark.parametrize("target", ["s3", "archive", "local"])
def test_copy(site: Site, location: str, target: str) -> None:
    src = storage_factory(fileurl=f"{location}/cp/{uuid.uuid4().hex}/data", size=None)
    data = os.urandom(5000)
    src.save(io.BytesIO(data))
    dst = storage_factory(fileurl=f"{site.locations[target]}/cp/{uuid.uuid4().hex}/data", size=None)
    uri, size, checksum = dst.copy(src)
    assert (uri, size, checksum) == (dst.fileurl, len(data), md5(data))  # invenio-s3 returns (path, None, None)
    assert content(dst) == data
    assert dst.checksum() == md5(data)
    src.delete()
    dst.delete()


def test_abort_stale_command(site: Site, seaweedfs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """``unistore invenio abort-stale`` aborts uploads older than the age given, and only those."""
    import argparse
    import json

    from unistore.adapters.invenio import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    s = storage_factory(fileurl=site.locations["s3"] + f"/stale/{uuid.uuid4().hex}/data", size=None)
    upload_id = s.backend.create_multipart(s.name)
    url = seaweedfs.url(site.bucket)
    args = parser.parse_args(["invenio", "abort-stale", "--url", url, "--older-than", "1d", "--json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["aborted"] == 0
    assert upload_id in {u["upload_id"] for u in s.backend.list_multipart_uploads(s.name)}
    args = parser.parse_args(["invenio", "abort-stale", "--url", url, "--older-than", "0", "--prefix", "files/stale/"])
    assert args.func(args) == 0
    assert upload_id not in {u["upload_id"] for u in s.backend.list_multipart_uploads(s.name)}
    with pytest.raises(SystemExit):
        parser.parse_args(["invenio", "abort-stale", "--url", url, "--older-than", "soon"])


def test_any_unistore_url_with_generic_streaming(site: Site) -> None:
    """A backend with only the generic ``store_file`` (it calls ``read()`` once) gets all of a
    stream that arrives in short reads, as a request body does."""

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = 1000 if n < 0 else min(n, 1000)
            out = self.data[self.pos : self.pos + n]
            self.pos += len(out)
            return out

    data = os.urandom(6 * MiB + 1)
    root = f"memory://invenio-{uuid.uuid4().hex}"
    site.app.config["UNISTORE_INVENIO_ROOTS"] = [root]
    try:
        s = storage_factory(fileurl=f"{root}/ab/cd/x/data", size=None)
        assert s.name == "ab/cd/x/data"
        assert s.save(Trickle(data))[1:] == (len(data), md5(data))
        assert content(s) == data
        assert s.checksum() == md5(data)
        s.delete()
        assert not exists(s)
    finally:
        site.app.config["UNISTORE_INVENIO_ROOTS"] = []
