"""``s3_media_upload``: offload a Synapse media store to a backend, with upstream's commands and flags.

A drop-in for the script of synapse-s3-storage-provider: the same commands (``update-db``,
``check-deleted``, ``update``, ``write``, ``upload``), flags and ``cache.db`` in the working
directory, and ``database.yaml`` (taking priority) or ``homeserver.yaml`` for Synapse's database,
SQLite or PostgreSQL. What differs: ``upload`` runs ``--concurrency`` files at a time with a
progress bar and a summary; ``--delete`` removes a local file only after the stored object's size
(and MD5, where the backend reports one) matched it; ``--url`` offloads to any unistore backend;
an interrupted run resumes (stored objects of the right size are not sent again, deleted media are
marked in ``cache.db`` as the run goes).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from ...backends.base import Backend, ordered_map
from ...errors import ConfigError, ObjectNotFound, UnistoreError
from ...url import open_backend, redact
from .layout import content_path, is_media_path, thumbnail_dir

SCHEMA = """
    CREATE TABLE IF NOT EXISTS media (
        origin TEXT NOT NULL,  -- empty string if local media
        media_id TEXT NOT NULL,
        filesystem_id TEXT NOT NULL,
        -- Type is "local" or "remote"
        type TEXT NOT NULL,
        -- indicates whether the media and all its thumbnails have been deleted from the
        -- local cache
        known_deleted BOOLEAN NOT NULL
    );

    CREATE UNIQUE INDEX IF NOT EXISTS media_id_idx ON media(origin, media_id);
    CREATE INDEX IF NOT EXISTS deleted_idx ON media(known_deleted);
"""
STORAGE_CLASSES = ["STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING"]
LOCAL_SQL = """
    SELECT '', media_id, media_id FROM local_media_repository
    WHERE COALESCE(last_access_ts, created_ts) < %s AND url_cache IS NULL
"""
REMOTE_SQL = """
    SELECT media_origin, media_id, filesystem_id FROM remote_media_cache
    WHERE COALESCE(last_access_ts, created_ts) < %s
"""
COMMIT_EVERY = 500  # rows of cache.db marked deleted per transaction
PAGE = 1000
LIST_LIMIT = 100_000  # list the destination up to this many objects (or 20 per media) instead of a HEAD per file


class UsageError(Exception):
    """A bad command line or environment (exit status 2)."""


# ----------------------------------------------------------------- parsing
def parse_duration(text: str) -> datetime.datetime:
    """``now`` minus a duration ``N[shdmy]`` (m = months of 30 days, as upstream)."""
    number, suffix = text[:-1], text[-1:]
    try:
        n = int(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "duration must be an integer followed by a 's', 'h', 'd', 'm' or 'y' suffix"
        ) from None
    seconds = {"s": 1, "h": 3600, "d": 86400, "m": 30 * 86400, "y": 365 * 86400}.get(suffix)
    if seconds is None:
        raise argparse.ArgumentTypeError("duration must end in 's', 'h', 'd', 'm' or 'y'")
    return datetime.datetime.now() - datetime.timedelta(seconds=n * seconds)


def human_size(n: float) -> str:
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n:.1f}T"


# ----------------------------------------------------------------- databases
def cache_db() -> sqlite3.Connection:
    """``cache.db`` in the working directory, with upstream's schema."""
    try:
        conn = sqlite3.connect("cache.db")
        conn.executescript(SCHEMA)
    except sqlite3.Error as e:
        raise UsageError(f"Could not open 'cache.db' as sqlite DB: {e}") from None
    return conn


def _load_yaml(path: str) -> Any:
    import yaml

    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise UsageError(f"Could not find {path}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{path} is not valid yaml: {e}") from None


def _postgres(**kwargs: Any) -> Any:
    try:
        import psycopg2
    except ImportError:
        raise UsageError("PostgreSQL needs psycopg2: pip install psycopg2-binary (or psycopg2)") from None
    try:
        return psycopg2.connect(**kwargs)
    except psycopg2.Error as e:
        raise UsageError(f"Could not connect to postgres database: {e}") from None


def _sqlite(database: str, **kwargs: Any) -> sqlite3.Connection:
    if not os.path.isfile(database):  # sqlite3 would create an empty database
        raise UsageError(f"Could not connect to sqlite3 database: no such file {database!r}")
    try:
        return sqlite3.connect(database, **kwargs)
    except sqlite3.Error as e:
        raise UsageError(f"Could not connect to sqlite3 database: {e}") from None


