"""Synapse media: unistore's provider and s3_media_upload against synapse-s3-storage-provider 1.7.0.

One run, one private SeaweedFS, the same homeserver configuration apart from the provider:

1. provider: N media of SIZE bytes uploaded through the homeserver (``/_matrix/media/v3/upload``),
   local copies removed, then all downloaded through it (``/_matrix/client/v1/media/download``),
   with CLIENTS concurrent clients; unistore's provider and upstream's, each on a bucket of its own.
2. upload tool: FILES media files of 4 KiB listed in a Synapse SQLite database, offloaded by
   ``s3_media_upload upload`` (unistore's, then upstream's script from its PyPI wheel) to fresh
   buckets, from fresh copies of the media store and cache.db.

Prints times and ratios (>1: unistore is faster)::

    python benchmarks/synapse_media.py [--media 200] [--size 1048576] [--clients 8] [--files 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers.seaweedfs import SeaweedFS, start_seaweedfs  # noqa: E402
from tests.servers.synapse import start_synapse  # noqa: E402

OURS = "unistore.adapters.synapse.S3StorageProviderBackend"
UPSTREAM = "s3_storage_provider.S3StorageProviderBackend"
UPSTREAM_WHEEL = "synapse-s3-storage-provider==1.7.0"


def count_objects(sw: SeaweedFS, bucket: str, prefix: str = "") -> int:
    pages = sw.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sum(page.get("KeyCount", 0) for page in pages)


def provider_round(
    sw: SeaweedFS, bucket: str, module: str, work: Path, media: int, size: int, clients: int
) -> dict[str, float]:
    prefix = f"{work.name}/"
    config = {
        "bucket": bucket,
        "prefix": prefix,
        "endpoint_url": sw.endpoint,
        "access_key_id": sw.access_key,
        "secret_access_key": sw.secret_key,
        "region_name": "us-east-1",
    }
    provider = {
        "module": module,
        "store_local": True,
        "store_remote": True,
        "store_synchronous": True,
        "config": config,
    }
    blobs = [os.urandom(size) for _ in range(media)]
    with start_synapse(work, [provider]) as hs, ThreadPoolExecutor(clients) as pool:
        hs.register()
        t0 = time.perf_counter()
        ids = list(pool.map(lambda b: hs.upload(b), blobs))
        upload = time.perf_counter() - t0
        stored = count_objects(sw, bucket, prefix)
        assert stored >= media, f"{module}: {stored} of {media} objects stored"
        for media_id in ids:
            hs.remove_local(media_id)
        t0 = time.perf_counter()
        bodies = list(pool.map(lambda m: hs.download(m).body, ids))
        download = time.perf_counter() - t0
        assert bodies == blobs, f"{module}: downloads differ"
    return {"upload": upload, "download": download}


def upstream_script(cache: Path) -> Path:
    """Upstream's s3_media_upload, from its wheel (our console script has the same name)."""
    script = cache / "upstream_s3_media_upload"
    if not script.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", UPSTREAM_WHEEL, "-d", str(cache)], check=True
        )
        (wheel,) = cache.glob("synapse_s3_storage_provider-1.7.0-*.whl")
        with zipfile.ZipFile(wheel) as z:
            script.write_bytes(z.read("synapse_s3_storage_provider-1.7.0.data/scripts/s3_media_upload"))
    return script


def make_media_store(base: Path, files: int) -> Path:
    """A media store of ``files`` local media of 4 KiB and a Synapse SQLite database listing them."""
    base.mkdir(parents=True)
    db = base / "homeserver.db"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE local_media_repository (media_id TEXT, created_ts BIGINT, last_access_ts BIGINT, url_cache TEXT)"
    )
    conn.execute("CREATE TABLE remote_media_cache (media_origin TEXT, media_id TEXT, filesystem_id TEXT,"
                 " created_ts BIGINT, last_access_ts BIGINT)")  # fmt: skip
    old = int((time.time() - 86400 * 30) * 1000)
    for i in range(files):
        media_id = f"bench{i:06d}abcdefghijklm"
        path = base / "media_store" / "local_content" / media_id[:2] / media_id[2:4] / media_id[4:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(4096))
        conn.execute("INSERT INTO local_media_repository VALUES (?, ?, NULL, NULL)", (media_id, old))
    conn.commit()
    conn.close()
    (base / "homeserver.yaml").write_text(f"database:\n  name: sqlite3\n  args:\n    database: {db}\n")
    return base


