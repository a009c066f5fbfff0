"""The ZODB configuration examples of docs/zodb.md and README.md work as shown.

Every fenced block holding an ``<s3blobstorage>`` section is run, with only its addresses,
bucket and secrets pointed at the test servers (environment variables for the ``$(VAR)`` parts):
``<zodb>`` blocks through ``ZODB.config.databaseFromString``; Zope's ``<zodb_db>`` blocks are
checked to be refused by plain ZODB, to be a valid ``<zodb>`` section apart from Zope's
``mount-point`` (Zope's ``zodb_db`` extends ZODB's ``zodb`` by it), and to have an
``<s3blobstorage>`` section that opens and stores blobs (Zope itself is not installed here); the
zodbconvert block converts a site with ``zodbconvert``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import ZConfig
import ZODB
import ZODB.config
from ZODB.blob import Blob
from ZODB.FileStorage import FileStorage

from .zodb_storages import commit_blob

ROOT = Path(__file__).resolve().parent.parent


def _blocks(path: Path) -> list[str]:
    """The fenced code blocks of a markdown file that hold an ``<s3blobstorage>`` section."""
    text = path.read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    return [block for block in blocks if "<s3blobstorage" in block]


def _kind(block: str) -> str:
    first = next(line.strip() for line in block.splitlines() if line.strip().startswith("<"))
    return first.split()[0].strip("<>")


DOCS = {
    "docs/zodb.md": {"zodb": 2, "zodb_db": 1, "filestorage": 1},
    "README.md": {"zodb": 1},
}
EXAMPLES = [
    pytest.param(doc, i, block, id=f"{doc}-{i}-{_kind(block)}")
    for doc in DOCS
    for i, block in enumerate(_blocks(ROOT / doc))
]


def test_every_example_is_known() -> None:
    """A new example must get a test here: the kinds and counts of the examples are fixed."""
    for doc, expected in DOCS.items():
        kinds: dict[str, int] = {}
        for block in _blocks(ROOT / doc):
            kinds[_kind(block)] = kinds.get(_kind(block), 0) + 1
        assert kinds == expected, doc


def _point_at_test_servers(block: str, seaweedfs: Any, bucket: str, tmp_path: Path) -> str:
    """The block with its S3 endpoint and bucket, RelStorage DSN and absolute paths made local."""
    block = block.replace("https://s3.eu-central-1.amazonaws.com", seaweedfs.endpoint)
    block = block.replace("https://minio.internal:9000/zope-blobs", f"{seaweedfs.endpoint}/{bucket}")
    block = block.replace("https://s3.example.com/bucket", f"{seaweedfs.endpoint}/{bucket}")
    block = re.sub(r"bucket-name +my-site-blobs", f"bucket-name {bucket}", block)
    block = block.replace("/var/cache/zope/blobs", f"{tmp_path}/cache")
    block = block.replace("/var/tmp/zope-blob-staging", f"{tmp_path}/staging")
    return block


@pytest.fixture
def example_env(seaweedfs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The $(VAR)s of the examples, set for the test servers; returns a new bucket."""
    for var in ("S3_ACCESS_KEY", "S3_KEY"):
        monkeypatch.setenv(var, seaweedfs.access_key)
    for var in ("S3_SECRET_KEY", "S3_SECRET"):
        monkeypatch.setenv(var, seaweedfs.secret_key)
    monkeypatch.setenv("INSTANCE", str(tmp_path))
    (tmp_path / "var" / "filestorage").mkdir(parents=True)
    return seaweedfs.new_bucket()  # type: ignore[no-any-return]


def _check_blobs_land(db: Any, seaweedfs: Any, bucket: str) -> None:
    oid, tid = commit_blob(db, "example", b"from the documented configuration")
    keys = [obj["Key"] for obj in seaweedfs.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert any(
        key.endswith(f"blobs/{int.from_bytes(oid, 'big'):x}/{int.from_bytes(tid, 'big'):x}.blob") for key in keys
    )


@pytest.mark.parametrize(("doc", "index", "block"), [p for p in EXAMPLES if _kind(p.values[2]) == "zodb"])
def test_zodb_example_opens_with_plain_zodb(
    doc: str, index: int, block: str, example_env: str, seaweedfs: Any, tmp_path: Path, request: Any
) -> None:
    bucket = example_env
    text = _point_at_test_servers(block, seaweedfs, bucket, tmp_path)
    if "<relstorage>" in text:
        pg = request.getfixturevalue("postgres")
        text = re.sub(r"^( *)dsn .*$", rf"\1dsn {pg.dsn(pg.new_database())}", text, flags=re.MULTILINE)
    path = tmp_path / "zodb.conf"
    path.write_text(text)
    db = ZODB.config.databaseFromURL(str(path))
    try:
        _check_blobs_land(db, seaweedfs, bucket)
    finally:
        db.close()


@pytest.mark.parametrize(("doc", "index", "block"), [p for p in EXAMPLES if _kind(p.values[2]) == "zodb_db"])
def test_zope_example_is_zopes_and_its_storage_section_works(
    doc: str, index: int, block: str, example_env: str, seaweedfs: Any, tmp_path: Path
) -> None:
    bucket = example_env
    text = _point_at_test_servers(block, seaweedfs, bucket, tmp_path)
    # plain ZODB does not know Zope's section: the example is labelled as Zope's for that reason
    with pytest.raises(ZConfig.ConfigurationError, match="zodb_db"):
        ZODB.config.databaseFromString(text)
    # Zope's zodb_db is ZODB's zodb plus mount points: the rest of the block is a valid <zodb> section
    assert re.search(r"^ *mount-point /$", text, re.MULTILINE)
    as_zodb = re.sub(r"^ *mount-point .*\n", "", text, flags=re.MULTILINE)
    as_zodb = as_zodb.replace("<zodb_db ", "<zodb ").replace("</zodb_db>", "</zodb>")
    db = ZODB.config.databaseFromString(as_zodb)
    db.close()
    # and its <s3blobstorage> section loads on its own (what Zope opens as the storage)
    section = re.search(r"^( *)<s3blobstorage>.*?^\1</s3blobstorage>", text, re.MULTILINE | re.DOTALL)
    assert section is not None
    storage = ZODB.config.storageFromString("%import unistore.adapters.zodb\n" + section.group(0))
    db = ZODB.DB(storage)
    try:
        _check_blobs_land(db, seaweedfs, bucket)
    finally:
        db.close()


@pytest.mark.parametrize(("doc", "index", "block"), [p for p in EXAMPLES if _kind(p.values[2]) == "filestorage"])
def test_zodbconvert_example_converts_a_site(
    doc: str, index: int, block: str, example_env: str, seaweedfs: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    from relstorage.zodbconvert import main as zodbconvert

    bucket = example_env
    monkeypatch.chdir(tmp_path)  # the example's paths are relative to the instance
    db = ZODB.DB(FileStorage("var/filestorage/Data.fs", blob_dir="var/blobstorage"))
    with db.transaction() as conn:
        conn.root()["b"] = Blob(b"converted")
    db.close()
    path = tmp_path / "convert.conf"
    path.write_text(_point_at_test_servers(block, seaweedfs, bucket, tmp_path))
    zodbconvert(["zodbconvert", str(path)])
    assert os.path.exists("var/filestorage/Data-new.fs")
    keys = [obj["Key"] for obj in seaweedfs.client().list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert [key for key in keys if key.startswith("site/blobs/")], keys