def synapse_db(homeserver_config_path: str) -> Any:
    """Synapse's database from ``database.yaml`` (if present) or the homeserver config."""
    if os.path.isfile("database.yaml"):
        conf = _load_yaml("database.yaml") or {}
        if "sqlite" in conf:
            return _sqlite(**conf["sqlite"])
        return _postgres(**conf.get("postgres", conf))
    conf = _load_yaml(homeserver_config_path) or {}
    try:
        name = conf["database"]["name"]
        args = dict(conf["database"]["args"])
    except (KeyError, TypeError):
        raise UsageError(f"{homeserver_config_path} has no database: name/args section") from None
    if name == "sqlite3":
        return _sqlite(args["database"])
    return _postgres(**{k: v for k, v in args.items() if not k.startswith("cp_")})


def not_deleted_count(cache: sqlite3.Connection) -> int:
    return int(cache.execute("SELECT COALESCE(count(*), 0) FROM media WHERE NOT known_deleted").fetchone()[0])


def not_deleted(cache: sqlite3.Connection) -> Iterator[tuple[str, str, str, str]]:
    """``(origin, media_id, filesystem_id, type)`` rows not known deleted, read page by page."""
    cur = cache.execute("SELECT origin, media_id, filesystem_id, type FROM media WHERE NOT known_deleted")
    while rows := cur.fetchmany(PAGE):
        yield from rows


class _DeletedMarks:
    """Marks media known_deleted in cache.db, committing every COMMIT_EVERY rows (and at close)."""

    def __init__(self, cache: sqlite3.Connection):
        self.cache = cache
        self.pending: list[tuple[bool, str, str]] = []
        self.count = 0

    def add(self, origin: str, media_id: str) -> None:
        self.pending.append((True, origin, media_id))
        if len(self.pending) >= COMMIT_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            with self.cache:
                self.cache.executemany(
                    "UPDATE media SET known_deleted = ? WHERE origin = ? AND media_id = ?", self.pending
                )
            self.count += len(self.pending)
            self.pending = []


# ----------------------------------------------------------------- commands
def run_update_db(synapse_conn: Any, cache: sqlite3.Connection, before: datetime.datetime) -> int:
    """Copy media rows not accessed since ``before`` from Synapse's database into cache.db."""
    ts = int(before.timestamp() * 1000)
    print("Syncing files that haven't been accessed since:", before.isoformat(" "), flush=True)
    count = 0
    with cache:
        for sql, media_type in ((LOCAL_SQL, "local"), (REMOTE_SQL, "remote")):
            print("  Syncing", media_type, "media", flush=True)
            if isinstance(synapse_conn, sqlite3.Connection):
                cur: Any = synapse_conn.execute(sql.replace("%s", "?"), (ts,))
            else:  # a server-side cursor: rows arrive while we insert
                cur = synapse_conn.cursor(f"{media_type}_items")
                cur.itersize = 10000
                cur.execute(sql, (ts,))
            before_changes = cache.total_changes
            while rows := cur.fetchmany(PAGE):
                cache.executemany(
                    "INSERT OR IGNORE INTO media (origin, media_id, filesystem_id, type, known_deleted)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(o, m, f, media_type, False) for o, m, f in rows],
                )
            count += cache.total_changes - before_changes
            cur.close()
    print("Synced", count, "new rows", flush=True)
    synapse_conn.close()
    return count


def local_files(base_path: str, origin: str, filesystem_id: str, media_type: str) -> list[str]:
    """Relative paths of the media file and its thumbnails that exist under ``base_path``."""
    found = []
    original = content_path(origin, filesystem_id, media_type)
    if os.path.exists(os.path.join(base_path, original)):
        found.append(original)
    thumbs = thumbnail_dir(origin, filesystem_id, media_type)
    try:
        with os.scandir(os.path.join(base_path, thumbs)) as entries:
            found += sorted(f"{thumbs}/{e.name}" for e in entries if e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        pass
    return found


def _progress(iterable: Any, total: int, enabled: bool, what: str) -> Any:
    if not enabled:
        print(f"{what} {total} files", flush=True)
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, unit="files", total=total)


