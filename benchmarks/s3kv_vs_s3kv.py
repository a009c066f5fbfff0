"""unistore's s3kv adapter against s3kv 0.1.5 itself, on one private SeaweedFS, in one run.

    python benchmarks/s3kv_vs_s3kv.py [--count 500] [--tagged 2000] [--listed 2500] [--rounds 3] [--dir DIR]

Comparisons (targets from issue 11):

1. ``count`` ``get`` of 1 KiB JSON values, s3kv's ``get`` (one GetObject each, its cache is never
   read) against unistore's ``S3KV`` built with s3kv's constructor: cache on with the default
   ``cache_ttl`` (target >= 20x), ``cache_ttl=0`` (every read revalidated by ETag, >= 1.5x), and
   cold (cache emptied first: one GetObject each, fills the cache);
2. ``find_keys_by_tag_value`` over ``tagged`` keys, half of them tagged: s3kv (one tag request per
   object, and it stops at the first 1,000 objects) against the concurrent scan and the tag index
   (>= 5x), with how many matches each found;
3. ``list_keys`` over ``listed`` keys: how many keys each returns (s3kv stops at 1,000).

Each timed phase runs ``rounds`` times, interleaved (the order rotates per round); the median counts.
The local cache goes to a temp dir ($XDG_CACHE_HOME), so the user's cache is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers.seaweedfs import SeaweedFS, start_seaweedfs  # noqa: E402
from unistore.adapters.s3kv import S3KV  # noqa: E402


def value_of(i: int) -> dict[str, Any]:
    """A JSON value of about 1 KiB."""
    return {"id": i, "name": f"item-{i:05d}", "payload": "x" * 960, "tags": ["a", "b"]}


def old_kv(sw: SeaweedFS, bucket: str) -> Any:
    from s3kv.s3kv import S3KV as OldS3KV

    return OldS3KV(sw.endpoint, bucket, sw.access_key, sw.secret_key)


def new_kv(sw: SeaweedFS, bucket: str, **kw: Any) -> S3KV:
    return S3KV(sw.endpoint, bucket, sw.access_key, sw.secret_key, **kw)


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = func()
    return time.perf_counter() - t0, result


def rounds(phases: dict[str, Callable[[], Any]], n: int) -> dict[str, float]:
    """Median seconds of each phase over ``n`` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in phases}
    names = list(phases)
    for r in range(n):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(phases[name])[0])
    return {name: statistics.median(t) for name, t in times.items()}


def bench_get(sw: SeaweedFS, count: int, n_rounds: int) -> None:
    bucket = sw.new_bucket()
    keys = [f"cfg/{i:05d}" for i in range(count)]
    old = old_kv(sw, bucket)
    # each its own cache root: they would share (and clear) one folder otherwise
    root = Path(os.environ["XDG_CACHE_HOME"])
    cached = new_kv(sw, bucket)
    revalidated = new_kv(sw, bucket, cache_ttl=0, cache_dir=root / "ttl0")
    cold = new_kv(sw, bucket, cache_dir=root / "cold")
    cached.backend.store_many([(f"s3kv/{k}.json", json.dumps(value_of(i)).encode()) for i, k in enumerate(keys)])
    for store in (cached, revalidated):
        for key in keys:  # warm: the first read fills the cache
            store.get(key)
    assert all(old.get(k) == cached.get(k) == revalidated.get(k) for k in keys[:20])

    def cold_pass() -> None:
        cold.clear_cache()
        for key in keys:
            cold.get(key)

    phases = {
        "s3kv get": lambda: [old.get(k) for k in keys],
        "unistore get (cache, default ttl)": lambda: [cached.get(k) for k in keys],
        "unistore get (cache_ttl=0)": lambda: [revalidated.get(k) for k in keys],
        "unistore get (cold cache)": cold_pass,
    }
    result = rounds(phases, n_rounds)
    base = result["s3kv get"]
    print(f"\n{count} get of 1 KiB JSON values (median of {n_rounds} rounds)")
    print(f"{'phase':<36}{'ms/get':>10}{'gets/s':>10}{'vs s3kv':>10}")
    for name, seconds in result.items():
        print(f"{name:<36}{seconds / count * 1e3:>10.3f}{count / seconds:>10,.0f}{base / seconds:>9.1f}x")
    for store in (cached, revalidated, cold):
        store.close()


