"""``unistore zodb migrate`` and ``unistore zodb gc``."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import transaction
import ZODB
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage

from unistore.adapters.zodb import S3BlobStorage
from unistore.cli import main


@pytest.fixture(params=["posixfs", "s3"])
def dest_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "posixfs":
        return f"file://{tmp_path}/dest"
    server = request.getfixturevalue("seaweedfs")
    return server.url(server.new_bucket(), "zope")  # type: ignore[no-any-return]


def _site_with_blob_dir(tmp_path: Any) -> dict[int, bytes]:
    """A FileStorage site with a blob directory: 5 blobs, one of them rewritten."""
    db = ZODB.DB(FileStorage(str(tmp_path / "Data.fs"), blob_dir=str(tmp_path / "blobs")))
    conn = db.open()
    expected = {}
    for i in range(5):
        expected[i] = b"blob %d " % i * 1000
        conn.root()[i] = Blob(expected[i])
    transaction.commit()
    with conn.root()[0].open("w") as f:
        f.write(b"rewritten")
    expected[0] = b"rewritten"
    transaction.commit()
    db.close()
    return expected


def _assert_site_reads_blobs(data_fs: Any, url: str, cache_dir: Any, expected: dict[int, bytes]) -> None:
    """The FileStorage site ``data_fs`` with its blobs in ``url`` reads every blob as ``expected``."""
    db = ZODB.DB(S3BlobStorage(FileStorage(str(data_fs)), url, str(cache_dir)))
    try:
        conn = db.open()
        for i, data in expected.items():
            with conn.root()[i].open() as f:
                assert f.read() == data
        conn.close()
    finally:
        db.close()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1])


def test_migrate_from_blob_dir_is_resumable_and_site_reads_blobs(
    dest_url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _site_with_blob_dir(tmp_path)
    code, summary = _run(
        capsys, "--json", "zodb", "migrate", "--create", "--url", dest_url, "--from-blob-dir", f"{tmp_path}/blobs"
    )
    assert code == 0
    assert summary["found"] == 6 and summary["copied"] == 6 and summary["failed"] == 0
    # resume: nothing left to copy
    code, summary = _run(capsys, "zodb", "migrate", "--json", "--url", dest_url, "--from-blob-dir", f"{tmp_path}/blobs")
    assert code == 0 and summary["skipped"] == 6 and summary["copied"] == 0
    # the site now runs with its blobs in the backend
    _assert_site_reads_blobs(tmp_path / "Data.fs", dest_url, tmp_path / "cache", expected)


def test_migrate_between_backends_and_gc(dest_url: str, tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    expected = _site_with_blob_dir(tmp_path)
    first = f"file://{tmp_path}/first"
    assert main(["--json", "zodb", "migrate", "--create", "--url", first, "--from-blob-dir", f"{tmp_path}/blobs"]) == 0
    capsys.readouterr()
    code, summary = _run(capsys, "--json", "zodb", "migrate", "--create", "--url", dest_url, "--from-url", first)
    assert code == 0 and summary["copied"] == 6
    assert "secret" not in summary["source"] or "***" in summary["source"]
    # gc over the FileStorage site: nothing is an orphan until the pack drops the old revision
    config = tmp_path / "zodb.conf"
    config.write_text(
        f"""
        %import unistore.adapters.zodb
        <s3blobstorage>
          url {dest_url}
          cache-dir {tmp_path}/cache
          <filestorage>
            path {tmp_path}/Data.fs
          </filestorage>
        </s3blobstorage>
        """
    )
    code, result = _run(capsys, "--json", "zodb", "gc", "--config", str(config), "--dry-run")
    assert code == 0 and result["examined"] == 6 and result["deleted"] == 0
    db = ZODB.DB(FileStorage(str(tmp_path / "Data.fs")))
    db.pack(time.time() + 1)
    db.close()
    code, result = _run(capsys, "--json", "zodb", "gc", "--config", str(config), "--dry-run")
    assert code == 0 and result["deleted"] == 1 and result["dry_run"] is True
    code, result = _run(capsys, "--json", "zodb", "gc", "--config", str(config))
    assert code == 0 and result["deleted"] == 1
    code, result = _run(capsys, "--json", "zodb", "gc", "--config", str(config))
    assert code == 0 and result["deleted"] == 0 and result["kept"] == 5
    assert len(expected) == 5


def test_migrate_needs_one_source(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["zodb", "migrate", "--url", f"file://{tmp_path}/d"])
    assert "one of the arguments" in capsys.readouterr().err


def test_migrate_refuses_a_missing_destination_without_create(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _site_with_blob_dir(tmp_path)
    code = main(["zodb", "migrate", "--url", f"file://{tmp_path}/typo", "--from-blob-dir", f"{tmp_path}/blobs"])
    err = capsys.readouterr().err
    assert code == 1
    assert "BackendDoesNotExist" in err and "--create" in err
    assert not (tmp_path / "typo").exists()  # nothing was created under a mistyped name


def test_zodbconvert_carries_blobs_into_the_backend(dest_url: str, tmp_path: Any) -> None:
    """RelStorage's zodbconvert copies a FileStorage+blob_dir site into FileStorage+<s3blobstorage>."""
    from relstorage.zodbconvert import main as zodbconvert

    expected = _site_with_blob_dir(tmp_path)
    config = tmp_path / "convert.conf"
    config.write_text(
        f"""
        %import unistore.adapters.zodb
        <filestorage source>
          path {tmp_path}/Data.fs
          blob-dir {tmp_path}/blobs
        </filestorage>
        <s3blobstorage destination>
          url {dest_url}
          create-bucket true
          cache-dir {tmp_path}/cache
          <filestorage>
            path {tmp_path}/converted.fs
          </filestorage>
        </s3blobstorage>
        """
    )
    zodbconvert(["zodbconvert", str(config)])
    # read the converted site with an empty cache: every blob comes from the backend
    _assert_site_reads_blobs(tmp_path / "converted.fs", dest_url, tmp_path / "cache2", expected)
