"""unistore's S3 backend against raw boto3 and obstore, on one private SeaweedFS, in one run.

    /work/venv/bin/python benchmarks/s3_vs_peers.py [--count 2000] [--big-mib 256] [--rounds 3]

Three comparisons (targets from issue 3):

1. ``count`` values of 4 KiB stored then loaded one at a time: unistore ``store``/``load`` against
   boto3 ``put_object``/``get_object`` (target >= 1.5x) and obstore ``put``/``get`` (>= 0.9x);
   ``store`` also with ``name_checks=False`` (no directory LIST before each PUT);
2. the same through ``store_many``/``load_many`` against boto3 one at a time (>= 3x);
3. one ``big-mib`` MiB value stored from a file and loaded to a file: unistore ``store_file``/
   ``load_file`` against obstore (>= 1.0x) and boto3 ``upload_file``/``download_file`` with default
   settings (>= 1.5x).

Each client runs ``rounds`` times, interleaved with the others (the order rotates every round) so
that drift in the shared machine hits all of them alike; the median round of each counts (--stat best: the best). Prints
ops/s (MB/s) and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers.seaweedfs import SeaweedFS, start_seaweedfs  # noqa: E402
from unistore.backends.s3 import S3Backend  # noqa: E402

MiB = 1024 * 1024


def boto3_client(sw: SeaweedFS) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=sw.endpoint,
        aws_access_key_id=sw.access_key,
        aws_secret_access_key=sw.secret_key,
        region_name="us-east-1",
    )


def obstore_store(sw: SeaweedFS, bucket: str) -> Any:
    from obstore.store import S3Store

    return S3Store(
        bucket,
        config={
            "endpoint": sw.endpoint,
            "access_key_id": sw.access_key,
            "secret_access_key": sw.secret_key,
            "region": "us-east-1",
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
    )


def timed(func: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


STAT = "median"  # or "best", set by --stat
SLICE = 100  # keys per interleaving slice of the small-value phases


def best(results: dict[str, list[float]], key: str) -> float:
    """The round figure that counts: the median of the rounds (default) or the best one."""
    return max(results[key]) if STAT == "best" else statistics.median(results[key])


def small_values(sw: SeaweedFS, count: int, rounds: int) -> dict[str, list[float]]:
    bucket = sw.new_bucket()
    client = boto3_client(sw)
    store = obstore_store(sw, bucket)
    import obstore

    be = S3Backend.from_url(sw.url(bucket, "unistore"))
    be.create()
    be.open()
    unchecked = S3Backend.from_url(sw.url(bucket, "unistore"), name_checks=False)  # no directory LIST per store
    unchecked.open()
    value = os.urandom(4096)
    keys = [f"{i:08x}" for i in range(count)]
    res: dict[str, list[float]] = {}
    # each phase runs the clients interleaved in slices of SLICE keys, the order rotating per slice, so
    # that drift of the shared machine (and of the server) hits every client alike
    puts: dict[str, Callable[[list[str]], object]] = {
        "boto3 put": lambda ks: [client.put_object(Bucket=bucket, Key=f"boto3/{k}", Body=value) for k in ks],
        "obstore put": lambda ks: [obstore.put(store, f"obstore/{k}", value) for k in ks],
        "unistore store": lambda ks: [be.store(f"one/{k}", value) for k in ks],
        "unistore store unchecked": lambda ks: [unchecked.store(f"raw/{k}", value) for k in ks],
        "unistore store_many": lambda ks: be.store_many((f"bulk/{k}", value) for k in ks),
    }
    gets: dict[str, Callable[[list[str]], object]] = {
        "boto3 get": lambda ks: [client.get_object(Bucket=bucket, Key=f"boto3/{k}")["Body"].read() for k in ks],
        "obstore get": lambda ks: [obstore.get(store, f"obstore/{k}").bytes() for k in ks],
        "unistore load": lambda ks: [be.load(f"one/{k}") for k in ks],
        "unistore load_many": lambda ks: sum(len(v) for _, v in be.load_many(f"bulk/{k}" for k in ks)),
    }
    slices = [keys[i : i + SLICE] for i in range(0, count, SLICE)]
    for r in range(rounds):
        for phase in (puts, gets):
            spent = dict.fromkeys(phase, 0.0)
            names = list(phase)
            for j, ks in enumerate(slices):
                shift = (r + j) % len(names)
                for name in names[shift:] + names[:shift]:
                    op = phase[name]
                    spent[name] += timed(lambda op=op, ks=ks: op(ks))
            for name, seconds in spent.items():
                res.setdefault(name, []).append(count / seconds)
        print(f"  round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}/s" for k, v in res.items()), flush=True)
    assert be.load(f"one/{keys[-1]}") == value and be.load(f"bulk/{keys[0]}") == value
    be.close()
    unchecked.close()
    return res


def big_value(sw: SeaweedFS, size_mib: int, rounds: int, tmp: str) -> dict[str, list[float]]:
    import obstore
    from boto3.s3.transfer import TransferConfig

    bucket = sw.new_bucket()
    client = boto3_client(sw)
    store = obstore_store(sw, bucket)
    be = S3Backend.from_url(sw.url(bucket, "unistore"))
    be.create()
    be.open()
    src = os.path.join(tmp, "src.bin")
    dst = os.path.join(tmp, "dst.bin")
    block = os.urandom(MiB)
    with open(src, "wb") as f:
        for _ in range(size_mib):
            f.write(block)
    size = size_mib * MiB
    res: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        res.setdefault(name, []).append(size / MiB / seconds)
        if name in ("boto3 download_file", "obstore get", "unistore load_file"):
            assert os.path.getsize(dst) == size
            os.unlink(dst)

    # uploads and downloads are separate phases: a download must not share the server with the
    # clean-up of an object another client has just overwritten. Each client uploads to its own key;
    # every client downloads the same object.
    src_key = "unistore/source"  # the unistore backend (prefix "unistore") calls it "source"
    client.upload_file(src, bucket, src_key)

    def obstore_get() -> None:
        with open(dst, "wb") as f:
            for chunk in obstore.get(store, src_key).stream():
                f.write(chunk)

    def unistore_store() -> None:
        with open(src, "rb") as f:
            be.store_file("big", f)

    def unistore_load() -> None:
        with open(dst, "wb") as f:
            be.load_file("source", f)

    uploads: dict[str, Callable[[], object]] = {
        "boto3 upload_file": lambda: client.upload_file(src, bucket, "boto3-big", Config=TransferConfig()),
        "obstore put": lambda: obstore.put(store, "obstore-big", Path(src)),
        "unistore store_file": unistore_store,
    }
    downloads: dict[str, Callable[[], object]] = {
        "boto3 download_file": lambda: client.download_file(bucket, src_key, dst, Config=TransferConfig()),
        "obstore get": obstore_get,
        "unistore load_file": unistore_load,
    }
    for phase in (uploads, downloads):
        names = list(phase)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the order per round
                add(name, timed(phase[name]))
            print(f"  round {r + 1}: " + ", ".join(f"{k} {res[k][-1]:.0f} MB/s" for k in names), flush=True)
    be.close()
    return res


def ratio_line(label: str, ours: float, peer: float, target: float) -> str:
    ratio = ours / peer
    verdict = "ok" if ratio >= target else "BELOW TARGET"
    return f"  {label:<48} {ratio:5.2f}x  (target >= {target}x, {verdict})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--big-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--stat", choices=("median", "best"), default="median", help="which round figure counts")
    ap.add_argument(
        "--dir",
        default="/dev/shm" if os.path.isdir("/dev/shm") else None,
        help="where the server's data and the 256 MiB files live (default tmpfs, so no local disk is measured)",
    )
    args = ap.parse_args()
    global STAT
    STAT = args.stat
    with (
        tempfile.TemporaryDirectory(prefix="unistore-bench-", dir=args.dir) as tmp,
        tempfile.TemporaryDirectory(prefix="unistore-bench-weed-", dir=args.dir) as weed_dir,
        start_seaweedfs(weed_dir) as sw,
    ):
        print(f"SeaweedFS at {sw.endpoint}; {args.count} x 4 KiB, {args.rounds} rounds", flush=True)
        small = small_values(sw, args.count, args.rounds)
        print(f"one {args.big_mib} MiB value, {args.rounds} rounds", flush=True)
        big = big_value(sw, args.big_mib, args.rounds, tmp)
    print(f"\n{STAT} round (ops/s):")
    for k in small:
        print(f"  {k:<24} {best(small, k):8.0f}")
    print(f"{STAT} round (MB/s):")
    for k in big:
        print(f"  {k:<24} {best(big, k):8.1f}")
    print("\nratios:")
    lines = [
        ratio_line("store vs boto3 put_object", best(small, "unistore store"), best(small, "boto3 put"), 1.5),
        ratio_line("load vs boto3 get_object", best(small, "unistore load"), best(small, "boto3 get"), 1.5),
        ratio_line("store vs obstore put", best(small, "unistore store"), best(small, "obstore put"), 0.9),
        ratio_line(
            "store (name_checks=False) vs obstore put",
            best(small, "unistore store unchecked"),
            best(small, "obstore put"),
            0.9,
        ),
        ratio_line("load vs obstore get", best(small, "unistore load"), best(small, "obstore get"), 0.9),
        ratio_line("store_many vs boto3 put_object", best(small, "unistore store_many"), best(small, "boto3 put"), 3),
        ratio_line("load_many vs boto3 get_object", best(small, "unistore load_many"), best(small, "boto3 get"), 3),
        ratio_line("store_file vs obstore put", best(big, "unistore store_file"), best(big, "obstore put"), 1.0),
        ratio_line("load_file vs obstore get", best(big, "unistore load_file"), best(big, "obstore get"), 1.0),
        ratio_line(
            "store_file vs boto3 upload_file", best(big, "unistore store_file"), best(big, "boto3 upload_file"), 1.5
        ),
        ratio_line(
            "load_file vs boto3 download_file", best(big, "unistore load_file"), best(big, "boto3 download_file"), 1.5
        ),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
