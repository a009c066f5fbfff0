"""The ZODB adapter against raw boto3 and ZODB's own BlobStorage, on one private SeaweedFS, in one run.

    /work/venv/bin/python benchmarks/zodb_blobs.py [--size-kib 100] [--count 40]

FileStorage base, blobs of ``size-kib`` KiB (targets from issue 5), medians over ``count``
iterations, every measurement interleaved with its peer so drift hits both alike:

1. commit latency of a one-blob transaction (``transaction.commit()``) against one raw boto3
   ``put_object`` of the same bytes (target <= 1.25x);
2. cold read (``loadBlob`` into an empty cache, then reading the file) against one raw boto3
   ``get_object`` (+ ``read()``) (target <= 1.15x);
3. warm read (``Blob.open('r').read()`` through a ZODB connection) against the same on ZODB's own
   ``BlobStorage`` (FileStorage with ``blob_dir``) (target <= 1.0x, "no slower");
4. a ten-blob transaction against the one-blob commit (target <= 3x).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import transaction  # noqa: E402
import ZODB  # noqa: E402
from ZODB.blob import Blob  # noqa: E402
from ZODB.FileStorage import FileStorage  # noqa: E402
from ZODB.MappingStorage import MappingStorage  # noqa: E402

from tests.servers.seaweedfs import start_seaweedfs  # noqa: E402
from unistore.adapters.zodb import S3BlobStorage  # noqa: E402


def _boto3(server: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )


def _timed(func: Any) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-kib", type=int, default=100)
    ap.add_argument("--count", type=int, default=40)
    args = ap.parse_args()
    size = args.size_kib * 1024
    work = Path(tempfile.mkdtemp(prefix="unistore-zodb-bench-"))
    try:
        with start_seaweedfs(work / "weed") as server:
            return run(server, work, size, args.count)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(server: Any, work: Path, size: int, count: int) -> int:
    client = _boto3(server)
    bucket = server.new_bucket()
    url = server.url(bucket, "zodb")

    ours = S3BlobStorage(FileStorage(str(work / "ours.fs")), url, str(work / "cache"), create=True)
    db = ZODB.DB(ours)
    conn = db.open()
    zodb_db = ZODB.DB(FileStorage(str(work / "zodb.fs"), blob_dir=str(work / "zodb-blobs")))
    zconn = zodb_db.open(transaction_manager=transaction.TransactionManager())

    payloads = [os.urandom(size) for _ in range(4)]
    # warm up both paths (connections, imports, first bucket writes)
    for i in range(3):
        client.put_object(Bucket=bucket, Key=f"raw/warm{i}", Body=payloads[0])
        client.get_object(Bucket=bucket, Key=f"raw/warm{i}")["Body"].read()
        conn.root()["warm"] = Blob(payloads[0])
        transaction.commit()

    put, put10, commit1, commit10, get, cold, warm_ours, warm_zodb = ([] for _ in range(8))
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=10)
    committed: list[tuple[bytes, bytes]] = []
    for i in range(count):
        data = payloads[i % len(payloads)]
        put.append(_timed(lambda: client.put_object(Bucket=bucket, Key=f"raw/{i}", Body=data)))  # noqa: B023

        conn.root()[f"b{i}"] = Blob(data)
        commit1.append(_timed(transaction.commit))
        blob = conn.root()[f"b{i}"]
        blob._p_activate()
        committed.append((blob._p_oid, blob._p_serial))

        for j in range(10):
            conn.root()[f"t{i}-{j}"] = Blob(payloads[j % len(payloads)])
        commit10.append(_timed(transaction.commit))

        # the floor of the ten-blob commit here: ten raw PUTs at once (server and client share 2 cores)
        def ten_puts() -> None:
            keys = [f"raw/{i}-{j}" for j in range(10)]  # noqa: B023
            list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=data), keys))  # noqa: B023

        put10.append(_timed(ten_puts))

    # cold reads: a reader with an empty cache, interleaved with raw GETs of the same sizes
    reader = S3BlobStorage(MappingStorage(), url, str(work / "cold-cache"))

    def read_cold(oid: bytes, tid: bytes) -> None:
        with open(reader.loadBlob(oid, tid), "rb") as f:
            f.read()

    for i, (oid, tid) in enumerate(committed):
        get.append(_timed(lambda: client.get_object(Bucket=bucket, Key=f"raw/{i}")["Body"].read()))  # noqa: B023
        cold.append(_timed(lambda: read_cold(oid, tid)))  # noqa: B023

    # warm reads through ZODB connections: ours (cache) against ZODB's BlobStorage (blob_dir)
    zconn.root()["w"] = Blob(payloads[0])
    zconn.transaction_manager.commit()
    conn.root()["w"] = Blob(payloads[0])
    transaction.commit()

    def read_warm(c: Any) -> None:
        with c.root()["w"].open("r") as f:
            f.read()

    read_warm(conn)
    read_warm(zconn)
    for _ in range(count * 5):
        warm_ours.append(_timed(lambda: read_warm(conn)))
        warm_zodb.append(_timed(lambda: read_warm(zconn)))

    pool.shutdown()
    reader.close()
    conn.close()
    db.close()
    zconn.close()
    zodb_db.close()

    med = statistics.median
    rows = [
        ("one-blob commit vs boto3 put_object", med(commit1), med(put), 1.25),
        ("cold read vs boto3 get_object", med(cold), med(get), 1.15),
        ("warm read vs ZODB BlobStorage", med(warm_ours), med(warm_zodb), 1.0),
        ("ten-blob commit vs one-blob commit", med(commit10), med(commit1), 3.0),
        ("(context) ten concurrent raw PUTs vs one", med(put10), med(put), 0),
    ]
    print(f"SeaweedFS {server.endpoint}, FileStorage base, {size // 1024} KiB blobs, medians of {count}")
    print(f"{'comparison':<40}{'unistore ms':>13}{'peer ms':>10}{'ratio':>8}{'target':>9}")
    for label, ours_t, peer_t, target in rows:
        ratio = ours_t / peer_t
        if not target:
            print(f"{label:<40}{ours_t * 1e3:>13.3f}{peer_t * 1e3:>10.3f}{ratio:>7.2f}x")
            continue
        ok = "ok" if ratio <= target else "MISS"
        print(f"{label:<40}{ours_t * 1e3:>13.3f}{peer_t * 1e3:>10.3f}{ratio:>7.2f}x{'<= ' + str(target):>9} {ok}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
