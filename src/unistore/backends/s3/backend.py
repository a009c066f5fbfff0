"""S3Backend: the Backend operations on one bucket and key prefix (the capabilities are mixed in
from :mod:`.capabilities` and :mod:`.multipart`)."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, BinaryIO

from ...errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendMustNotBeOpen,
    ConfigError,
    CredentialsError,
    DirectoryNotEmpty,
    NameConflict,
    ObjectNotFound,
    ReadRangeError,
)
from ...hashing import new_hash
from ..base import Backend, ItemInfo, Value, as_bytes_view, ordered_map, resolve_range
from . import listing
from .boto3_engine import Boto3Engine, Head, copy_source_sse_args, is_aws_endpoint, make_client, make_session
from .capabilities import S3Capabilities, initial_capabilities
from .config import GiB, MiB, OptionAttributes, S3Config, make_config, parse_url
from .errors import RangeNotSatisfiable, is_precondition_failed, translate
from .multipart import S3Multipart
from .obstore_engine import ObstoreEngine, make_store, obstore_blockers
from .redact import protect
from .streams import IterReader, LimitedReader, PrefixedReader, ViewReader, read_full, regular_fd, remaining_size
from .transfer import Uploader, parallel_download

MAX_COPY_SIZE = 5 * GiB  # largest object a single CopyObject can copy
MOVE_ROUNDS = 5  # copy attempts of a move whose source keeps changing under it


class S3Backend(S3Capabilities, S3Multipart, OptionAttributes, Backend):
    """A bucket (and key prefix) on S3 or an S3-compatible service. Thread-safe.

    The keyword options are those of :func:`~.config.make_config` (see docs/s3.md).
    """

    schemes = ("s3", "b2")

    def __init__(self, bucket: str, prefix: str = "", **options: Any) -> None:
        self.config: S3Config = make_config(bucket, prefix, **options)
        cfg = self.config
        self.bucket = cfg.bucket
        self.prefix = cfg.prefix
        self._root = self.prefix + "/" if self.prefix else ""
        self.bulk_workers = cfg.workers
        protect(cfg.secrets())
        self.capabilities = initial_capabilities(cfg)
        self.opened = False
        self._lock = threading.Lock()
        self._client: Any = None
        self._data: Any = None  # the data-path engine (ObstoreEngine or Boto3Engine)
        self._boto: Boto3Engine | None = None
        self._uploader: Uploader | None = None
        self._session: Any = None
        self._endpoint: str | None = None
        self._versioned = False
        self._pool: ThreadPoolExecutor | None = None
        self._known_dirs: set[str] = set()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Backend:
        """``(s3|b2):[profile|(access_key:secret)@][scheme://host[:port]]/bucket[/prefix]`` plus options."""
        bucket, prefix, kwargs = parse_url(url)
        kwargs.update(options)
        return cls(bucket, prefix, **kwargs)

    def __repr__(self) -> str:
        where = self.config.endpoint_url or "aws"
        return f"<S3Backend {where}/{self.bucket}/{self.prefix}>"

    # ------------------------------------------------------------------ clients
    def _make_clients(self) -> None:
        cfg = self.config
        session = make_session(cfg)
        cfg.region = session.region_name or cfg.region or "us-east-1"
        client = make_client(cfg, session)
        try:
            if session.get_credentials() is None:
                raise CredentialsError(
                    "no S3 credentials: give key:secret in the URL, a profile, or configure boto3's credential chain"
                )
            # the endpoint actually used, whatever its source (option, AWS_ENDPOINT_URL_S3, a profile)
            endpoint = str(client.meta.endpoint_url).rstrip("/")
            if cfg.sse_key is not None and not endpoint.startswith("https://") and not cfg.allow_insecure_sse_c:
                raise ConfigError(
                    f"refusing to send an SSE-C key over plain http to {endpoint}; "
                    "use https or allow_insecure_sse_c=True"
                )
            custom = cfg.endpoint_url or (None if is_aws_endpoint(endpoint) else endpoint)
            self._boto = Boto3Engine(client, cfg)
            self._data = self._boto
            if self._use_obstore(custom):
                self._data = ObstoreEngine(make_store(cfg, session, custom))
        except BaseException:
            client.close()
            raise
        self._client, self._session, self._endpoint = client, session, custom
        self._uploader = Uploader(
            client,
            self.bucket,
            workers=cfg.workers,
            chunksize=cfg.multipart_chunksize,
            checksum=cfg.checksum == "when_supported",
            sse=self._boto.sse,
        )

    def _use_obstore(self, endpoint: str | None) -> bool:
        if self.config.engine == "boto3":
            return False
        blockers = obstore_blockers(self.config, endpoint)
        if blockers and self.config.engine == "obstore":
            raise ConfigError(f"engine='obstore' cannot be used with {', '.join(blockers)}")
        return not blockers

    @property
    def client(self) -> Any:
        """The boto3 S3 client (for operations unistore does not wrap)."""
        self._check_open()
        return self._client

    def _bulk_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.config.workers, thread_name_prefix="unistore-s3")
            return self._pool

    def _close_clients(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._client is not None:
            self._client.close()
        self._client = self._data = self._boto = self._uploader = None

    def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as e:
            raise translate(e, what) from None

    # ------------------------------------------------------------------ keys
    def _key(self, name: str) -> str:
        return self._root + self._name(name)

    def _dir_prefix(self, name: str) -> str:
        name = self._name(name, allow_root=True)
        return self._root + name + "/" if name else self._root

    # ------------------------------------------------------------------ lifecycle
    def _bucket_exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return True
        except Exception as e:
            from .errors import http_status

            status = http_status(e)
            if status == 404:
                return False
            if status == 403:  # HEAD has no body to tell bad credentials from a policy: ask with a GET
                listing.any_key(self._client, self.bucket, self._root)
                return True
            raise translate(e, f"head bucket {self.bucket}") from None

    def _exists(self) -> bool:
        if not self._bucket_exists():
            return False
        return not self.prefix or listing.any_key(self._client, self.bucket, self._root)

    def _with_clients(self) -> Any:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._make_clients()

    def create(self) -> None:
        self._with_clients()
        try:
            if not self._bucket_exists():
                args: dict[str, Any] = {"Bucket": self.bucket}
                region = self.config.region
                if region and region != "us-east-1" and not self._endpoint:
                    args["CreateBucketConfiguration"] = {"LocationConstraint": region}
                self._call(f"create bucket {self.bucket}", self._client.create_bucket, **args)
            elif listing.any_key(self._client, self.bucket, self._root):
                raise BackendAlreadyExists(f"{self!r} exists and is not empty")
            if self.prefix:
                self._call("create", self._client.put_object, Bucket=self.bucket, Key=self._root, Body=b"")
        finally:
            self._close_clients()

    def destroy(self) -> None:
        self._with_clients()
        try:
            if not self._exists():
                raise BackendDoesNotExist(f"{self!r} does not exist")
            listing.delete_prefix(self._client, self.bucket, self._root, self.config.bypass_governance)
            if not self.prefix:
                self._call(f"delete bucket {self.bucket}", self._client.delete_bucket, Bucket=self.bucket)
        finally:
            self._close_clients()

    def open(self) -> None:
        self._with_clients()
        try:
            if not self._exists():
                raise BackendDoesNotExist(f"{self!r} does not exist (create it first)")
            versioning = self._call("versioning", self._client.get_bucket_versioning, Bucket=self.bucket)
            self._versioned = versioning.get("Status") in ("Enabled", "Suspended")
            locked = self._versioned and self._object_lock_enabled()
            if locked and isinstance(self._data, ObstoreEngine):
                self._data = ObstoreEngine(make_store(self.config, self._session, self._endpoint, checksum=True))
            self.capabilities = initial_capabilities(self.config, object_lock=locked)
        except BaseException:
            self._close_clients()
            raise
        self._known_dirs = set()
        self.opened = True

    def _object_lock_enabled(self) -> bool:
        try:
            conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
        except Exception:  # no lock configuration (or not implemented by the service)
            return False
        return bool(conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled")

    def close(self) -> None:
        self.opened = False
        self._close_clients()

    # ------------------------------------------------------------------ directories
    def mkdir(self, name: str) -> None:
        self._check_open()
        prefix = self._dir_prefix(name)
        if not prefix:
            return
        if name.strip("/") and self._data.head(self._key(name), name) is not None:
            raise NameConflict(f"{name} is an item, not a directory")
        self._call(f"mkdir {name}", self._client.put_object, Bucket=self.bucket, Key=prefix, Body=b"")

    def rmdir(self, name: str) -> None:
        self._check_open()
        prefix = self._dir_prefix(name)
        page = next(listing.pages(self._client, self.bucket, prefix, max_keys=2))
        keys = [o["Key"] for o in page.get("Contents", [])]
        if not keys:
            raise ObjectNotFound(name)
        if keys != [prefix]:
            raise DirectoryNotEmpty(f"directory not empty: {name!r}")
        # boto3, not obstore: obstore drops the trailing slash of a marker key
        self._call(f"rmdir {name}", self._client.delete_object, Bucket=self.bucket, Key=prefix)
        self._known_dirs.discard(prefix)

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        prefix = self._dir_prefix(name)
        pages = listing.pages(self._client, self.bucket, prefix, delimiter="/")
        first = next(pages, None)
        if name and (first is None or not listing.page_count(first)):
            raise ObjectNotFound(name)
        return listing.dir_entries(prefix, listing.chain_first(first, pages))

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        """Every item below ``name`` from one flat paginated prefix listing (no request per directory)."""
        self._check_open()
        prefix = self._dir_prefix(name)
        pages = listing.pages(self._client, self.bucket, prefix)
        first = next(pages)
        if name and not listing.page_count(first):
            raise ObjectNotFound(name)
        entries = listing.recursive_entries(prefix, listing.chain_first(first, pages))
        # S3 lists in key order, but services with real directories (SeaweedFS) list depth first
        # ("b/x" before "b-c"): the contract is the order of full names, so sort (names only in memory)
        return iter(sorted(entries, key=lambda item: item.name))

    def _is_dir(self, name: str) -> bool:
        return self._first_below(name) is not None

    def _first_below(self, name: str) -> str | None:
        """The first key below directory ``name`` (its marker included), None if it is no directory."""
        name = self._name(name, allow_root=True)
        if not name:
            return self._root
        return self._data.first_key_below(self._key(name), name)  # type: ignore[no-any-return]

    def _check_store_target(self, name: str) -> None:
        """NameConflict if ``name`` is a directory or one of its parents is an item (as memory:// does).

        One LIST (on the data engine) before the PUT; asking alongside the PUT is not safe on
        services with real directories (SeaweedFS replaces an empty directory by the item).
        ``name_checks=False`` skips it (one round trip less per store; the contract is then not kept).
        """
        if not self.config.name_checks:
            return
        if self._is_dir(name):
            raise NameConflict(f"{name} is a directory")
        self._check_parents(name)

    def _check_parents(self, name: str) -> None:
        """NameConflict if a parent of ``name`` is an item (one HEAD per parent, once per instance)."""
        parts = name.strip("/").split("/")[:-1]
        for i in range(len(parts), 0, -1):
            parent = "/".join(parts[:i])
            if self._dir_prefix(parent) in self._known_dirs:
                break
            if self._data.head(self._key(parent), parent) is not None:
                raise NameConflict(f"{parent} is an item, not a directory")
        if parts:
            with self._lock:
                if len(self._known_dirs) > 100_000:
                    self._known_dirs.clear()
                self._known_dirs.update(self._dir_prefix("/".join(parts[:i])) for i in range(1, len(parts) + 1))

    # ------------------------------------------------------------------ items
    def info(self, name: str) -> ItemInfo:
        self._check_open()
        name = self._name(name, allow_root=True)
        base = name.rsplit("/", 1)[-1]
        if not name:
            return ItemInfo("", True, 0, True)
        head = self._data.head(self._key(name), name)
        if head is not None:
            return ItemInfo(base, True, head.size, False, 0, head.mtime)
        return ItemInfo(base, True, 0, True) if self._is_dir(name) else ItemInfo(base, False)

    def _head_existing(self, key: str, name: str) -> Head:
        head = self._data.head(key, name)
        if head is None:
            raise ObjectNotFound(name)
        return head

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        self._check_open()
        key = self._key(name)
        if size is not None and size < 0:
            raise ReadRangeError(f"size must be >= 0 or None, not {size}")
        if size == 0:
            head = self._head_existing(key, name)
            resolve_range(head.size, offset, 0)
            return b""
        if offset < 0:
            rng: tuple[int, int] | dict[str, int] | None = {"suffix": -offset}
        elif size is not None and offset + size < 2**63:
            rng = (offset, offset + size)
        elif offset > 0 or size is not None:
            rng = {"offset": offset}  # a size past any object: the rest of it, as a file read gives
        else:
            rng = None
        try:
            data = self._data.get(key, name, rng)
        except RangeNotSatisfiable:
            head = self._head_existing(key, name)
            resolve_range(head.size, offset, size)  # raises for a negative offset before the start
            data = b""
        if offset < 0:
            if len(data) < -offset:
                raise ReadRangeError(f"offset {offset} lies before the start of {name} ({len(data)} bytes)")
            if size is not None:
                data = data[:size]
        return data

    def store(self, name: str, value: Value) -> None:
        """One PUT (multipart from ``multipart_threshold`` on); NameConflict onto a directory."""
        self._check_open()
        key = self._key(name)
        view = as_bytes_view(value)
        self._check_store_target(name)
        if len(view) >= self.config.multipart_threshold:
            self._upload(key, name, ViewReader(view), len(view), self._boto_put_extra())  # type: ignore[arg-type]
        else:
            self._data.put(key, name, view)

    def _boto_put_extra(self) -> dict[str, Any]:
        assert self._boto is not None
        return dict(self._boto.put_extra)

    def _upload(self, key: str, name: str, file: IO[bytes], size: int | None, extra: dict[str, Any]) -> str:
        assert self._uploader is not None
        return self._uploader.upload(key, name, file, size, extra)

    def delete(self, name: str) -> None:
        self._check_open()
        key = self._key(name)
        head = self._head_existing(key, name)
        self._delete_key(key, name, head)

    def _delete_key(self, key: str, name: str, head: Head, *, if_match: bool = False) -> bool:
        """Delete the object ``head`` describes; with ``if_match`` only while its ETag is unchanged.

        Returns False when the condition did not hold (someone stored a new value meanwhile).
        """
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if self._versioned:
            if head.version:
                args["VersionId"] = head.version  # exactly the version that was read: a newer one stays
            if self.config.bypass_governance:
                args["BypassGovernanceRetention"] = True
        elif if_match and head.etag:
            args["IfMatch"] = head.etag
        elif not if_match and isinstance(self._data, ObstoreEngine):
            self._data.delete(key, name)
            return True
        try:
            self._client.delete_object(**args)
        except Exception as e:
            if if_match and is_precondition_failed(e):
                return False
            raise translate(e, f"delete {name}") from None
        return True

    def move(self, curr_name: str, new_name: str) -> None:
        """Server-side copy, then a conditional delete of exactly the source that was copied.

        The copy reads the source only while its ETag is the one just read (copy-source If-Match),
        and the delete removes it only while that ETag holds (If-Match; on versioned buckets the
        version id), so a ``store(curr_name)`` landing between the copy and the delete survives.
        """
        self._check_open()
        src, dst = self._key(curr_name), self._key(new_name)
        if src == dst:
            self._head_existing(src, curr_name)
            return
        if self._is_dir(new_name):
            raise NameConflict(f"{new_name} is a directory")
        if self.config.name_checks:
            self._check_parents(new_name)
        for _ in range(MOVE_ROUNDS):
            head = self._head_existing(src, curr_name)
            try:
                self._copy(src, dst, curr_name, head)
            except _SourceChanged:
                continue  # a new value landed after the HEAD: move that one
            self._delete_key(src, curr_name, head, if_match=True)
            return
        raise ObjectNotFound(f"{curr_name} kept changing during the move")  # pragma: no cover

    def copy(self, src: str, dst: str) -> None:
        """Server-side copy (multipart copy above 5 GiB); no data passes through this process."""
        self._check_open()
        skey, dkey = self._key(src), self._key(dst)
        for _ in range(MOVE_ROUNDS):
            try:
                self._copy(skey, dkey, src, self._head_existing(skey, src))
                return
            except _SourceChanged:
                continue
        raise ObjectNotFound(f"{src} kept changing during the copy")  # pragma: no cover

    def _copy(self, src: str, dst: str, name: str, head: Head) -> None:
        assert self._boto is not None and self._uploader is not None
        extra = {**self._boto.put_extra, **copy_source_sse_args(self.config)}
        source = {"Bucket": self.bucket, "Key": src}
        try:
            if head.size > MAX_COPY_SIZE:
                self._uploader.copy(source, dst, name, head.size, extra, head.etag or "")
            else:
                cond = {"CopySourceIfMatch": head.etag} if head.etag else {}
                self._client.copy_object(CopySource=source, Bucket=self.bucket, Key=dst, **cond, **extra)
        except Exception as e:
            if is_precondition_failed(e):
                raise _SourceChanged() from None
            raise translate(e, f"copy {name}") from None

    # ------------------------------------------------------------------ streaming
    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        """Stream a file to ``name``: one PUT when small, else a parallel multipart upload.

        A failure or a KeyboardInterrupt aborts the upload this call created (and no other).
        """
        self._check_open()
        self._check_store_target(name)
        self._store_stream(name, file, size, None)

    def _store_stream(self, name: str, file: IO[bytes], size: int | None, extra: dict[str, Any] | None) -> None:
        """One PUT for less than ``multipart_threshold`` bytes (also of a stream of unknown size), else multipart.

        ``extra``: PutObject arguments (metadata); None for a plain store on the data engine.
        """
        key = self._key(name)
        threshold = self.config.multipart_threshold
        if size is None:
            size = remaining_size(file)
        src: IO[bytes]
        if size is None:
            first = read_full(file, threshold)
            if len(first) < threshold:
                self._put_small(key, name, first, extra)
                return
            src = PrefixedReader(first, file)  # type: ignore[assignment]
        elif size < threshold:
            self._put_small(key, name, read_full(file, size), extra)
            return
        else:
            src = LimitedReader(file, size)  # type: ignore[assignment]
        self._upload(key, name, src, size, self._boto_put_extra() if extra is None else extra)

    def _put_small(self, key: str, name: str, data: bytes, extra: dict[str, Any] | None) -> None:
        if extra is None:
            self._data.put(key, name, data)
        else:
            self._call(f"store {name}", self._client.put_object, Bucket=self.bucket, Key=key, Body=data, **extra)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        """Stream ``name`` (or a range) into ``file``; large objects of a regular file in parallel ranges."""
        self._check_open()
        key = self._key(name)
        head = self._head_existing(key, name)
        start, length = resolve_range(head.size, offset, size)
        fd = regular_fd(file)
        part = self.config.multipart_chunksize
        if fd is not None and length >= 2 * part and self.config.workers > 1:

            def fetch(off: int, n: int) -> Any:
                return self._data.get_buffer(key, name, off, n)

            written = parallel_download(fetch, name, fd, file.tell(), start, length, part, min(self.config.workers, 8))
            file.seek(written, os.SEEK_CUR)
        else:
            written = 0
            for chunk in self._data.stream(key, name, start, length):
                file.write(chunk)
                written += len(chunk)
        if written != length:
            raise ReadRangeError(f"{name}: got {written} of {length} bytes")
        return written

    def open_reader(self, name: str) -> BinaryIO:
        """A buffered, streaming reader of ``name`` (one GET, read as it is consumed)."""
        self._check_open()
        key = self._key(name)
        head = self._head_existing(key, name)
        raw = IterReader(self._data.stream(key, name, 0, head.size))
        return io.BufferedReader(raw, buffer_size=1 * MiB)  # type: ignore[return-value]

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        """Hex digest of the content, streamed (no value is held in memory); hashlib's algorithms and blake3."""
        h = new_hash(algorithm)
        self._check_open()
        key = self._key(name)
        head = self._head_existing(key, name)
        for chunk in self._data.stream(key, name, 0, head.size):
            h.update(chunk)
        return h.hexdigest()

    # ------------------------------------------------------------------ bulk
    def _map(self, func: Any, items: Iterable[Any]) -> Iterator[Any]:
        if self.config.workers <= 1:
            return map(func, items)
        return ordered_map(self._bulk_pool(), func, items, self.config.workers * 4)

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        """HEAD all names concurrently, then delete the existing ones in DeleteObjects batches."""
        self._check_open()
        names = builtins_list(names)
        keys = [self._key(n) for n in names]
        heads = builtins_list(self._map(lambda kn: self._data.head(kn[0], kn[1]), zip(keys, names, strict=True)))
        missing = [n for n, h in zip(names, heads, strict=True) if h is None]
        if missing and not missing_ok:
            raise ObjectNotFound(missing[0])
        batch: list[dict[str, str]] = []
        for k, h in zip(keys, heads, strict=True):
            if h is not None:
                entry = {"Key": k}
                if self._versioned and h.version:
                    entry["VersionId"] = h.version
                batch.append(entry)
        for i in range(0, len(batch), listing.DELETE_BATCH):
            listing.delete_batch(
                self._client, self.bucket, batch[i : i + listing.DELETE_BATCH], self.config.bypass_governance
            )
        return len(batch)


class _SourceChanged(Exception):
    """Internal: a copy's source ETag no longer held (copy-source If-Match failed)."""


builtins_list = list