def run_check_deleted(cache: sqlite3.Connection, base_path: str, progress: bool = True) -> int:
    """Mark media whose files are all gone from ``base_path`` as known_deleted."""
    marks = _DeletedMarks(cache)
    rows = list(not_deleted(cache))
    for origin, media_id, filesystem_id, media_type in _progress(rows, len(rows), progress, "Checking on"):
        if not local_files(base_path, origin, filesystem_id, media_type):
            marks.add(origin, media_id)
    marks.flush()
    print("Updated", marks.count, "as deleted", flush=True)
    return marks.count


def run_write(cache: sqlite3.Connection, out: IO[str]) -> None:
    """Print every file path and thumbnail directory (with a trailing ``/``) of media not known deleted."""
    for origin, _, filesystem_id, media_type in not_deleted(cache):
        print(content_path(origin, filesystem_id, media_type), file=out)
        print(thumbnail_dir(origin, filesystem_id, media_type) + "/", file=out)


@dataclass
class Summary:
    """What an upload run did (printed at the end; ``--json`` prints it as JSON)."""

    media: int = 0
    uploaded_media: int = 0
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    skipped_files: int = 0
    deleted_media: int = 0
    deleted_files: int = 0
    deleted_bytes: int = 0
    failed_files: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def print(self, as_json: bool = False) -> None:
        if as_json:
            print(json.dumps(asdict(self)))
            return
        print("Uploaded", self.uploaded_media, "media out of", self.media)
        print("Uploaded", self.uploaded_files, "files")
        print("Uploaded", human_size(self.uploaded_bytes))
        print("Skipped", self.skipped_files, "files already stored")
        print("Deleted", self.deleted_media, "media")
        print("Deleted", self.deleted_files, "files")
        print("Deleted", human_size(self.deleted_bytes))
        if self.failed_files:
            print("Failed", self.failed_files, "files:")
            for error in self.errors[:20]:
                print("  " + error)
        print(f"in {self.seconds:.1f}s", flush=True)


@dataclass
class _MediaResult:
    origin: str
    media_id: str
    files: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped: int = 0
    deleted: int = 0
    deleted_bytes: int = 0
    errors: list[str] = field(default_factory=list)


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def _stored_matches(backend: Backend, key: str, local_path: str, size: int, check_checksum: bool) -> bool:
    """True if ``key`` is stored with ``size`` bytes (and, when asked and reported, the local file's MD5).

    Raises ObjectNotFound if nothing is stored at ``key``.
    """
    meta = backend.stat(key)
    if meta.size != size:
        return False
    md5 = meta.checksums.get("md5") if check_checksum else None  # the backend reports it only where it is the content's
    return md5 is None or md5.lower() == _md5(local_path)


class Uploader:
    """Uploads (and with ``delete``, verifies and removes) the files of media rows, concurrently.

    :meth:`list_stored` lists what the backend holds below the prefix once (up to a limit), so that
    the check "already stored?" costs no request per file; past the limit each file is checked.
    """

    def __init__(self, backend: Backend, base_path: str, prefix: str, *, delete: bool, verify_md5: bool = True):
        self.backend = backend
        self.base_path = base_path
        self.prefix = prefix
        self.delete = delete
        self.verify_md5 = verify_md5
        self.stored: dict[str, int] | None = None  # media path -> size, when the listing was complete

    def list_stored(self, limit: int) -> bool:
        """Remember the sizes of up to ``limit`` stored media objects; False if there are more."""
        directory, _, stem = self.prefix.rpartition("/")
        stored: dict[str, int] = {}
        try:
            for item in self.backend.list_recursive(directory):
                if item.directory or not item.name.startswith(stem):
                    continue
                path = item.name[len(stem) :]
                if is_media_path(path):
                    stored[path] = item.size
                    if len(stored) > limit:
                        return False
        except ObjectNotFound:
            pass
        self.stored = stored
        return True

    def _exists(self, rel: str, key: str, local_path: str, size: int) -> bool:
        if self.stored is not None:
            return self.stored.get(rel) == size
        try:
            return _stored_matches(self.backend, key, local_path, size, check_checksum=False)
        except ObjectNotFound:
            return False

    def media(self, row: tuple[str, str, str, str]) -> _MediaResult:
        origin, media_id, filesystem_id, media_type = row
        result = _MediaResult(origin, media_id)
        rels = local_files(self.base_path, origin, filesystem_id, media_type)
        result.files = len(rels)
        for rel in rels:
            local_path = os.path.join(self.base_path, rel)
            key = self.prefix + rel
            try:
                size = os.path.getsize(local_path)
                if self._exists(rel, key, local_path, size):
                    result.skipped += 1
                else:
                    with open(local_path, "rb") as f:
                        self.backend.store_file(key, f, size=size)
                    result.uploaded += 1
                    result.uploaded_bytes += size
                if self.delete:
                    if not _stored_matches(self.backend, key, local_path, size, check_checksum=self.verify_md5):
                        raise UnistoreError(f"the stored object {key} does not match the local file: kept")
                    os.remove(local_path)
                    _remove_empty_parents(os.path.dirname(local_path), self.base_path)
                    result.deleted += 1
                    result.deleted_bytes += size
            except (OSError, UnistoreError) as e:
                result.errors.append(f"{local_path}: {type(e).__name__}: {e}")
        return result


