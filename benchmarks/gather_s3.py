"""Store.gather of many ranges from packs on SeaweedFS: unistore against borgstore 0.7, in one run.

    python benchmarks/gather_s3.py [--packs 100] [--ranges 1000] [--rounds 3]

Both Stores use the same S3 URL syntax against one private SeaweedFS (each its own bucket), with
borg's pack layout (``packs/`` at nesting level 1); each gathers the same --ranges ranges (2 KiB
each, from random packs of 256 KiB) in one call. borgstore reads the ranges one after another,
unistore concurrently. Prints the median time of each and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import borgstore.store as bstore  # noqa: E402

from tests.servers.seaweedfs import start_seaweedfs  # noqa: E402
from unistore import Store  # noqa: E402

CONFIG = {"": {"levels": [0]}, "packs/": {"levels": [1]}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packs", type=int, default=100)
    ap.add_argument("--ranges", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    rnd = random.Random(1)
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.packs)]
    packs = {k: os.urandom(256 * 1024) for k in keys}
    sources = [(rnd.choice(keys), rnd.randrange(0, 254 * 1024), 2048) for _ in range(args.ranges)]
    with tempfile.TemporaryDirectory() as tmp, start_seaweedfs(tmp) as sw:
        ours = Store(sw.url(sw.new_bucket(), "repo"), config=CONFIG)
        theirs = bstore.Store(sw.url(sw.new_bucket(), "repo"), config=CONFIG)
        for store in (ours, theirs):
            store.create()
        times: dict[str, list[float]] = {"unistore": [], "borgstore": []}
        with ours, theirs:
            ours.store_many(("packs/" + k, v) for k, v in packs.items())
            for k, v in packs.items():
                theirs.store("packs/" + k, v)
            expected = b"".join(packs[k][o : o + s] for k, o, s in sources)
            for _ in range(args.rounds):
                for label, store in (("unistore", ours), ("borgstore", theirs)):
                    t = time.perf_counter()
                    data = store.gather(sources, namespace="packs")
                    times[label].append(time.perf_counter() - t)
                    assert data == expected, label
        u, b = statistics.median(times["unistore"]), statistics.median(times["borgstore"])
        print(f"gather of {args.ranges} x 2 KiB ranges from {args.packs} packs on SeaweedFS, median of {args.rounds}")
        print(f"  unistore {u * 1e3:8.0f} ms   borgstore {b * 1e3:8.0f} ms   ratio {b / u:.2f}x")


if __name__ == "__main__":
    main()
