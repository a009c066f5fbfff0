"""``unistore zodb migrate`` and ``unistore zodb gc``.

``migrate`` copies blob revisions into the ``--url`` backend at ``blobs/{oid_hex}/{tid_hex}.blob``,
from a ZODB blob directory (``--from-blob-dir``, bushy or lawn layout) or from another backend
holding the same layout (``--from-url``, e.g. another bucket/prefix used by zodb-s3blobs). It is
resumable (revisions already present with the right size are skipped), verifies each copy's size
after the upload, shows a progress bar and prints a summary (``--json`` for scripts). A missing
destination is an error unless ``--create`` is given.

``gc`` opens the storage of a ZODB config file (``--config``, a file with an ``<s3blobstorage>``
section, or a ``<zodb>`` section around one) and runs the orphan collection on its own; with
``--dry-run`` it only reports what it would delete.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from typing import Any

from ...backends.base import Backend
from ...errors import ConfigError, ObjectNotFound
from .layout import BLOB_ROOT, blob_name, parse_blob_name

log = logging.getLogger("unistore.adapters.zodb.cli")


@dataclass
class MigrateSummary:
    source: str
    found: int = 0
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes_copied: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


@dataclass
class _Item:
    name: str  # destination name, blobs/{oid}/{tid}.blob
    size: int
    open_source: Callable[[], Any]  # () -> readable binary file


def _blob_dir_items(blob_dir: str) -> Iterator[_Item]:
    """Every committed revision of a ZODB blob directory (its layout is detected by ZODB)."""
    from ZODB.blob import FilesystemHelper

    if not os.path.isdir(blob_dir):
        raise ConfigError(f"not a directory: {blob_dir}")
    helper = FilesystemHelper(blob_dir)
    for oid, oid_path in helper.listOIDs():
        for filename in sorted(os.listdir(oid_path)):
            if not filename.endswith(".blob"):
                continue
            path = os.path.join(oid_path, filename)
            _oid, tid = helper.splitBlobFilename(path)
            size = os.path.getsize(path)
            yield _Item(blob_name(oid, tid), size, functools.partial(open, path, "rb"))


def _backend_items(source: Backend) -> Iterator[_Item]:
    try:
        for info in source.list_recursive(BLOB_ROOT):
            if parse_blob_name(info.name) is None:
                continue
            name = f"{BLOB_ROOT}/{info.name}"
            yield _Item(name, info.size, functools.partial(_SpooledSource, source, name))
    except ObjectNotFound:
        return


class _SpooledSource:
    """A source object downloaded into a temp file (so the upload can stream and know its size)."""

    def __init__(self, backend: Backend, name: str):
        self.f = tempfile.TemporaryFile()
        backend.load_file(name, self.f)
        self.f.seek(0)

    def __enter__(self) -> Any:
        return self.f

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def _existing(dest: Backend) -> dict[str, int]:
    try:
        return {f"{BLOB_ROOT}/{i.name}": i.size for i in dest.list_recursive(BLOB_ROOT)}
    except ObjectNotFound:
        return {}


def migrate(
    items: Iterator[_Item],
    dest: Backend,
    summary: MigrateSummary,
    *,
    workers: int = 8,
    progress: Any = None,
) -> MigrateSummary:
    """Copy ``items`` into ``dest``, skipping those present with the right size; verify sizes."""
    t0 = time.perf_counter()
    present = _existing(dest)
    lock = threading.Lock()

    def one(item: _Item) -> None:
        try:
            with item.open_source() as f:
                dest.store_file(item.name, f, size=item.size)
            got = dest.info(item.name)
            if not got.exists or got.size != item.size:
                raise OSError(f"size mismatch after upload: {got.size} != {item.size}")
        except Exception as e:
            with lock:
                summary.failed += 1
                if len(summary.failures) < 100:
                    summary.failures.append(f"{item.name}: {type(e).__name__}: {e}")
            log.warning("migrate %s failed: %s", item.name, e)
        else:
            with lock:
                summary.copied += 1
                summary.bytes_copied += item.size
        if progress is not None:
            progress.update(1)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="unistore-migrate") as pool:
        pending: set[Future[None]] = set()
        for item in items:
            summary.found += 1
            if progress is not None:
                progress.total = summary.found
            if present.get(item.name) == item.size:
                summary.skipped += 1
                if progress is not None:
                    progress.update(1)
                continue
            pending.add(pool.submit(one, item))
            if len(pending) >= workers * 4:
                _done, pending = wait(pending, return_when=FIRST_COMPLETED)
        wait(pending)
    summary.seconds = time.perf_counter() - t0
    log.debug(
        "migrate: %d found, %d copied (%d bytes), %d skipped, %d failed in %.3f s",
        summary.found,
        summary.copied,
        summary.bytes_copied,
        summary.skipped,
        summary.failed,
        summary.seconds,
    )
    return summary


def _open(backend: Backend, create: bool) -> Backend:
    from .backends import open_owned

    return open_owned(backend, create, [], None)


def cmd_migrate(args: argparse.Namespace) -> int:
    from ...url import open_backend, redact

    url = args.url or os.environ.get("UNISTORE_URL")
    if not url:
        raise ConfigError("no destination: pass --url (or set UNISTORE_URL)")
    if bool(args.from_blob_dir) == bool(args.from_url):
        raise ConfigError("give exactly one of --from-blob-dir and --from-url")
    dest = _open(open_backend(url), args.create)
    source: Backend | None = None
    try:
        if args.from_blob_dir:
            summary = MigrateSummary(source=os.path.abspath(args.from_blob_dir))
            items = _blob_dir_items(args.from_blob_dir)
        else:
            source = open_backend(args.from_url)
            source.open()
            summary = MigrateSummary(source=redact(args.from_url))
            items = _backend_items(source)
        bar = None
        if not args.json and not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=0, unit="blob", desc="migrate", file=sys.stderr)
        try:
            migrate(items, dest, summary, workers=args.workers, progress=bar)
        finally:
            if bar is not None:
                bar.close()
    finally:
        dest.close()
        if source is not None:
            source.close()
    if args.json:
        print(json.dumps(asdict(summary), sort_keys=True))
    else:
        print(
            f"{summary.found} blob revisions found: {summary.copied} copied ({summary.bytes_copied} bytes), "
            f"{summary.skipped} already present, {summary.failed} failed, in {summary.seconds:.1f} s"
        )
        for failure in summary.failures:
            print(f"  failed: {failure}")
    return 1 if summary.failed else 0


def _storage_from_config(path: str) -> Any:
    import ZODB.config

    with open(path) as f:
        text = f.read()
    if re.search(r"^\s*<zodb(\s|>)", text, re.MULTILINE):  # a database section around the storage
        return ZODB.config.databaseFromString(text).storage
    return ZODB.config.storageFromString(text)


def cmd_gc(args: argparse.Namespace) -> int:
    from .blobstorage import S3BlobStorage

    storage = _storage_from_config(args.config)
    try:
        if not isinstance(storage, S3BlobStorage):
            raise ConfigError(f"{args.config} does not configure an <s3blobstorage>")
        bar = None
        if not args.json and not args.quiet:
            from tqdm import tqdm

            bar = tqdm(unit="blob", desc="gc", file=sys.stderr)
        try:
            result = storage.collect_garbage(dry_run=args.dry_run, progress=bar.update if bar is not None else None)
        finally:
            if bar is not None:
                bar.close()
    finally:
        storage.close()
    if args.json:
        data = asdict(result)
        print(json.dumps(data, sort_keys=True))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(
            f"{result.examined} blob revisions examined: {verb} {result.deleted} ({result.deleted_bytes} bytes), "
            f"kept {result.kept}, {result.skipped_in_flight} newer than the last commit, in {result.seconds:.1f} s"
        )
        if args.dry_run:
            for name in result.deleted_names:
                print(f"  {name}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``unistore zodb migrate|gc`` to the ``unistore`` command."""
    zodb = subparsers.add_parser("zodb", help="ZODB blob tools (migrate, gc)")
    sub = zodb.add_subparsers(dest="zodb_command", metavar="ZODB_COMMAND")
    sub.required = True
    m = sub.add_parser(
        "migrate",
        help="copy blobs of a ZODB blob directory or another backend into --url (resumable)",
        parents=[_common()],
    )
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--from-blob-dir", metavar="DIR", help="a ZODB blob directory (blob-dir of FileStorage/BlobStorage)"
    )
    src.add_argument("--from-url", metavar="URL", help="a backend URL holding blobs/{oid}/{tid}.blob (zodb-s3blobs)")
    m.add_argument("--workers", type=int, default=8, help="concurrent uploads (default 8)")
    m.add_argument("--create", action="store_true", help="create the destination (bucket) if it does not exist")
    m.set_defaults(func=cmd_migrate)
    g = sub.add_parser("gc", help="delete blob revisions the ZODB no longer references", parents=[_common()])
    g.add_argument("--config", required=True, metavar="FILE", help="ZODB config file with an <s3blobstorage>")
    g.add_argument("--dry-run", action="store_true", help="only report what would be deleted")
    g.set_defaults(func=cmd_gc)


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", default=argparse.SUPPRESS, help="destination backend URL ($UNISTORE_URL)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar")
    return p
