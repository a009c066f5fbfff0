"""``create``, ``destroy``, ``demo`` and ``bench``: whole stores."""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from typing import Any

from ..errors import BackendDoesNotExist, ObjectNotFound
from ..store import Store
from ..url import open_backend, redact, split_query, url_scheme
from .locations import Session
from .output import Output, UsageError


def cmd_create(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        url, options, path = session.resolve(session.store_spec())
        if path:
            raise UsageError("create takes a store URL or remote, not a path inside one")
        session.open_unopened(url, options).create()
        out.result({"created": redact(split_query(url)[0])}, "created")
    return 0


def cmd_destroy(args: argparse.Namespace, out: Output) -> int:
    if not args.yes:
        raise UsageError("destroy deletes everything in the store: add --yes to confirm")
    with Session(args, out) as session:
        url, options, path = session.resolve(session.store_spec())
        if path:
            raise UsageError("destroy takes a store URL or remote, not a path inside one")
        session.open_unopened(url, options).destroy()
        out.result({"destroyed": True}, "destroyed")
    return 0


def _refuse_non_empty(url: str) -> None:
    """The demo works only in a new or empty store: it must never touch what it did not create."""
    be = open_backend(url)
    try:
        be.open()
    except BackendDoesNotExist:
        return
    try:
        try:
            first = next(iter(be.list("")), None)
        except ObjectNotFound:
            first = None
    finally:
        be.close()
    if first is not None:
        raise UsageError(
            f"{redact(url)} is not empty: the demo only uses a new or empty store, choose another --dir or --url"
        )


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    """Show the Store on a new store (a local folder by default), step by step."""
    if args.url:
        url = args.url
        if url_scheme(url) is None:
            raise UsageError(f"{url!r} is not a backend URL")
    else:
        folder = os.path.abspath(args.dir)
        if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
            raise UsageError(f"{folder} is not empty: the demo only uses a new or empty folder, choose another --dir")
        url = f"file://{folder}"
    _refuse_non_empty(url)
    if url_scheme(url) == "memory":
        out.note("memory:// keeps data only inside this process: nothing persists after the command")
    say = (lambda *a: None) if out.json else print
    store = Store(url, config={"": {"levels": [0]}, "data/": {"levels": [2]}})
    store.create()
    say(f"created a store at {redact(url)} (namespace data/ nests keys 2 levels deep)")
    report: dict[str, Any] = {"url": redact(url)}
    with store:
        store.store("config", b"demo configuration")
        words = ("alpha", "beta", "gamma")
        values = {f"data/{hashlib.sha256(w.encode()).hexdigest()}": w.encode() * 100 for w in words}
        for name, value in values.items():
            store.store(name, value)
        first = next(iter(values))
        say(f"stored 4 items; {first[:13]}... lives at backend name {store.find(first)[:17]}...")
        listed = [i.name for i in store.list("data")]
        say(f"list('data'): {len(listed)} items: " + ", ".join(n[:8] + "..." for n in listed))
        store.move(first, delete=True)
        live = sum(1 for _ in store.list("data"))
        gone = [i.name[:8] + "..." for i in store.list("data", deleted=True)]
        say(f"soft-deleted one: {live} live, deleted: {gone}")
        store.move(first, undelete=True)
        say(f"undeleted it: {sum(1 for _ in store.list('data'))} live again")
        part = store.load(first, offset=5, size=10)
        tail = store.load(first, offset=-5)
        say(f"partial loads: bytes 5..15 = {part!r}, last 5 = {tail!r}")
        st = store.stats
        say("stats: " + ", ".join(f"{op} {st[op + '_calls']} calls" for op in ("store", "load", "list", "move")))
        report.update(items=listed, partial=part.decode(), stats=st)
    if out.json:
        out.result(report, None)
    return 0


def cmd_bench(args: argparse.Namespace, out: Output) -> int:
    """Store, load, info, list and delete COUNT values of SIZE bytes; print ops/s and MB/s."""
    value = os.urandom(args.size)
    results: dict[str, float] = {}
    with Session(args, out) as session:
        target = session.target()
        be = target.backend
        names = [target.name(f"unistore-bench/{hashlib.sha256(str(i).encode()).hexdigest()}")
                 for i in range(args.count)]

        def timed(label: str, fn: Any) -> None:
            t = time.perf_counter()
            fn()
            results[label] = args.count / (time.perf_counter() - t)

        timed("store", lambda: [be.store(n, value) for n in names])
        timed("load", lambda: [be.load(n) for n in names])
        timed("info", lambda: [be.info(n) for n in names])
        timed("list", lambda: sum(1 for _ in be.list(target.name("unistore-bench"))))
        timed("delete", lambda: [be.delete(n) for n in names])
        timed("store_many", lambda: be.store_many((n, value) for n in names))
        timed("load_many", lambda: sum(1 for _ in be.load_many(names)))
        timed("delete_many", lambda: be.delete_many(names))
    lines = [f"{args.count} values of {args.size} bytes"]
    for label, rate in results.items():
        mbs = rate * args.size / 1e6 if label not in ("info", "list", "delete", "delete_many") else 0
        lines.append(f"{label:<12}{rate:>12,.0f} ops/s" + (f"{mbs:>10.1f} MB/s" if mbs else ""))
    out.result({"count": args.count, "size": args.size, "ops_per_second": results}, "\n".join(lines))
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("create", help="create (initialize) the store")
    s.set_defaults(func=cmd_create)
    s = sub.add_parser("destroy", help="delete the store and everything in it")
    s.add_argument("--yes", action="store_true", help="confirm")
    s.set_defaults(func=cmd_destroy)
    s = sub.add_parser("demo", help="show the Store on a new local store (refuses a non-empty one)")
    s.add_argument("--dir", default="unistore-demo", help="new or empty folder for the demo (default ./unistore-demo)")
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("bench", help="quick throughput test of the --url backend")
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--size", type=int, default=4096)
    s.set_defaults(func=cmd_bench)