def _remove_empty_parents(directory: str, base_path: str) -> None:
    base = os.path.abspath(base_path)
    directory = os.path.abspath(directory)
    while directory.startswith(base + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)


def run_upload(
    backend: Backend,
    cache: sqlite3.Connection,
    base_path: str,
    prefix: str,
    *,
    delete: bool,
    concurrency: int = 16,
    progress: bool = True,
) -> Summary:
    """Upload every media file not known deleted; see the module docstring."""
    t0 = time.monotonic()
    summary = Summary(media=not_deleted_count(cache))
    uploader = Uploader(backend, base_path, prefix, delete=delete)
    uploader.list_stored(limit=max(LIST_LIMIT, 20 * summary.media))
    marks = _DeletedMarks(cache)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=summary.media, unit="media")
    else:
        print("Uploading ", summary.media, " media", flush=True)
    rows = list(not_deleted(cache))  # read before marking: sqlite cursors and writes on one connection
    lock = threading.Lock()
    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3_media_upload") as pool:
            for r in ordered_map(pool, uploader.media, rows, concurrency * 4):
                with lock:
                    summary.uploaded_files += r.uploaded
                    summary.uploaded_bytes += r.uploaded_bytes
                    summary.uploaded_media += 1 if r.uploaded else 0
                    summary.skipped_files += r.skipped
                    summary.deleted_files += r.deleted
                    summary.deleted_bytes += r.deleted_bytes
                    summary.deleted_media += 1 if r.deleted else 0
                    summary.failed_files += len(r.errors)
                    summary.errors += r.errors
                if r.files == 0 or (r.deleted == r.files and not r.errors):
                    marks.add(r.origin, r.media_id)  # nothing left locally: never look at it again
                if bar is not None:
                    bar.update(1)
    finally:
        marks.flush()  # also on Ctrl-C: the next run resumes after what was done
        if bar is not None:
            bar.close()
    summary.seconds = time.monotonic() - t0
    return summary


# ----------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Upstream's options and commands (plus ours) on ``parser``."""
    parser.add_argument("--no-progress", help="do not show progress bars", action="store_true", dest="no_progress")
    sub = parser.add_subparsers(help="command to run", dest="cmd", metavar="CMD")
    duration_help = (
        "Fetch rows that haven't been accessed in the duration given, accepts duration of the form of e.g. 1m "
        "(one month). Valid suffixes are s, h, d, m or y. NOTE: Currently does not remove entries from the cache"
    )
    hs_help = "Path to the yaml file containing Synapse's DB settings"
    p = sub.add_parser("update-db", help="Syncs rows from database to local cache")
    p.add_argument("duration", type=parse_duration, help=duration_help)
    p.add_argument("--homeserver-config-path", help=hs_help, default="homeserver.yaml")
    p = sub.add_parser("check-deleted", help="Check whether files in the local cache still exist under given path")
    p.add_argument("base_path", help="Base path of the media store directory")
    p = sub.add_parser("update", help="Updates local cache. Equivalent to running update-db and check-deleted")
    p.add_argument("base_path", help="Base path of the media store directory")
    p.add_argument("duration", type=parse_duration, help=duration_help)
    p.add_argument("--homeserver-config-path", help=hs_help, default="homeserver.yaml")
    p = sub.add_parser(
        "write",
        help="Outputs all file and directory paths in the local cache that we may not have deleted. "
        "check-deleted should be run first to update cache.",
    )
    p.add_argument(
        "out",
        type=argparse.FileType("w", encoding="UTF-8"),
        default="-",
        nargs="?",
        help="File to output list to, or '-' for stdout",
    )
    p = sub.add_parser("upload", help="Uploads media to s3 (or any backend: --url) based on local cache")
    p.add_argument("base_path", help="Base path of the media store directory")
    p.add_argument("bucket", nargs="?", help="S3 bucket to upload to (or give --url)")
    p.add_argument("--prefix", help="Prefix of files in the bucket (used verbatim)", default="")
    p.add_argument(
        "--storage-class", help="S3 storage class to use", nargs="?", choices=STORAGE_CLASSES, default="STANDARD"
    )
    p.add_argument("--sse-customer-key", help="SSE-C key to use")
    p.add_argument(
        "--sse-customer-algo",
        help="Algorithm for SSE-C, only used if sse-customer-key is also specified",
        default="AES256",
    )
    p.add_argument(
        "--delete",
        action="store_const",
        const=True,
        help="Deletes local copy from media store on successful (verified) upload",
    )
    p.add_argument("--endpoint-url", help="S3 endpoint url to use", default=None)
    p.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="any unistore backend URL instead of BUCKET, e.g. sftp://host/media or file:///mnt/media",
    )
    p.add_argument("--concurrency", type=int, default=16, help="files uploaded at a time (default 16)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the summary as JSON")


