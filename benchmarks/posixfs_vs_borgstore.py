"""posixfs: unistore's Store against borgstore 0.7's Store, same workload, same filesystem, one run.

Workload (the foundation issue): N values of 4 KiB under sha256 hex keys in a levels-[2] namespace;
phases store, load, partial load (64 B), info, list, soft delete, delete. Both use a temp file and a
rename per write and no fsync (borgstore's default). Prints ops/s of both and unistore/borgstore.

    python benchmarks/posixfs_vs_borgstore.py [--count 5000] [--dir /dev/shm] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import borgstore.store

import unistore

CONFIG = {"": {"levels": [0]}, "data/": {"levels": [2]}}


def phases(store: Any, keys: list[str], value: bytes) -> dict[str, Callable[[], int]]:
    def do_store() -> int:
        for k in keys:
            store.store(k, value)
        return len(keys)

    def do_load() -> int:
        for k in keys:
            store.load(k)
        return len(keys)

    def do_partial() -> int:
        for k in keys:
            store.load(k, size=64, offset=1024)
        return len(keys)

    def do_info() -> int:
        for k in keys:
            store.info(k)
        return len(keys)

    def do_list() -> int:
        return sum(1 for _ in store.list("data"))

    def do_soft_delete() -> int:
        for k in keys:
            store.move(k, delete=True)
        return len(keys)

    def do_delete() -> int:
        for k in keys:
            store.delete(k, deleted=True)
        return len(keys)

    return {
        "store": do_store,
        "load": do_load,
        "partial load 64 B": do_partial,
        "info": do_info,
        "list": do_list,
        "soft delete": do_soft_delete,
        "delete": do_delete,
    }


def run(make: Callable[[str], Any], base: str, keys: list[str], value: bytes) -> dict[str, float]:
    path = tempfile.mkdtemp(dir=base)
    store = make(f"file://{path}/s")
    store.create()
    rates: dict[str, float] = {}
    try:
        with store:
            for name, fn in phases(store, keys, value).items():
                gc.collect()
                t = time.perf_counter()
                n = fn()
                rates[name] = n / (time.perf_counter() - t)
                assert n == len(keys), (name, n)
    finally:
        shutil.rmtree(path)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--dir", default="/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir())
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    args = ap.parse_args()
    keys = [f"data/{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(args.count)]
    value = os.urandom(4096)
    peers: dict[str, Callable[[str], Any]] = {
        "unistore": lambda url: unistore.Store(url, config=CONFIG),
        "borgstore": lambda url: borgstore.store.Store(url, config=CONFIG),
    }
    results: dict[str, list[dict[str, float]]] = {p: [] for p in peers}
    for _ in range(args.rounds):
        for peer, make in peers.items():
            results[peer].append(run(make, args.dir, keys, value))
    print(f"python {sys.version.split()[0]}, {args.count} x 4 KiB, levels [2], dir {args.dir}, "
          f"median of {args.rounds} rounds")
    print(f"{'phase':<20}{'unistore ops/s':>16}{'borgstore ops/s':>17}{'ratio':>8}")
    for phase in results["unistore"][0]:
        u = statistics.median(r[phase] for r in results["unistore"])
        b = statistics.median(r[phase] for r in results["borgstore"])
        print(f"{phase:<20}{u:>16,.0f}{b:>17,.0f}{u / b:>7.2f}x")


if __name__ == "__main__":
    main()
