"""The Synapse adapter in a real homeserver (one start for this module), against SeaweedFS, posixfs and sftp.

The homeserver runs these media storage providers, tried by Synapse in this order on a download:

1. ours, read-only, on bucket U (which upstream's provider writes: provider 6)
2. upstream's synapse-s3-storage-provider, read-only, on bucket A2 (which ours writes: provider 7)
3. ours on bucket A (S3)
4. ours on a posixfs ``url``
5. ours on an sftp ``url``
6. upstream's, writing bucket U
7. ours, writing bucket A2
8. ours, read-only, on bucket R with auto-restore

Every upload goes to providers 3-7. A test picks the provider it checks by deleting the local copy
and the objects of the providers before it, and checks in the homeserver's log which one answered.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SFTPServer
from tests.servers.synapse import SERVER_NAME, Synapse, start_synapse

OURS = "unistore.adapters.synapse.S3StorageProviderBackend"
UPSTREAM = "s3_storage_provider.S3StorageProviderBackend"
PREFIX = "media/"
READ_ONLY = {"store_local": False, "store_remote": False, "store_synchronous": False}
WRITER = {"store_local": True, "store_remote": True, "store_synchronous": True}


class Env:
    def __init__(self, hs: Synapse, sw: SeaweedFS, buckets: dict[str, str], posix: Path, sftp_dir: Path):
        self.hs = hs
        self.sw = sw
        self.buckets = buckets
        self.posix = posix
        self.sftp_dir = sftp_dir

    def keys(self, bucket: str, media_id: str) -> dict[str, bytes]:
        """The objects of ``media_id`` (content and thumbnails) in ``bucket``: key -> bytes."""
        out = {}
        for rel in (self.hs.content_rel(media_id), self.hs.thumbnails_rel(media_id) + "/"):
            resp = self.sw.client().list_objects_v2(Bucket=self.buckets[bucket], Prefix=PREFIX + rel)
            for obj in resp.get("Contents", []):
                body = self.sw.client().get_object(Bucket=self.buckets[bucket], Key=obj["Key"])["Body"].read()
                out[obj["Key"]] = body
        return out

    def drop(self, media_id: str, *where: str) -> None:
        """Delete ``media_id``'s objects from the named places (bucket names, "posix", "sftp") and locally."""
        self.hs.remove_local(media_id)
        for place in where:
            if place in ("posix", "sftp"):
                root = (self.posix if place == "posix" else self.sftp_dir) / PREFIX
                for rel in (self.hs.content_rel(media_id), self.hs.thumbnails_rel(media_id)):
                    path = root / rel
                    if path.is_dir():
                        for child in path.iterdir():
                            child.unlink()
                    elif path.exists():
                        path.unlink()
            else:
                for key in self.keys(place, media_id):
                    self.sw.client().delete_object(Bucket=self.buckets[place], Key=key)

    def served_by(self, key: str, bucket_or_url: str) -> bool:
        return any(
            f"fetching {key} from S3StorageProviderBackend[{bucket_or_url}" in line
            for line in self.hs.log_text().splitlines()
        )