def bench_find(sw: SeaweedFS, tagged: int, n_rounds: int) -> None:
    bucket = sw.new_bucket()
    old = old_kv(sw, bucket)
    scan, indexed = new_kv(sw, bucket, tag_index=False), new_kv(sw, bucket)
    be = scan.backend
    names = [f"s3kv/k{i:05d}.json" for i in range(tagged)]
    be.store_many([(name, json.dumps(value_of(i)).encode()) for i, name in enumerate(names)])
    time.sleep(1.1)  # tags set a second after the values (as on existing data): no same-second ambiguity
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda name: be.put_tags(name, {"group": "even" if int(name[6:11]) % 2 == 0 else "odd"}), names))
    expected = sorted(f"k{i:05d}" for i in range(0, tagged, 2))
    build, markers = timed(indexed.rebuild_tag_index)
    found: dict[str, int] = {}

    def run(name: str, func: Callable[[], list[str]]) -> Callable[[], None]:
        def phase() -> None:
            found[name] = len(func())

        return phase

    phases = {
        "s3kv find_keys_by_tag_value": run("s3kv", lambda: old.find_keys_by_tag_value("group", "even")),
        "unistore concurrent scan": run("scan", lambda: scan.find_keys_by_tag_value("group", "even")),
        "unistore tag index": run("index", lambda: indexed.find_keys_by_tag_value("group", "even")),
    }
    assert scan.find_keys_by_tag_value("group", "even") == expected
    assert indexed.find_keys_by_tag_value("group", "even") == expected
    result = rounds(phases, n_rounds)
    base = result["s3kv find_keys_by_tag_value"]
    print(f"\nfind_keys_by_tag_value over {tagged} keys, {len(expected)} matching (median of {n_rounds} rounds)")
    print(f"{'phase':<32}{'seconds':>10}{'found':>8}{'vs s3kv':>10}{'keys/s checked':>16}")
    checked = {"s3kv": min(tagged, 1000), "scan": tagged, "index": tagged}
    for (name, seconds), short in zip(result.items(), ("s3kv", "scan", "index"), strict=True):
        print(f"{name:<32}{seconds:>10.3f}{found[short]:>8}{base / seconds:>9.1f}x{checked[short] / seconds:>16,.0f}")
    print(f"(building the index once: {build:.2f} s for {markers} markers)")
    scan.close()
    indexed.close()


def bench_list(sw: SeaweedFS, listed: int) -> None:
    bucket = sw.new_bucket()
    old = old_kv(sw, bucket)
    new = new_kv(sw, bucket)
    new.backend.store_many([(f"s3kv/key{i:05d}.json", b"1") for i in range(listed)])
    new.backend.store("exports/report.json", b"{}")  # a foreign object
    t_old, old_keys = timed(old.list_keys)
    t_new, new_keys = timed(new.list_keys)
    print(f"\nlist_keys over {listed} keys plus one foreign object")
    mangled = [k for k in old_keys if "rep" in k]
    correct = new_keys == sorted(new_keys) and len(new_keys) == listed
    print(f"s3kv      {len(old_keys):>6} keys in {t_old:.3f} s; the foreign object came back as {mangled}")
    print(f"unistore  {len(new_keys):>6} keys in {t_new:.3f} s; all keys, sorted, no foreign object: {correct}")
    new.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--tagged", type=int, default=2000)
    p.add_argument("--listed", type=int, default=2500)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", default=None, help="SeaweedFS working dir (e.g. on tmpfs)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="s3kv-bench-cache-") as cache_home:
        os.environ["XDG_CACHE_HOME"] = cache_home
        workdir = tempfile.mkdtemp(prefix="s3kv-bench-weed-", dir=args.dir) if args.dir else None
        try:
            with start_seaweedfs(workdir) as sw:
                bench_get(sw, args.count, args.rounds)
                bench_find(sw, args.tagged, args.rounds)
                bench_list(sw, args.listed)
        finally:
            if workdir:
                shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