def upload_backend(args: argparse.Namespace) -> Backend:
    """The opened destination backend of an ``upload`` command line."""
    url = getattr(args, "url", None)
    if url and args.bucket:
        raise UsageError("give BUCKET or --url, not both")
    options: dict[str, Any] = {}
    if not url:
        if not args.bucket:
            raise UsageError("upload needs BUCKET (or --url)")
        url = f"s3:/{args.bucket}"
        if args.endpoint_url:
            options["endpoint_url"] = args.endpoint_url
    elif args.endpoint_url:
        raise UsageError("--endpoint-url goes with BUCKET; put the endpoint into the --url")
    if url.lower().startswith(("s3:", "b2:")):
        if args.storage_class and args.storage_class != "STANDARD":
            options["storage_class"] = args.storage_class
        if args.sse_customer_key:
            if (args.sse_customer_algo or "AES256") != "AES256":
                raise UsageError("--sse-customer-algo must be AES256")
            options["sse_customer_key"] = args.sse_customer_key
        options["max_pool_connections"] = args.concurrency + 4
        options["workers"] = 4
    elif args.sse_customer_key or args.storage_class not in (None, "STANDARD"):
        raise UsageError("--storage-class and --sse-customer-key apply to S3 only")
    try:
        backend = open_backend(url, **options)
        backend.open()
    except UnistoreError as e:
        raise UsageError(f"cannot open {redact(url)}: {e}") from None
    return backend


def run(args: argparse.Namespace) -> int:
    progress = not args.no_progress and not getattr(args, "quiet", False)
    if args.cmd == "write":
        run_write(cache_db(), args.out)
    elif args.cmd == "update-db":
        cache = cache_db()
        run_update_db(synapse_db(args.homeserver_config_path), cache, args.duration)
    elif args.cmd == "check-deleted":
        run_check_deleted(cache_db(), args.base_path, progress)
    elif args.cmd == "update":
        cache = cache_db()
        run_update_db(synapse_db(args.homeserver_config_path), cache, args.duration)
        run_check_deleted(cache, args.base_path, progress)
    elif args.cmd == "upload":
        if args.concurrency < 1:
            raise UsageError("--concurrency must be >= 1")
        cache = cache_db()
        backend = upload_backend(args)
        try:
            summary = run_upload(
                backend,
                cache,
                args.base_path,
                args.prefix,
                delete=bool(args.delete),
                concurrency=args.concurrency,
                progress=progress,
            )
        finally:
            backend.close()
        summary.print(as_json=getattr(args, "json", False))
        return 1 if summary.failed_files else 0
    else:
        raise UsageError("Valid subcommand must be specified")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``s3_media_upload`` console script."""
    parser = argparse.ArgumentParser(prog="s3_media_upload")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as e:
        parser.error(str(e))
    except (ConfigError, UnistoreError) as e:
        print(f"s3_media_upload: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        if not type(e).__module__.startswith(("sqlite3", "psycopg2")):
            raise
        print(f"s3_media_upload: database error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("s3_media_upload: interrupted; run it again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
