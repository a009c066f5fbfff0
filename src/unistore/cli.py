"""The ``unistore`` command: everyday operations on any backend URL, a demo and a quick benchmark.

Names are backend names (``dir/sub/item``). Soft delete follows the Store's convention: ``rm --soft``
renames an item to ``<name>.del``, ``undelete`` renames it back, ``ls --deleted`` shows such items.
Exit codes: 0 success, 1 the operation failed (missing item, connection), 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

from . import __version__
from .backends.base import Backend
from .errors import (
    BackendURLInvalid,
    ConfigError,
    InvalidName,
    NoBackendGiven,
    ObjectNotFound,
    UnistoreError,
)
from .names import DEL_SUFFIX
from .store import Store
from .url import open_backend, redact

PROGRESS_THRESHOLD = 4 * 1024 * 1024  # show a progress bar for transfers above this size
ADAPTER_CLIS = ("unistore.adapters.zodb.cli",)


class UsageError(UnistoreError):
    """Bad command-line input (exit code 2)."""


def _backend(args: argparse.Namespace) -> Backend:
    url = args.url or os.environ.get("UNISTORE_URL")
    if not url:
        raise UsageError("no backend URL: pass --url or set UNISTORE_URL")
    return open_backend(url)


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[Backend]:
    be = _backend(args)
    be.open()
    try:
        yield be
    finally:
        be.close()


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True) if args.json else text)


class _Progress:
    """A file wrapper that advances a tqdm bar (only for large transfers on a terminal or when asked)."""

    def __init__(self, f: IO[bytes], total: int | None, desc: str, enabled: bool) -> None:
        self.f = f
        self.bar = None
        if enabled and (total is None or total >= PROGRESS_THRESHOLD):
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, file=sys.stderr)

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        if self.bar is not None:
            self.bar.update(len(data))
        return data

    def write(self, data: bytes) -> int:
        n = self.f.write(data)
        if self.bar is not None:
            self.bar.update(len(data))
        return n

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.f, attr)


# ----------------------------------------------------------------- commands
def cmd_create(args: argparse.Namespace) -> int:
    _backend(args).create()
    _out(args, {"created": redact(args.url or os.environ["UNISTORE_URL"])}, "created")
    return 0


def cmd_destroy(args: argparse.Namespace) -> int:
    if not args.yes:
        raise UsageError("destroy deletes everything in the store: add --yes to confirm")
    _backend(args).destroy()
    _out(args, {"destroyed": True}, "destroyed")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    with _opened(args) as be:
        items = be.list_recursive(args.name) if args.recursive else be.list(args.name)
        rows = []
        for info in items:
            is_deleted = info.name.endswith(DEL_SUFFIX)
            if is_deleted != args.deleted:
                continue
            name = info.name.removesuffix(DEL_SUFFIX) if args.deleted else info.name
            rows.append({"name": name, "size": info.size, "directory": info.directory, "mtime": info.mtime})
            if not args.json:
                kind = "d" if info.directory else "-"
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.mtime)) if info.mtime else "-"
                print(f"{kind} {info.size:>12} {stamp:>19} {name}{'/' if info.directory else ''}")
        if args.json:
            print(json.dumps(rows))
    return 0


def cmd_put(args: argparse.Namespace) -> int:
    with _opened(args) as be:
        if args.file in (None, "-"):
            src: IO[bytes] = sys.stdin.buffer
            total = None
        else:
            src = open(args.file, "rb")  # noqa: SIM115
            total = os.fstat(src.fileno()).st_size
        t = time.perf_counter()
        reader = _Progress(src, total, args.name, enabled=not args.quiet)
        try:
            be.store_file(args.name, reader)  # type: ignore[arg-type]
        finally:
            reader.close_bar()
            if src is not sys.stdin.buffer:
                src.close()
        size = be.info(args.name).size
        elapsed = time.perf_counter() - t
        _out(args, {"name": args.name, "size": size, "seconds": round(elapsed, 3)},
             f"stored {args.name}: {size} bytes in {elapsed:.2f}s")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    with _opened(args) as be:
        info = be.info(args.name)
        if not info.exists or info.directory:
            raise ObjectNotFound(args.name)
        to_stdout = args.file in (None, "-")
        dst: IO[bytes] = sys.stdout.buffer if to_stdout else open(args.file + ".part", "wb")  # noqa: SIM115
        writer = _Progress(dst, info.size, args.name, enabled=not args.quiet and not to_stdout)
        ok = False
        try:
            n = be.load_file(args.name, writer, offset=args.offset, size=args.size)  # type: ignore[arg-type]
            ok = True
        finally:
            writer.close_bar()
            if not to_stdout:
                dst.close()
                if ok:
                    os.replace(args.file + ".part", args.file)
                else:
                    with contextlib.suppress(OSError):
                        os.unlink(args.file + ".part")
        if not to_stdout:
            _out(args, {"name": args.name, "size": n, "file": args.file}, f"wrote {n} bytes to {args.file}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _opened(args) as be:
        info = be.info(args.name)
        data = info._asdict()
        if args.hash and info.exists and not info.directory:
            data["sha256"] = be.hash(args.name)
        _out(args, data, "\n".join(f"{k}: {v}" for k, v in data.items()))
    return 0 if info.exists else 1


def cmd_rm(args: argparse.Namespace) -> int:
    with _opened(args) as be:
        for name in args.names:
            if args.soft:
                be.move(name, name + DEL_SUFFIX)
            else:
                be.delete(name)
        _out(args, {"removed": args.names, "soft": args.soft}, f"removed {len(args.names)} item(s)")
    return 0


def cmd_mv(args: argparse.Namespace) -> int:
    with _opened(args) as be:
        be.move(args.src, args.dst)
        _out(args, {"moved": args.src, "to": args.dst}, f"moved {args.src} -> {args.dst}")
    return 0


def cmd_undelete(args: argparse.Namespace) -> int:
    with _opened(args) as be:
        for name in args.names:
            be.move(name + DEL_SUFFIX, name)
        _out(args, {"undeleted": args.names}, f"undeleted {len(args.names)} item(s)")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Count items and bytes below a name, per top-level directory, soft-deleted ones apart."""
    with _opened(args) as be:
        t = time.perf_counter()
        per: dict[str, dict[str, int]] = {}
        for info in be.list_recursive(args.name):
            top = info.name.split("/", 1)[0] if "/" in info.name else "."
            row = per.setdefault(top, {"items": 0, "bytes": 0, "deleted_items": 0, "deleted_bytes": 0})
            if info.name.endswith(DEL_SUFFIX):
                row["deleted_items"] += 1
                row["deleted_bytes"] += info.size
            else:
                row["items"] += 1
                row["bytes"] += info.size
        total = {k: sum(r[k] for r in per.values()) for k in ("items", "bytes", "deleted_items", "deleted_bytes")}
        data = {"namespaces": per, "total": total, "quota": be.quota(), "seconds": round(time.perf_counter() - t, 3)}
        lines = [f"{'namespace':<24}{'items':>10}{'bytes':>16}{'deleted':>10}{'deleted bytes':>16}"]
        for ns, r in sorted(per.items()) + [("TOTAL", total)]:
            lines.append(f"{ns:<24}{r['items']:>10}{r['bytes']:>16}{r['deleted_items']:>10}{r['deleted_bytes']:>16}")
        _out(args, data, "\n".join(lines))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Show the Store on a file:// store in a local folder, step by step."""
    folder = os.path.abspath(args.dir)
    url = args.url or f"file://{folder}"
    say = (lambda *a: None) if args.json else print
    store = Store(url, config={"": {"levels": [0]}, "data/": {"levels": [2]}})
    if url.startswith("file://") and os.path.isdir(folder) and os.listdir(folder):
        store.destroy()  # the demo owns its folder: start from a clean one
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
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Store, load, info, list and delete COUNT values of SIZE bytes; print ops/s and MB/s."""
    value = os.urandom(args.size)
    names = [f"unistore-bench/{hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(args.count)]
    results: dict[str, float] = {}
    with _opened(args) as be:

        def timed(label: str, fn: Any) -> None:
            t = time.perf_counter()
            fn()
            results[label] = args.count / (time.perf_counter() - t)

        timed("store", lambda: [be.store(n, value) for n in names])
        timed("load", lambda: [be.load(n) for n in names])
        timed("info", lambda: [be.info(n) for n in names])
        timed("list", lambda: sum(1 for _ in be.list("unistore-bench")))
        timed("delete", lambda: [be.delete(n) for n in names])
        timed("store_many", lambda: be.store_many((n, value) for n in names))
        timed("load_many", lambda: sum(1 for _ in be.load_many(names)))
        timed("delete_many", lambda: be.delete_many(names))
    if args.json:
        print(json.dumps({"count": args.count, "size": args.size, "ops_per_second": results}))
    else:
        print(f"{args.count} values of {args.size} bytes")
        for label, rate in results.items():
            mbs = rate * args.size / 1e6 if label not in ("info", "list", "delete", "delete_many") else 0
            print(f"{label:<12}{rate:>12,.0f} ops/s" + (f"{mbs:>10.1f} MB/s" if mbs else ""))
    return 0


# ----------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    def common_options(parser: argparse.ArgumentParser, default: Any) -> argparse.ArgumentParser:
        # accepted before and after the command; the sub-parsers' copies only override when given
        def d(value: Any) -> Any:
            return value if default is None else default

        parser.add_argument("--url", default=d(None), help="backend URL, e.g. file:///srv/store ($UNISTORE_URL)")
        parser.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
        parser.add_argument("-q", "--quiet", action="store_true", default=d(False), help="no progress bars")
        parser.add_argument("-v", "--verbose", action="count", default=d(0), help="log more (-vv: debug)")
        return parser

    p = common_options(
        argparse.ArgumentParser(prog="unistore", description="One key/value storage API over many backends."), None
    )
    p.add_argument("--version", action="version", version=f"unistore {__version__}")
    common = common_options(argparse.ArgumentParser(add_help=False), argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_parser = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        return _add_parser(name, parents=[common], **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    s = sub.add_parser("create", help="create (initialize) the store")
    s.set_defaults(func=cmd_create)
    s = sub.add_parser("destroy", help="delete the store and everything in it")
    s.add_argument("--yes", action="store_true", help="confirm")
    s.set_defaults(func=cmd_destroy)
    s = sub.add_parser("ls", help="list a directory")
    s.add_argument("name", nargs="?", default="")
    s.add_argument("-r", "--recursive", action="store_true")
    s.add_argument("--deleted", action="store_true", help="only soft-deleted items")
    s.set_defaults(func=cmd_ls)
    s = sub.add_parser("put", help="store a file (or stdin) as NAME")
    s.add_argument("name")
    s.add_argument("file", nargs="?", help="file to read, - or nothing for stdin")
    s.set_defaults(func=cmd_put)
    s = sub.add_parser("get", help="write item NAME to a file (or stdout)")
    s.add_argument("name")
    s.add_argument("file", nargs="?", help="file to write, - or nothing for stdout")
    s.add_argument("--offset", type=int, default=0, help="start here (negative: from the end)")
    s.add_argument("--size", type=int, default=None, help="at most this many bytes")
    s.set_defaults(func=cmd_get)
    s = sub.add_parser("info", help="show size, type and times of NAME")
    s.add_argument("name")
    s.add_argument("--hash", action="store_true", help="also compute the sha256 of the content")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("rm", help="delete items (--soft: rename to NAME.del)")
    s.add_argument("names", nargs="+")
    s.add_argument("--soft", action="store_true")
    s.set_defaults(func=cmd_rm)
    s = sub.add_parser("mv", help="rename an item")
    s.add_argument("src")
    s.add_argument("dst")
    s.set_defaults(func=cmd_mv)
    s = sub.add_parser("undelete", help="restore soft-deleted items")
    s.add_argument("names", nargs="+")
    s.set_defaults(func=cmd_undelete)
    s = sub.add_parser("stats", help="count items and bytes per namespace")
    s.add_argument("name", nargs="?", default="")
    s.set_defaults(func=cmd_stats)
    s = sub.add_parser("demo", help="show the Store on a local file:// store")
    s.add_argument("--dir", default="unistore-demo", help="folder for the demo store (default ./unistore-demo)")
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("bench", help="quick throughput test of the --url backend")
    s.add_argument("--count", type=int, default=1000)
    s.add_argument("--size", type=int, default=4096)
    s.set_defaults(func=cmd_bench)

    for module_name in ADAPTER_CLIS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # that adapter's extra is not installed
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (UsageError, InvalidName, BackendURLInvalid, NoBackendGiven, ConfigError) as e:
        print(f"unistore: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"unistore: error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
    except ObjectNotFound as e:
        print(f"unistore: not found: {e}", file=sys.stderr)
        return 1
    except UnistoreError as e:
        print(f"unistore: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("unistore: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