def _png(size: int = 64) -> bytes:
    from PIL import Image

    img = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def env(seaweedfs: SeaweedFS, sshd: SFTPServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    from unistore.backends.posixfs import PosixFS
    from unistore.backends.sftp import SFTPBackend

    work = tmp_path_factory.mktemp("synapse")
    buckets = {name: seaweedfs.new_bucket() for name in ("U", "A", "A2", "R")}
    posix = work / "posix"
    PosixFS(str(posix)).create()
    sftp_url = sshd.url("synapse-media")
    sftp_options = sshd.options()
    SFTPBackend.from_url(sftp_url, **sftp_options).create()
    # something for auto-restore to bring back at start-up
    seaweedfs.client().put_object(
        Bucket=buckets["R"], Key=PREFIX + "local_content/rs/tu/pstartup", Body=b"restored at start-up"
    )

    def s3(bucket: str, **extra: Any) -> dict[str, Any]:
        return {
            "bucket": buckets[bucket],
            "prefix": PREFIX,
            "endpoint_url": seaweedfs.endpoint,
            "access_key_id": seaweedfs.access_key,
            "secret_access_key": seaweedfs.secret_key,
            "region_name": "us-east-1",
            **extra,
        }

    providers = [
        {"module": OURS, **READ_ONLY, "config": s3("U", timeout=10, threadpool_size=2)},
        {"module": UPSTREAM, **READ_ONLY, "config": s3("A2")},
        {"module": OURS, **WRITER, "config": s3("A")},
        {"module": OURS, **WRITER, "config": {"url": f"file://{posix}", "prefix": PREFIX}},
        {"module": OURS, **WRITER, "config": {"url": sftp_url, "prefix": PREFIX, "backend_options": sftp_options}},
        {"module": UPSTREAM, **WRITER, "config": s3("U")},
        {"module": OURS, **WRITER, "config": s3("A2")},
        {
            "module": OURS,
            **READ_ONLY,
            "config": s3("R", auto_restore=True, auto_restore_monitor_interval=1, auto_restore_max_bytes="10M"),
        },
    ]
    with start_synapse(work / "hs", providers) as hs:
        hs.register()
        yield Env(hs, seaweedfs, buckets, posix, sshd.local_path("synapse-media"))


def _upload_image(env: Env) -> tuple[str, bytes, dict[str, bytes]]:
    """Upload a PNG; return its media id, bytes, and the local thumbnail files (rel path -> bytes)."""
    data = _png()
    media_id = env.hs.upload(data, "image/png", "a.png")
    thumbs = {rel: (env.hs.media_store / rel).read_bytes() for rel in env.hs.local_files(media_id) if "thumb" in rel}
    assert any(rel.endswith("32-32-image-png-crop") for rel in thumbs), thumbs
    return media_id, data, thumbs


def _check_download(env: Env, media_id: str, data: bytes, thumbs: dict[str, bytes], served_by: str) -> None:
    assert env.hs.local_files(media_id) == []
    res = env.hs.download(media_id)
    assert res.status == 200, res.body[:300]
    assert res.body == data
    assert env.served_by(PREFIX + env.hs.content_rel(media_id), served_by)
    res = env.hs.thumbnail(media_id, 32, 32, "crop")
    assert res.status == 200, res.body[:300]
    (rel,) = [r for r in thumbs if r.endswith("32-32-image-png-crop")]
    assert res.body == thumbs[rel]
    assert env.served_by(PREFIX + rel, served_by)


def test_round_trip_s3(env: Env) -> None:
    media_id, data, thumbs = _upload_image(env)
    stored = env.keys("A", media_id)
    assert stored[PREFIX + env.hs.content_rel(media_id)] == data  # upstream's layout under the prefix
    assert {PREFIX + rel: body for rel, body in thumbs.items()}.items() <= stored.items()
    env.drop(media_id, "U", "A2")
    _check_download(env, media_id, data, thumbs, f"s3:/{env.buckets['A']}")


def test_round_trip_posixfs_url(env: Env) -> None:
    media_id, data, thumbs = _upload_image(env)
    assert (env.posix / PREFIX / env.hs.content_rel(media_id)).read_bytes() == data
    env.drop(media_id, "U", "A2", "A")
    _check_download(env, media_id, data, thumbs, f"file://{env.posix}")


def test_round_trip_sftp_url(env: Env) -> None:
    media_id, data, thumbs = _upload_image(env)
    assert (env.sftp_dir / PREFIX / env.hs.content_rel(media_id)).read_bytes() == data
    env.drop(media_id, "U", "A2", "A", "posix")
    _check_download(env, media_id, data, thumbs, "sftp://")


def test_ours_serves_what_upstream_wrote(env: Env) -> None:
    media_id, data, thumbs = _upload_image(env)
    key = PREFIX + env.hs.content_rel(media_id)
    assert env.keys("U", media_id)[key] == data  # written by upstream's provider
    env.drop(media_id)
    _check_download(env, media_id, data, thumbs, f"s3:/{env.buckets['U']}")
    assert f"Fetching {key} from S3" not in env.hs.log_text()  # upstream's log line: it was not asked


def test_upstream_serves_what_ours_wrote(env: Env) -> None:
    media_id, data, _ = _upload_image(env)
    key = PREFIX + env.hs.content_rel(media_id)
    assert env.keys("A2", media_id)[key] == data  # written by ours
    env.drop(media_id, "U")
    res = env.hs.download(media_id)
    assert res.status == 200 and res.body == data
    log = env.hs.log_text()
    assert f"media {key} not found in S3StorageProviderBackend[s3:/{env.buckets['U']}" in log
    assert f"Fetching {key} from S3" in log  # upstream's provider (on bucket A2) answered
    assert not any(f"fetching {key} from" in line for line in log.splitlines())


def test_download_fails_in_time_while_s3_is_stopped_and_works_after(env: Env) -> None:
    media_id = env.hs.upload(os.urandom(200_000))
    data = env.keys("U", media_id)[PREFIX + env.hs.content_rel(media_id)]
    env.drop(media_id)
    assert env.sw.proc is not None
    os.kill(env.sw.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        try:
            res = env.hs.download(media_id, timeout=120)
            status = res.status
        except OSError:  # the connection closed without an answer: also an error the client sees
            status = -1
        elapsed = time.monotonic() - t0
    finally:
        os.kill(env.sw.proc.pid, signal.SIGCONT)
    assert status != 200
    assert elapsed < 60, elapsed
    res = env.hs.download(media_id)
    assert res.status == 200 and res.body == data


def test_paused_clients_hold_no_pool_thread(env: Env) -> None:
    """Provider 1 has two threads; three clients that stop reading big downloads must not block a fourth.

    16 MiB is well above what the kernel (4 MiB send buffer), Twisted and the read-ahead (1 MiB) hold.
    """
    big = [env.hs.upload(os.urandom(16 * 1024 * 1024)) for _ in range(3)]
    small_data = os.urandom(100_000)
    small = env.hs.upload(small_data)
    for media_id in (*big, small):
        env.drop(media_id)
    socks = []
    try:
        for media_id in big:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
            s.connect(("127.0.0.1", env.hs.port))
            path = f"/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}"
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {env.hs.token}\r\n\r\n".encode())
            assert s.recv(64 * 1024).startswith(b"HTTP/1.1 200")  # streaming started, then we stop reading
            socks.append(s)
        time.sleep(1)
        res = env.hs.download(small, timeout=60)
        assert res.status == 200 and res.body == small_data
    finally:
        for s in socks:
            s.close()


def _wait_for(path: Path, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_bytes()
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear within {timeout}s")


def test_auto_restore_at_startup_and_on_the_interval(env: Env) -> None:
    store = env.hs.media_store
    assert _wait_for(store / "local_content/rs/tu/pstartup") == b"restored at start-up"
    body = os.urandom(5000)
    env.sw.client().put_object(Bucket=env.buckets["R"], Key=PREFIX + "remote_content/example.org/ab/cd/efgh", Body=body)
    restored = store / "remote_content/example.org/ab/cd/efgh"
    assert _wait_for(restored) == body
    os.unlink(restored)
    assert _wait_for(restored) == body
    assert "auto-restore: 1 of 1 missing files restored" in env.hs.log_text()
    leftovers = [p for p in restored.parent.iterdir() if "unistore-restore" in p.name]
    assert leftovers == []


def test_upload_tool_on_the_homeservers_sqlite_database(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`unistore synapse update` + `upload --url ... --delete` on a copy of the live homeserver's SQLite database."""
    import argparse
    import shutil
    import sqlite3

    from unistore.adapters.synapse.cli import register
    from unistore.backends.posixfs import PosixFS

    env.hs.upload(os.urandom(3000))  # at least one media
    with sqlite3.connect(env.hs.database) as src, sqlite3.connect(tmp_path / "homeserver.db") as dst:
        src.backup(dst)
    shutil.copytree(env.hs.media_store, tmp_path / "media_store")
    (tmp_path / "homeserver.yaml").write_text("database:\n  name: sqlite3\n  args:\n    database: homeserver.db\n")
    with sqlite3.connect(tmp_path / "homeserver.db") as db:
        media_ids = [r[0] for r in db.execute("SELECT media_id FROM local_media_repository WHERE url_cache IS NULL")]
    local = {
        rel: (tmp_path / "media_store" / rel).read_bytes()
        for media_id in media_ids
        for rel in Synapse.local_files(env.hs, media_id)  # the live store's names, read from the copy
        if (tmp_path / "media_store" / rel).exists()
    }
    assert local
    dest = tmp_path / "offloaded"
    PosixFS(str(dest)).create()

    parser = argparse.ArgumentParser(prog="unistore")
    register(parser.add_subparsers(dest="command"))

    def cli(*argv: str) -> str:
        args = parser.parse_args(["synapse", "--no-progress", *argv])
        assert args.func(args) == 0
        return capsys.readouterr().out

    monkeypatch.chdir(tmp_path)
    out = cli("update", "media_store", "0s")
    assert f"Synced {len(media_ids)} new rows" in out
    out = cli("upload", "media_store", "--url", f"file://{dest}", "--prefix", "media/", "--delete", "--json")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["uploaded_files"] == summary["deleted_files"] == len(local)
    for rel, data in local.items():
        assert (dest / "media" / rel).read_bytes() == data
        assert not (tmp_path / "media_store" / rel).exists()
    assert (tmp_path / "media_store/local_content/rs/tu/pstartup").exists()  # not Synapse's: left alone
    with sqlite3.connect(tmp_path / "cache.db") as cache:
        assert cache.execute("SELECT count(*) FROM media WHERE NOT known_deleted").fetchone()[0] == 0
