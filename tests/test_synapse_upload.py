"""``s3_media_upload`` (unistore's) against a private PostgreSQL holding Synapse's media tables, and SeaweedFS.

The SQLite side (the live homeserver's own database) is in test_synapse_homeserver.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers.postgres import PostgreSQL
from tests.servers.seaweedfs import SeaweedFS
from unistore.adapters.synapse.layout import content_path, thumbnail_dir

SYNAPSE_TABLES = """
CREATE TABLE local_media_repository (
    media_id TEXT, media_type TEXT, media_length INTEGER, created_ts BIGINT, upload_name TEXT,
    user_id TEXT, quarantined_by TEXT, url_cache TEXT, last_access_ts BIGINT, safe_from_quarantine BOOLEAN,
    UNIQUE (media_id)
);
CREATE TABLE remote_media_cache (
    media_origin TEXT, media_id TEXT, media_type TEXT, created_ts BIGINT, upload_name TEXT,
    media_length INTEGER, filesystem_id TEXT, last_access_ts BIGINT, quarantined_by TEXT,
    UNIQUE (media_origin, media_id)
);
"""


def run_tool(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unistore.adapters.synapse.upload", "--no-progress", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _media_store(base: Path, rows: list[tuple[str, str, str, str]]) -> dict[str, bytes]:
    """Write a media file and two thumbnails for each ``(origin, media_id, filesystem_id, type)``."""
    files = {}
    for origin, _, fs_id, mtype in rows:
        rels = [content_path(origin, fs_id, mtype)] + [
            f"{thumbnail_dir(origin, fs_id, mtype)}/{n}" for n in ("32-32-image-png-crop", "96-96-image-png-crop")
        ]
        for rel in rels:
            data = os.urandom(1000 + len(files))
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(data)
            files[rel] = data
    return files


@pytest.fixture
def synapse_pg(postgres: PostgreSQL, tmp_path: Path) -> dict[str, Any]:
    import psycopg2

    dbname = postgres.new_database()
    conn = psycopg2.connect(postgres.dsn(dbname))
    old = int((time.time() - 3 * 86400) * 1000)
    new = int(time.time() * 1000)
    local = [("", f"local{i:04d}abcdefgh", f"local{i:04d}abcdefgh", "local") for i in range(20)]
    remote = [(f"remote{i % 2}.org", f"rm{i}", f"rfs{i:04d}abcdefgh", "remote") for i in range(8)]
    with conn, conn.cursor() as cur:
        cur.execute(SYNAPSE_TABLES)
        for _, media_id, _, _ in local:
            cur.execute(
                "INSERT INTO local_media_repository (media_id, created_ts, last_access_ts) VALUES (%s, %s, %s)",
                (media_id, old, None),
            )
        # left out by update-db: a URL preview and media accessed today
        cur.execute(
            "INSERT INTO local_media_repository (media_id, created_ts, url_cache) VALUES ('urlc', %s, 'x')", (old,)
        )
        cur.execute(
            "INSERT INTO local_media_repository (media_id, created_ts, last_access_ts) VALUES ('fresh', %s, %s)",
            (old, new),
        )
        for origin, media_id, fs_id, _ in remote:
            cur.execute(
                "INSERT INTO remote_media_cache (media_origin, media_id, filesystem_id, created_ts, last_access_ts)"
                " VALUES (%s, %s, %s, %s, %s)",
                (origin, media_id, fs_id, old, old),
            )
    conn.close()
    work = tmp_path / "work"
    work.mkdir()
    base = tmp_path / "media_store"
    files = _media_store(base, local + remote)
    (work / "database.yaml").write_text(
        yaml.safe_dump(
            {"postgres": {"dbname": dbname, "user": postgres.user, "host": postgres.host, "port": postgres.port}}
        )
    )
    return {"work": work, "base": base, "files": files, "rows": local + remote}


def test_upload_tool_postgres_to_seaweedfs(synapse_pg: dict[str, Any], seaweedfs: SeaweedFS) -> None:
    work, base, files = synapse_pg["work"], synapse_pg["base"], synapse_pg["files"]
    res = run_tool(work, "update-db", "1d")
    assert res.returncode == 0, res.stderr
    assert "Synced 28 new rows" in res.stdout
    res = run_tool(work, "update-db", "1d")  # idempotent
    assert "Synced 0 new rows" in res.stdout

    # media whose files are all gone locally are marked deleted
    gone = synapse_pg["rows"][0]
    gone_rels = [
        r for r in files if r.startswith((content_path("", gone[2], "local"), thumbnail_dir("", gone[2], "local")))
    ]
    assert len(gone_rels) == 3
    for rel in gone_rels:
        os.unlink(base / rel)
        del files[rel]
    res = run_tool(work, "check-deleted", str(base))
    assert res.returncode == 0, res.stderr
    assert "Updated 1 as deleted" in res.stdout
    res = run_tool(work, "write", str(work / "list.txt"))
    listed = (work / "list.txt").read_text().splitlines()
    assert len(listed) == 2 * 27
    assert content_path("", synapse_pg["rows"][1][2], "local") in listed
    assert thumbnail_dir("", synapse_pg["rows"][1][2], "local") + "/" in listed
    assert content_path("", gone[2], "local") not in listed

    # an earlier, interrupted run stored some files already; one of them is truncated
    bucket = seaweedfs.new_bucket()
    s3 = seaweedfs.client()
    rels = sorted(files)
    done_before = rels[:20]
    for rel in done_before:
        s3.put_object(Bucket=bucket, Key="media/" + rel, Body=files[rel])
    s3.put_object(Bucket=bucket, Key="media/" + rels[20], Body=files[rels[20]][:-1])
    creds = {
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    res = run_tool(
        work,
        "upload",
        str(base),
        bucket,
        "--prefix",
        "media/",
        "--endpoint-url",
        seaweedfs.endpoint,
        "--delete",
        "--concurrency",
        "8",
        "--json",
        env=creds,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert summary["skipped_files"] == 20
    assert summary["uploaded_files"] == len(files) - 20
    assert summary["deleted_files"] == len(files) and summary["deleted_media"] == 27
    assert summary["failed_files"] == 0
    for rel, data in files.items():
        assert s3.get_object(Bucket=bucket, Key="media/" + rel)["Body"].read() == data
        assert not (base / rel).exists()
    assert not any(p.is_file() for p in base.rglob("*"))  # empty directories went too
    assert base.exists()
    # everything is known deleted: a second run has nothing to do
    res = run_tool(
        work,
        "upload",
        str(base),
        bucket,
        "--prefix",
        "media/",
        "--endpoint-url",
        seaweedfs.endpoint,
        "--json",
        env=creds,
    )
    assert json.loads(res.stdout.strip().splitlines()[-1])["media"] == 0


def test_upload_tool_refuses_bad_input(tmp_path: Path) -> None:
    res = run_tool(tmp_path, "upload", str(tmp_path), "--storage-class", "FANCY")
    assert res.returncode == 2 and "invalid choice" in res.stderr
    res = run_tool(tmp_path, "upload", str(tmp_path))
    assert res.returncode == 2 and "needs BUCKET" in res.stderr
    res = run_tool(tmp_path, "update-db", "3w")
    assert res.returncode == 2 and "duration must end in" in res.stderr
    res = run_tool(tmp_path, "update-db", "1d", "--homeserver-config-path", str(tmp_path / "nope.yaml"))
    assert res.returncode == 2 and "Could not find" in res.stderr


def test_upload_keeps_local_files_until_stored_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Failed uploads delete nothing and mark nothing; the next run does the rest."""
    import sqlite3

    from unistore.adapters.synapse.upload import SCHEMA, run_upload
    from unistore.backends.posixfs import PosixFS
    from unistore.layers.chaos import ChaosLayer

    rows = [("", f"m{i:03d}abcdefgh", f"m{i:03d}abcdefgh", "local") for i in range(30)]
    base = tmp_path / "media_store"
    files = _media_store(base, rows)
    monkeypatch.chdir(tmp_path)
    cache = sqlite3.connect("cache.db")
    cache.executescript(SCHEMA)
    with cache:
        cache.executemany("INSERT INTO media VALUES (?, ?, ?, ?, 0)", rows)
    dest = PosixFS(str(tmp_path / "dest"))
    dest.create()
    with ChaosLayer(dest, error_rate=0.5, operations={"store_file"}, seed=7) as flaky:
        first = run_upload(flaky, cache, str(base), "p/", delete=True, concurrency=4, progress=False)
    assert 0 < first.failed_files < len(files)
    assert first.deleted_files == len(files) - first.failed_files
    with dest:
        for rel, data in files.items():
            stored = tmp_path / "dest" / "p" / rel
            assert (base / rel).exists() != stored.exists()  # each file is in exactly one place
            if stored.exists():
                assert stored.read_bytes() == data
        pending = cache.execute("SELECT count(*) FROM media WHERE NOT known_deleted").fetchone()[0]
        assert 0 < pending < len(rows)  # media with a failed file stay pending, the others are done
        second = run_upload(dest, cache, str(base), "p/", delete=True, concurrency=4, progress=False)
    assert second.failed_files == 0
    assert second.uploaded_files == first.failed_files  # only what failed is sent again
    assert second.media == pending
    assert not any(p.is_file() for p in base.rglob("*"))
    assert cache.execute("SELECT count(*) FROM media WHERE NOT known_deleted").fetchone()[0] == 0
