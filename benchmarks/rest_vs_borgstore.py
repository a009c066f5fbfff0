"""REST client and server: unistore's against borgstore 0.7's, in one run, on loopback over posixfs.

    python benchmarks/rest_vs_borgstore.py [--dir DIR] [--count 2000] [--big-mib 256]

Phases (each side's client talks to its own server, same machine, same disk):
- 4 KiB values one at a time: store, then load (borgstore's Store API on both sides);
- the same in bulk: unistore's store_many/load_many (concurrent requests) against borgstore's loop
  (its Store has no bulk calls);
- one --big-mib MiB value streamed from a file and back (store_file/load_file on unistore; borgstore
  has no streaming, so it stores and loads the value whole).
Prints each phase's rate and the ratio unistore/borgstore (>1: unistore faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from borgstore.backends.rest import REST as BorgREST

from unistore.backends.rest import RestBackend


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not start: {cmd}")


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=None)
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--big-mib", type=int, default=256)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(dir=args.dir, prefix="unistore-rest-bench-"))
    env_tmp = {"TMPDIR": str(base)}
    os.environ.update(env_tmp)
    pu, pb = free_port(), free_port()
    ours = start([sys.executable, "-m", "unistore.server", "--backend", f"file://{base}/u", "--port", str(pu),
                  "--username", "u", "--password", "p"], pu)  # fmt: skip
    theirs = start([sys.executable, "-m", "borgstore.server.rest", "--backend", f"file://{base}/b", "--port", str(pb),
                    "--username", "u", "--password", "p"], pb)  # fmt: skip
    try:
        u = RestBackend(f"http://127.0.0.1:{pu}", username="u", password="p", workers=16)
        b = BorgREST(f"http://127.0.0.1:{pb}", username="u", password="p")
        u.create()
        b.create()
        u.open()
        b.open()
        values = [os.urandom(4096) for _ in range(args.count)]
        names = [f"d/{i:06d}" for i in range(args.count)]
        res: dict[str, tuple[float, float]] = {}

        def one(be) -> tuple[float, float]:  # type: ignore[no-untyped-def]
            s = timed(lambda: [be.store(n, v) for n, v in zip(names, values, strict=True)])
            lo = timed(lambda: [be.load(n) for n in names])
            return s, lo

        res["one at a time"] = one(u), one(b)  # type: ignore[assignment]
        bulk_names = [n + "b" for n in names]
        us = timed(lambda: u.store_many(zip(bulk_names, values, strict=True)))
        ul = timed(lambda: list(u.load_many(bulk_names)))
        bs = timed(lambda: [b.store(n, v) for n, v in zip(bulk_names, values, strict=True)])
        bl = timed(lambda: [b.load(n) for n in bulk_names])
        res["bulk"] = (us, ul), (bs, bl)  # type: ignore[assignment]
        print(f"{args.count} x 4 KiB, loopback, posixfs on {base}")
        for phase, ((u_s, u_l), (b_s, b_l)) in res.items():  # type: ignore[misc]
            print(
                f"  {phase:<14} store {args.count / u_s:7.0f}/s vs {args.count / b_s:7.0f}/s = {b_s / u_s:5.2f}x   "
                f"load {args.count / u_l:7.0f}/s vs {args.count / b_l:7.0f}/s = {b_l / u_l:5.2f}x"
            )
        big = base / "big.bin"
        with open(big, "wb") as f:
            for _ in range(args.big_mib):
                f.write(os.urandom(1 << 20))
        out = base / "out.bin"

        def u_store() -> None:
            with open(big, "rb") as f:
                u.store_file("big", f)

        def u_load() -> None:
            with open(out, "wb") as f:
                u.load_file("big", f)

        def b_store() -> None:
            b.store("big", big.read_bytes())

        def b_load() -> None:
            out.write_bytes(b.load("big"))

        t = {k: timed(fn) for k, fn in (("us", u_store), ("ul", u_load), ("bs", b_store), ("bl", b_load))}
        mb = args.big_mib * 1.048576
        print(
            f"  {args.big_mib} MiB value  store {mb / t['us']:6.0f} MB/s vs {mb / t['bs']:6.0f} MB/s = "
            f"{t['bs'] / t['us']:5.2f}x   load {mb / t['ul']:6.0f} MB/s vs {mb / t['bl']:6.0f} MB/s = "
            f"{t['bl'] / t['ul']:5.2f}x"
        )
        u.close()
        b.close()
    finally:
        ours.terminate()
        theirs.terminate()
        ours.wait(10)
        theirs.wait(10)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
