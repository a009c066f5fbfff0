"""Encryption and compression layers against plain posixfs, in one run.

    python benchmarks/layers.py [--dir DIR] [--mib 256] [--big-gib 1]

Phases: store and load of --mib MiB in 1 MiB values through EncryptLayer(posixfs) and plain
posixfs (ratio = plain time / layer time, so 1.0 means as fast as plain); a 100-byte partial load
from a --big-gib GiB encrypted value (bytes read from the backend, counted by a StatsLayer below
the encryption layer); zstd on a text corpus (the Python standard library's sources): ratio and
store/load speed against plain.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

from unistore.backends.posixfs import PosixFS
from unistore.layers.compress import CompressLayer
from unistore.layers.encrypt import CHUNK, FRAME, HEADER_SIZE, EncryptLayer
from unistore.layers.stats import StatsLayer


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def store_load(backend, values: list[bytes]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    def store() -> None:
        for i, v in enumerate(values):
            backend.store(f"v/{i:05d}", v)

    def load() -> None:
        for i in range(len(values)):
            backend.load(f"v/{i:05d}")

    return timed(store), timed(load)


def corpus() -> bytes:
    root = pathlib.Path(os.__file__).parent
    parts = []
    for path in sorted(root.glob("*.py")):
        parts.append(path.read_bytes())
    return b"".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None, help="where the stores live (default: a temp dir)")
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--big-gib", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    base = tempfile.mkdtemp(dir=args.dir, prefix="unistore-layers-")
    key = os.urandom(32)
    try:
        values = [os.urandom(1 << 20) for _ in range(args.mib)]
        rows = []
        for label, make in (
            ("plain", lambda p: p),
            ("encrypt", lambda p: EncryptLayer(p, key=key)),
        ):
            best = (1e9, 1e9)
            for r in range(args.rounds):
                path = os.path.join(base, f"{label}{r}")
                plain = PosixFS(path)
                plain.create()
                with plain:
                    s, lo = store_load(make(plain), values)
                plain.destroy()
                best = (min(best[0], s), min(best[1], lo))
            rows.append((label, best))
        (_, (ps, pl)), (_, (es, el)) = rows
        mb = args.mib * 1.048576
        print(f"{args.mib} x 1 MiB, best of {args.rounds}")
        print(f"  plain    store {mb / ps:8.0f} MB/s   load {mb / pl:8.0f} MB/s")
        print(f"  encrypt  store {mb / es:8.0f} MB/s   load {mb / el:8.0f} MB/s")
        print(f"  ratio (encrypt/plain throughput): store {ps / es:.2f}x  load {pl / el:.2f}x")

        # partial load from a big encrypted value: bytes read from the backend
        big = PosixFS(os.path.join(base, "big"))
        big.create()
        with big:
            counted = StatsLayer(big)
            enc = EncryptLayer(counted, key=key)
            size = int(args.big_gib * (1 << 30))
            block = os.urandom(8 << 20)

            class Source:
                def __init__(self) -> None:
                    self.left = size

                def read(self, n: int = -1) -> bytes:
                    n = self.left if n < 0 else min(n, self.left)
                    out = (block * (n // len(block) + 1))[:n]
                    self.left -= n
                    return out

                def seekable(self) -> bool:
                    return False

            t = timed(lambda: enc.store_file("huge", Source(), size=size))  # type: ignore[arg-type]
            counted.reset()
            offset = size // 2 + CHUNK - 50
            t2 = timed(lambda: enc.load("huge", offset=offset, size=100))
            read = counted.stats["load_volume"]
            print(f"{args.big_gib:g} GiB encrypted value stored in {t:.1f} s ({size / t / 1e6:.0f} MB/s)")
            print(
                f"  100-byte partial load across a chunk boundary: {read:,} bytes read from the backend "
                f"(two chunks = {2 * FRAME + HEADER_SIZE:,}) in {t2 * 1e3:.2f} ms"
            )
        big.destroy()

        # zstd on text
        text = corpus()
        pieces = [text[i : i + (1 << 20)] for i in range(0, len(text), 1 << 20)]
        for level in (3, 9):
            res = {}
            makers = (("plain", lambda p: p), (f"zstd:{level}", lambda p, lv=level: CompressLayer(p, level=lv)))
            for label, make in makers:
                path = os.path.join(base, f"z{label}")
                plain = PosixFS(path)
                plain.create()
                with plain:
                    s, lo = store_load(make(plain), pieces)
                    stored = sum(i.size for i in plain.list_recursive(""))
                plain.destroy()
                res[label] = (s, lo, stored)
            (ps, pl, pz), (zs, zl, zz) = res["plain"], res[f"zstd:{level}"]
            mb = len(text) / 1e6
            print(
                f"zstd:{level} on {mb:.1f} MB of Python sources: ratio {pz / zz:.2f}x smaller; "
                f"store {mb / zs:.0f} MB/s ({ps / zs:.2f}x plain), load {mb / zl:.0f} MB/s ({pl / zl:.2f}x plain)"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