def tool_round(sw: SeaweedFS, command: list[str], template: Path, work: Path, extra: list[str]) -> float:
    shutil.copytree(template, work)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": sw.access_key, "AWS_SECRET_ACCESS_KEY": sw.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    subprocess.run([*command, "--no-progress", "update-db", "1d"], cwd=work, env=env, check=True, capture_output=True)
    bucket = sw.new_bucket()
    t0 = time.perf_counter()
    res = subprocess.run(
        [*command, "--no-progress", "upload", str(work / "media_store"), bucket, "--endpoint-url", sw.endpoint, *extra],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"{command}: {res.stdout}{res.stderr}")
    count = count_objects(sw, bucket)
    files = sum(1 for p in (work / "media_store").rglob("*") if p.is_file())
    assert count == files, f"{command}: {count} objects for {files} files"
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--media", type=int, default=200)
    ap.add_argument("--size", type=int, default=1024 * 1024)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16, help="unistore's s3_media_upload --concurrency")
    ap.add_argument("--skip-provider", action="store_true")
    ap.add_argument("--skip-tool", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="unistore-bench-synapse-"))
    try:
        with start_seaweedfs(tmp / "weed") as sw:
            if not args.skip_provider:
                # one bucket for both (SeaweedFS grows a new bucket's volumes on its first writes), warmed up by a
                # round of each, and the providers in the order A B B A: the best round of each counts
                bucket = sw.new_bucket()
                for i in range(32):
                    sw.client().put_object(Bucket=bucket, Key=f"warmup/{i}", Body=os.urandom(args.size))
                for n, module in enumerate((UPSTREAM, OURS)):  # the first homeserver rounds run slow: not counted
                    provider_round(
                        sw, bucket, module, tmp / f"hs-warmup-{n}", max(10, args.media // 4), args.size, args.clients
                    )
                rounds: dict[str, list[dict[str, float]]] = {"unistore": [], "upstream": []}
                for n, (label, module) in enumerate(
                    [("unistore", OURS), ("upstream", UPSTREAM), ("upstream", UPSTREAM), ("unistore", OURS)]
                ):
                    work = tmp / f"hs-{label}-{n}"
                    rounds[label].append(provider_round(sw, bucket, module, work, args.media, args.size, args.clients))
                mib = args.media * args.size / 2**20
                print(
                    f"provider, {args.media} media x {args.size} bytes, {args.clients} clients, through the homeserver:"
                )
                for phase in ("upload", "download"):
                    ours = min(r[phase] for r in rounds["unistore"])
                    theirs = min(r[phase] for r in rounds["upstream"])
                    print(
                        f"  {phase:<9} unistore {ours:6.2f}s ({mib / ours:6.1f} MiB/s)   upstream {theirs:6.2f}s "
                        f"({mib / theirs:6.1f} MiB/s)   ratio {theirs / ours:.2f}x"
                    )
            if not args.skip_tool:
                template = make_media_store(tmp / "tool-template", args.files)
                ours_cmd = [sys.executable, "-m", "unistore.adapters.synapse.upload"]
                theirs_cmd = [sys.executable, str(upstream_script(tmp))]
                ours = tool_round(sw, ours_cmd, template, tmp / "tool-ours", ["--concurrency", str(args.concurrency)])
                theirs = tool_round(sw, theirs_cmd, template, tmp / "tool-upstream", [])
                print(f"s3_media_upload upload, {args.files} files of 4 KiB:")
                print(
                    f"  unistore {ours:6.2f}s ({args.files / ours:6.0f} files/s)   upstream {theirs:6.2f}s "
                    f"({args.files / theirs:6.0f} files/s)   ratio {theirs / ours:.2f}x"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
