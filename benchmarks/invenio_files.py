"""invenio-files-rest with unistore's storage against invenio-s3 6.1, on one private SeaweedFS.

    .venv/bin/python benchmarks/invenio_files.py [--count 50] [--mib 8] [--big-mib 1024] [--rounds 2]

Two real apps (tests/servers/invenio_app.py, SQLite), each served by its own process: unistore's
storage in this venv, invenio-s3 in the venv of tests/servers/invenio_s3_venv.py (built on first
use). Comparisons (targets from issue 12):

1. ``count`` files of ``mib`` MiB uploaded (REST ``PUT``) then downloaded (REST ``GET``, following
   the redirect both storages answer with) one after another: unistore against invenio-s3
   (>= 1.2x for upload + download);
2. one ``big-mib`` MiB file uploaded directly to S3 in parallel parts through presigned URLs (the
   app only hands out URLs and completes) against a REST upload of the same file through the app:
   the app process must receive and send no file bytes (counted by a WSGI middleware), and the
   direct upload must be >= 2x faster.

Rounds alternate the two apps; the best round of each counts. Prints seconds and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402

from tests.servers.invenio_app import base_config, create_app, init_db, write_config  # noqa: E402
from tests.servers.invenio_s3_venv import ensure_invenio_s3_venv  # noqa: E402
from tests.servers.invenio_site import s3_config  # noqa: E402
from tests.servers.seaweedfs import SeaweedFS, start_seaweedfs  # noqa: E402

MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_app(workdir: Path, sw: SeaweedFS, storage: str, python: str) -> Iterator[tuple[str, str]]:
    """An app process on a free port; yields (base URL, bucket id); killed by PID afterwards."""
    workdir.mkdir(parents=True)
    config = base_config(workdir)
    config.update(s3_config(sw))
    config["MAX_CONTENT_LENGTH"] = None  # invenio-files-rest's 16 MiB default caps REST uploads
    config["STORAGE"] = storage
    if storage == "invenio-s3":
        config["FILES_REST_STORAGE_FACTORY"] = "invenio_s3.s3fs_storage_factory"
    bucket = sw.new_bucket()
    app = create_app({**config, "STORAGE": "unistore"})  # only to create the tables and the bucket
    init_db(app, {"s3": f"s3://{bucket}/files"}, default="s3")
    from invenio_db import db
    from invenio_files_rest.models import Bucket, Location

    with app.app_context():
        b = Bucket.create(location=Location.get_by_name("s3"))
        db.session.commit()
        bucket_id = str(b.id)
        db.session.remove()
        db.engine.dispose()
    path = write_config(config, workdir / "config.json")
    port = free_port()
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, UNISTORE_INVENIO_TEST_CONFIG=str(path), PYTHONPATH=pythonpath)
    log = open(workdir / "app.log", "wb")
    proc = subprocess.Popen(
        [python, "-m", "tests.servers.invenio_app", "serve", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/_bytes", timeout=2)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((workdir / "app.log").read_text()[-3000:]) from None
                time.sleep(0.2)
        yield base, bucket_id
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class Source:
    """``size`` bytes made of one random block repeated, readable as a stream with a length."""

    def __init__(self, block: bytes, size: int) -> None:
        self.block = block
        self.size = size
        self.pos = 0

    def __len__(self) -> int:
        return self.size - self.pos

    def read(self, n: int = -1) -> bytes:
        if self.pos >= self.size:
            return b""
        n = self.size - self.pos if n < 0 else min(n, self.size - self.pos)
        start = self.pos % len(self.block)
        out = self.block[start : start + min(n, len(self.block) - start)]
        self.pos += len(out)
        return out

    def slice(self, start: int, length: int) -> bytes:
        self.pos = start
        out = bytearray()
        while len(out) < length:
            out += self.read(length - len(out))
        return bytes(out)


def rest_round(base: str, bucket: str, files: list[bytes], tag: str) -> tuple[float, float]:
    http = requests.Session()
    t0 = time.perf_counter()
    for i, data in enumerate(files):
        r = http.put(f"{base}/files/{bucket}/{tag}-{i}.bin", data=data, timeout=300)
        r.raise_for_status()
    up = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, data in enumerate(files):
        r = http.get(f"{base}/files/{bucket}/{tag}-{i}.bin", timeout=300)
        r.raise_for_status()
        if len(r.content) != len(data):
            raise RuntimeError(f"download {i}: {len(r.content)} bytes, not {len(data)}")
    return up, time.perf_counter() - t0


def app_bytes(base: str) -> dict[str, int]:
    return requests.get(base + "/_bytes", timeout=30).json()  # type: ignore[no-any-return]


def direct_upload(base: str, bucket: str, key: str, src: Source, part: int, threads: int) -> float:
    http = requests.Session()
    t0 = time.perf_counter()
    r = http.post(
        f"{base}/multipart/{bucket}/files/?multipart=True", json={"key": key, "size": src.size, "partSize": part}
    )
    r.raise_for_status()
    up = r.json()
    numbers = list(range(1, up["parts"] + 1))
    urls = http.get(f"{base}/multipart/{bucket}/files/{key}/{up['uploadId']}/{','.join(map(str, numbers))}/presigned")
    urls.raise_for_status()
    presigned = urls.json()["presignedUrls"]

    def put(n: int) -> dict[str, Any]:
        body = Source(src.block, src.size).slice((n - 1) * part, min(part, src.size - (n - 1) * part))
        res = requests.put(presigned[str(n)], data=body, timeout=600)
        res.raise_for_status()
        return {"PartNumber": n, "ETag": res.headers["ETag"]}

    with ThreadPoolExecutor(threads) as pool:
        parts = list(pool.map(put, numbers))
    done = http.post(f"{base}/multipart/{bucket}/files/{key}/{up['uploadId']}/complete", json={"parts": parts})
    done.raise_for_status()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--mib", type=int, default=8)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--part-mib", type=int, default=64)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    peer_python = str(ensure_invenio_s3_venv())
    tmp = Path(tempfile.mkdtemp(prefix="unistore-bench-invenio-"))
    files = [os.urandom(args.mib * MiB) for _ in range(args.count)]
    try:
        with (
            start_seaweedfs(tmp / "weed") as sw,
            served_app(tmp / "unistore", sw, "unistore", sys.executable) as (ours, ours_bucket),
            served_app(tmp / "invenio-s3", sw, "invenio-s3", peer_python) as (peer, peer_bucket),
        ):
            results: dict[str, list[tuple[float, float]]] = {"unistore": [], "invenio-s3": []}
            for r in range(args.rounds):
                order = [("unistore", ours, ours_bucket), ("invenio-s3", peer, peer_bucket)]
                for name, base, bucket in order if r % 2 == 0 else order[::-1]:
                    results[name].append(rest_round(base, bucket, files, f"r{r}"))
            print(f"1. {args.count} x {args.mib} MiB through the REST API (best of {args.rounds})")
            best = {k: min(v, key=sum) for k, v in results.items()}
            for name, (up, down) in best.items():
                print(f"   {name:<11} upload {up:6.2f}s  download {down:6.2f}s  total {up + down:6.2f}s")
            ratio = sum(best["invenio-s3"]) / sum(best["unistore"])
            print(f"   ratio invenio-s3/unistore: {ratio:.2f}x (target >= 1.2x)")

            block = os.urandom(64 * MiB)
            size = args.big_mib * MiB + 12345  # not a multiple of the part size
            src = Source(block, size)
            before = app_bytes(ours)
            t_direct = min(
                direct_upload(ours, ours_bucket, f"direct-{r}.bin", src, args.part_mib * MiB, args.threads)
                for r in range(args.rounds)
            )
            after = app_bytes(ours)
            moved = (after["received"] - before["received"]) + (after["sent"] - before["sent"])
            t_rest = []
            for r in range(args.rounds):
                t0 = time.perf_counter()
                res = requests.put(f"{ours}/files/{ours_bucket}/rest-{r}.bin", data=Source(block, size), timeout=3600)
                res.raise_for_status()
                t_rest.append(time.perf_counter() - t0)
            print(f"2. one {size / MiB:.0f} MiB file (best of {args.rounds})")
            print(f"   direct multipart, {args.threads} parallel parts of {args.part_mib} MiB: {t_direct:6.2f}s")
            print(f"   REST upload through the app:                    {min(t_rest):6.2f}s")
            print(f"   app bytes during the direct uploads: {moved} (JSON only; file bytes: 0)")
            print(f"   ratio REST/direct: {min(t_rest) / t_direct:.2f}x (target >= 2x)")
            print(
                json.dumps(
                    {
                        "rest": {k: {"upload": v[0], "download": v[1]} for k, v in best.items()},
                        "rest_ratio": ratio,
                        "direct_s": t_direct,
                        "rest_big_s": min(t_rest),
                        "direct_app_bytes": moved,
                        "big_ratio": min(t_rest) / t_direct,
                    }
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
