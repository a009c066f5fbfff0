"""unistore's sftp backend against borgstore 0.7's, on one OpenSSH sshd on 127.0.0.1, in one run.

Workload: 1,000 values of 4 KiB stored and loaded one at a time, the same through unistore's bulk
operations (store_many/load_many; borgstore has none, so it is compared with its one-at-a-time
loop), and one 64 MiB value stored and loaded. Both clients find the server, its host key and the
client key the same way: through ~/.ssh/config and ~/.ssh/known_hosts of a private HOME.

Prints seconds per phase (median and best of the rounds) and ratios (borgstore time / unistore
time; > 1 means unistore is faster). The median is the fairer figure: paramiko's prefetch, which
borgstore's load uses, now and then stalls for seconds (its reader spins while the prefetch thread
registers requests), which a best-of figure hides.
Run:  /work/venv/bin/python benchmarks/sftp_vs_borgstore.py [--rounds N] [--count N] [--big-mib N] [--dir D]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.servers.sshd import OpenSSHServer  # noqa: E402


def timed(func: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    func()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per phase (median and best are shown)")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--big-mib", type=int, default=64)
    ap.add_argument("--dir", default=None, help="where the server keeps its files (default: the temp dir)")
    args = ap.parse_args()

    base = Path(tempfile.mkdtemp(prefix="unistore-bench-sftp-", dir=args.dir))
    server = OpenSSHServer(base)
    home = base / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host benchhost\n  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.client_key}\n"
    )
    shutil.copy(server.known_hosts, home / ".ssh" / "known_hosts")
    os.environ["HOME"] = str(home)
    os.environ.pop("SSH_AUTH_SOCK", None)
    server.start()
    try:
        run(server, args)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def run(server: OpenSSHServer, args: argparse.Namespace) -> None:
    from borgstore.backends.sftp import Sftp

    from unistore.backends.sftp import SFTPBackend

    values = {f"v/{i:05d}": os.urandom(args.size) for i in range(args.count)}
    big = os.urandom(args.big_mib * 1024 * 1024)

    def make(kind: str, path: str) -> Any:
        if kind == "borgstore":
            return Sftp(hostname="benchhost", path=path)
        return SFTPBackend.from_url(f"sftp://benchhost/{path}")

    results: dict[str, dict[str, list[float]]] = {"borgstore": {}, "unistore": {}}

    def record(kind: str, phase: str, seconds: float) -> None:
        results[kind].setdefault(phase, []).append(seconds)

    def phases(kind: str, be: Any) -> None:
        be.mkdir("v")
        record(kind, "store 4k x N", timed(lambda: [be.store(k, v) for k, v in values.items()]))
        record(kind, "load 4k x N", timed(lambda: [be.load(k) for k in values]))
        if kind == "unistore":
            record(kind, "store_many 4k x N", timed(lambda: be.store_many(values)))
            record(kind, "load_many 4k x N", timed(lambda: list(be.load_many(list(values)))))
        else:  # borgstore has no bulk operations: its way is the loop
            record(kind, "store_many 4k x N", timed(lambda: [be.store(k, v) for k, v in values.items()]))
            record(kind, "load_many 4k x N", timed(lambda: [be.load(k) for k in values]))
        record(kind, f"store {args.big_mib} MiB", timed(lambda: be.store("big", big)))
        got: list[bytes] = []
        record(kind, f"load {args.big_mib} MiB", timed(lambda: got.append(be.load("big"))))
        assert got[0] == big, f"{kind}: big value differs"
        assert be.load("v/00000") == values["v/00000"]

    for rnd in range(args.rounds):
        order = ("borgstore", "unistore") if rnd % 2 == 0 else ("unistore", "borgstore")
        for kind in order:
            path = server.abs_path(f"{kind}-{rnd}")
            be = make(kind, path)
            be.create()
            be.open()
            try:
                phases(kind, be)
            finally:
                be.close()
                be.destroy()

    # one-at-a-time stores and loads once more, the two clients taking turns value by value, so that
    # drift of the shared machine (and of the server's disk) hits both alike
    pair = {kind: make(kind, server.abs_path(f"{kind}-interleaved")) for kind in ("borgstore", "unistore")}
    spent = {(kind, op): 0.0 for kind in pair for op in ("store", "load")}
    for be in pair.values():
        be.create()
        be.open()
        be.mkdir("v")
    try:
        for op in ("store", "load"):
            for i, (k, v) in enumerate(values.items()):
                for kind in (("borgstore", "unistore") if i % 2 == 0 else ("unistore", "borgstore")):
                    be = pair[kind]
                    if op == "store":
                        spent[kind, op] += timed(lambda be=be, k=k, v=v: be.store(k, v))
                    else:
                        spent[kind, op] += timed(lambda be=be, k=k: be.load(k))
        assert pair["unistore"].load("v/00000") == values["v/00000"]
    finally:
        for be in pair.values():
            be.close()
            be.destroy()

    print(
        f"sftp: {args.count} x {args.size} B and one {args.big_mib} MiB value, {args.rounds} rounds"
        f" (alternating order), server files in {server.data}"
    )
    print("ratio = borgstore time / unistore time (> 1: unistore is faster); median and best of the rounds")
    print(f"{'phase':<22}{'borgstore s':>13}{'unistore s':>13}{'ratio':>9}{'best b':>10}{'best u':>10}{'ratio':>9}")
    for phase, bs in results["borgstore"].items():
        us = results["unistore"][phase]
        b, u = statistics.median(bs), statistics.median(us)
        print(
            f"{phase:<22}{b:>13.3f}{u:>13.3f}{b / u:>8.2f}x{min(bs):>10.3f}{min(us):>10.3f}{min(bs) / min(us):>8.2f}x"

        )
    for op in ("store", "load"):
        b, u = spent["borgstore", op], spent["unistore", op]
        label = f"{op} 4k x N, turns"
        print(f"{label:<22}{b:>13.3f}{u:>13.3f}{b / u:>8.2f}x   (the two take turns value by value)")


if __name__ == "__main__":
    main()
