"""SFTPBackend: items are files below a base path on an SFTP server (see the package docstring)."""

from __future__ import annotations

import builtins
import errno
import io
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, BinaryIO, TypeVar

from ...errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendMustNotBeOpen,
    ConfigError,
    DirectoryNotEmpty,
    InvalidName,
    NameConflict,
    ObjectNotFound,
    QuotaExceeded,
    ReadRangeError,
)
from ...names import HID_SUFFIX, TMP_SUFFIX, check_name, is_listable
from ..base import CHUNK_SIZE, Backend, ItemInfo, Value, as_bytes_view, resolve_range
from ..oserror import translate_oserror
from . import batch
from .config import DEFAULT_CHANNELS, DEFAULT_CONNECTIONS, DEFAULT_TIMEOUT, OPTIONS, Settings, check_options, parse_url
from .pool import Pool
from .protocol import MAX_OFFSET, WRITE_FLAGS, Channel, ChannelLost, Reader, StatusError

T = TypeVar("T")

#: bytes of READ / WRITE requests in flight while streaming one value
READ_AHEAD = WRITE_AHEAD = 8 * 1024 * 1024
#: bytes asked for along with the FSTAT of a load: a value up to this size costs two round trips
FIRST_READ_BYTES = 255 * 1024
#: READ and WRITE size with OpenSSH (its sftp-server takes messages up to 256 KiB), and elsewhere
OPENSSH_REQUEST = 255 * 1024
DEFAULT_REQUEST = 32 * 1024
#: load_file hands data to the destination file in batches of this size
WRITE_BATCH = 1024 * 1024
#: the name limits of the POSIX servers we meet (Linux NAME_MAX and PATH_MAX)
NAME_MAX = 255
PATH_MAX = 4096


def is_dir(attr: Any) -> bool:
    return stat.S_ISDIR(attr.st_mode or 0)


class SFTPBackend(Backend):
    """Files in directories below a base path on an SFTP server."""

    schemes = ("sftp",)

    def __init__(
        self,
        host: str,
        path: str,
        *,
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
        key_filename: str | list[str] | None = None,
        passphrase: str | None = None,
        allow_agent: bool = True,
        look_for_keys: bool = True,
        host_key: Any = None,
        known_hosts: str | None = None,
        accept_unknown_host_key: bool = False,
        ssh_config: str | None = "~/.ssh/config",
        connect_timeout: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        keepalive: int | None = None,
        channels: int = DEFAULT_CHANNELS,
        connections: int = DEFAULT_CONNECTIONS,
        pipeline: bool = True,
    ):
        if not path:
            raise ConfigError("an sftp backend needs a path")
        self.host = host
        self.path = path
        # every keyword argument above is an option (config.OPTIONS) that Settings resolves
        self._settings = Settings.resolve(host, **{k: v for k, v in locals().items() if k in OPTIONS})
        self.bulk_workers = channels
        self._pool = Pool(self._settings)
        self._root = ""  # absolute base path on the server, set when connecting
        self._posix_rename = True
        self._openssh = False  # an OpenSSH sftp-server: POSIX semantics, one handle's requests in order
        self._request = DEFAULT_REQUEST
        self._rename_locks = [threading.Lock() for _ in range(64)]
        self.opened = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SFTPBackend:
        """``sftp://[user@]host[:port]/relative/path`` or ``sftp://[user@]host[:port]//absolute/path``."""
        check_options(options)
        host, path, parts = parse_url(url)
        for k, v in parts.items():
            options.setdefault(k, v)
        return cls(host, path, **options)

    # settings shown as attributes (read-only views of the resolved configuration)
    hostname = property(lambda self: self._settings.hostname)
    port = property(lambda self: self._settings.port)
    user = property(lambda self: self._settings.user)
    channels = property(lambda self: self._settings.channels)
    connections = property(lambda self: self._settings.connections)
    timeout = property(lambda self: self._settings.timeout)
    pipeline = property(lambda self: self._settings.pipeline)
    #: SSH connections made so far: a reconnect after a lost connection makes one more
    connects = property(lambda self: self._pool.connects)

    def __repr__(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"<SFTPBackend sftp://{who}{self.hostname}:{self.port}/{self.path}>"

    # ----------------------------------------------------------------- running calls on a channel
    def _run(self, what: str, func: Callable[[Channel], T]) -> T:
        """Run ``func(channel)`` on a pooled channel. A lost connection is BackendConnectionError
        (the next call reconnects); a server's refusal is the typed error of its errno."""
        ch = self._pool.acquire()
        try:
            if not self._root:
                self._resolve_root(ch)
            result = func(ch)
        except ChannelLost as e:
            self._pool.release(ch, broken=True)
            raise BackendConnectionError(f"{self!r}: {what} failed, connection lost ({e})") from None
        except BaseException as e:
            ch.abandon()
            self._pool.release(ch)
            if isinstance(e, StatusError):
                raise translate_oserror(e, what) from None
            raise
        self._pool.release(ch)
        return result

    def _resolve_root(self, ch: Channel) -> None:
        """Make the base path absolute (relative paths start at the login directory); learn the server."""
        self._openssh = self._pool.remote_version.startswith("SSH-2.0-OpenSSH")
        self._request = OPENSSH_REQUEST if self._openssh else DEFAULT_REQUEST
        home = "" if self.path.startswith("/") else ch.realpath(".").rstrip("/")
        self._root = home + "/" + self.path.strip("/")

    @property
    def _window(self) -> int:
        return max(4, READ_AHEAD // self._request) if self.pipeline else 1

    # ----------------------------------------------------------------- names and paths
    @staticmethod
    def _name(name: str, *, allow_root: bool = False) -> str:
        name = check_name(name, allow_root=allow_root)
        for segment in name.split("/") if name else ():
            if segment.endswith((TMP_SUFFIX, HID_SUFFIX)):
                raise InvalidName(f"names ending in {TMP_SUFFIX} or {HID_SUFFIX} are the backend's own: {name!r}")
            if len(segment.encode()) > NAME_MAX:
                raise InvalidName(f"a segment of {name[:40]!r}... is over {NAME_MAX} bytes: name too long")
        return name

    def _path(self, name: str, *, allow_root: bool = False) -> str:
        name = self._name(name, allow_root=allow_root)
        path = f"{self._root}/{name}" if name else self._root
        if len(path.encode()) >= PATH_MAX:
            raise InvalidName(f"{name[:40]!r}...: the path is over {PATH_MAX} bytes: name too long")
        return path

    def _rel(self, path: str) -> str:
        return path[len(self._root) + 1 :]

    @staticmethod
    def _tmp_path(path: str) -> str:
        directory, _, base = path.rpartition("/")
        base = base.encode()[: NAME_MAX - 32].decode(errors="ignore")  # a long name still gets a temp name
        return f"{directory}/{base}.{secrets.token_hex(4)}{TMP_SUFFIX}"

    @staticmethod
    def _attributes_or_none(ch: Channel, num: int) -> Any:
        """The answer to STAT request ``num``; None if nothing is there."""
        try:
            return ch.attributes(num)
        except StatusError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    def _stat_or_none(self, ch: Channel, path: str) -> Any:
        return self._attributes_or_none(ch, ch.stat_request(path))

    def _mkdirs(self, ch: Channel, path: str) -> None:
        """mkdir -p on the server (absolute path), without recursion."""
        missing: builtins.list[str] = []
        p = path
        while True:
            try:
                ch.mkdir(p)
                break
            except StatusError as e:
                parent = p.rsplit("/", 1)[0]
                if e.errno == errno.ENOENT and parent:
                    missing.append(p)
                    p = parent
                    continue
                self._must_be_dir(ch, p, e)
                break
        for p in reversed(missing):
            try:
                ch.mkdir(p)
            except StatusError as e:
                self._must_be_dir(ch, p, e)

    def _must_be_dir(self, ch: Channel, path: str, error: StatusError) -> None:
        st = self._stat_or_none(ch, path)
        if st is None:
            raise translate_oserror(error, self._rel(path))
        if not is_dir(st):
            raise NameConflict(f"{self._rel(path)}: an item, not a directory")

    def _rename(self, ch: Channel, src: str, dst: str) -> None:
        # renames onto one target are serialized within this backend: some servers (rclone serve
        # sftp) lose files when two renames to the same target race
        with self._rename_locks[hash(dst) % len(self._rename_locks)]:
            if self._posix_rename:
                try:
                    ch.reply(ch.posix_rename(src, dst))
                    return
                except StatusError as e:
                    if e.errno != errno.EOPNOTSUPP and "unsupported" not in str(e).lower():
                        raise
                self._posix_rename = False
            try:
                ch.rename(src, dst)
            except StatusError as e:
                if e.errno == errno.ENOENT:
                    raise
                # plain SFTP rename refuses to replace: remove the target first (not atomic)
                try:
                    ch.reply(ch.remove(dst))
                except StatusError:
                    raise e from None
                ch.rename(src, dst)

    # ----------------------------------------------------------------- lifecycle
    def _connected(self, func: Callable[[], T]) -> T:
        """Run a lifecycle step on a temporary connection (create/destroy work on a closed backend)."""
        self._pool.active = True
        try:
            return func()
        finally:
            self._pool.close()

    def create(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()

        def mk(ch: Channel) -> bool:
            self._mkdirs(ch, self._root)
            return bool(ch.listdir(self._root))

        if self._connected(lambda: self._run("create", mk)):
            raise BackendAlreadyExists(f"sftp storage base path is not empty: {self._root}")

    def destroy(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()

        def rm(ch: Channel) -> None:
            if self._stat_or_none(ch, self._root) is None:
                raise BackendDoesNotExist(f"sftp storage base path does not exist: {self._root}")
            batch.remove_tree(ch, self._root)

        self._connected(lambda: self._run("destroy", rm))

    def open(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._pool.active = True

        def check(ch: Channel) -> None:
            st = self._stat_or_none(ch, self._root)
            if st is None or not is_dir(st):
                raise BackendDoesNotExist(f"sftp storage base path does not exist or is no directory: {self._root}")

        try:
            self._run("open", check)
        except BaseException:
            self._pool.close()
            raise
        self.opened = True

    def close(self) -> None:
        self.opened = False
        self._pool.close()

    # ----------------------------------------------------------------- core operations
    def mkdir(self, name: str) -> None:
        self._check_open()
        path = self._path(name, allow_root=True)
        self._run(name, lambda ch: self._mkdirs(ch, path))

    def _remove(self, ch: Channel, name: str, path: str, *, directory: bool) -> None:
        """rmdir or remove ``path``; the typed error when something else stands there."""
        if not self._openssh:
            # some servers (rclone serve sftp) remove a directory on REMOVE and a file on RMDIR
            st = self._stat_or_none(ch, path)
            if st is None:
                raise ObjectNotFound(name)
            if is_dir(st) != directory:
                raise ObjectNotFound(f"{name}: " + ("an item, not a directory" if directory else "a directory"))
        try:
            ch.reply(ch.rmdir(path) if directory else ch.remove(path))
            return
        except StatusError as e:
            if e.errno in (errno.EACCES, errno.EPERM):
                raise
            error = e
        st = self._stat_or_none(ch, path)
        if st is None:
            raise ObjectNotFound(name)
        if is_dir(st) != directory:
            raise ObjectNotFound(f"{name}: " + ("an item, not a directory" if directory else "a directory"))
        if directory:
            raise DirectoryNotEmpty(f"directory not empty: {name}")
        raise error

    def rmdir(self, name: str) -> None:
        self._check_open()
        path = self._path(name)
        self._run(name, lambda ch: self._remove(ch, name, path, directory=True))

    def delete(self, name: str) -> None:
        self._check_open()
        path = self._path(name)
        self._run(name, lambda ch: self._remove(ch, name, path, directory=False))

    def info(self, name: str) -> ItemInfo:
        self._check_open()
        path = self._path(name, allow_root=True)
        base = name.rsplit("/", 1)[-1]

        def do(ch: Channel) -> ItemInfo:
            st = self._stat_or_none(ch, path)
            if st is None:
                return ItemInfo(base, False)
            d = is_dir(st)
            return ItemInfo(base, True, 0 if d else (st.st_size or 0), d, st.st_atime or 0, st.st_mtime or 0)

        return self._run(name, do)

    def _open_read(self, ch: Channel, name: str, path: str) -> bytes:
        try:
            return ch.open(path)
        except StatusError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
                raise ObjectNotFound(name) from None
            raise

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        self._check_open()
        path = self._path(name)

        return self._run(name, lambda ch: self._load_on(ch, name, path, size=size, offset=offset))

    def _load_on(self, ch: Channel, name: str, path: str, *, size: int | None = None, offset: int = 0) -> bytes:
        """load() on channel ``ch``: OPEN, then FSTAT with the first READs in flight, then the rest."""
        handle = self._open_read(ch, name, path)
        try:
            n_stat = ch.fstat(handle)
            reads: builtins.list[tuple[int, int]] = []
            step = self._request
            want = max(FIRST_READ_BYTES, step) if size is None else min(size, max(FIRST_READ_BYTES, step))
            if self.pipeline and 0 <= offset and offset + want <= MAX_OFFSET:
                # speculative READs: a value up to FIRST_READ_BYTES arrives with the FSTAT
                for off in range(offset, offset + want, step):
                    n = min(step, offset + want - off)
                    reads.append((ch.read(handle, off, n), n))
            st = ch.attributes(n_stat)
            pieces, error = ch.first_pieces(reads)
            if is_dir(st):
                raise ObjectNotFound(f"{name}: a directory")
            if error is not None:
                raise error
            start, length = resolve_range(st.st_size or 0, offset, size)
            first = b"".join(pieces) if reads else b""
            if len(first) >= length:
                return first[:length]
            buf = bytearray(first)
            for piece in ch.pieces(handle, start + len(buf), length - len(buf), step, self._window):
                buf += piece
            if len(buf) < length:  # replaced or truncated while we read
                raise ReadRangeError(f"{name}: item changed while reading ({len(buf)} of {length} bytes)")
            return bytes(buf[:length])
        finally:
            ch.close_handle(handle, wait=False)

    def _write(self, ch: Channel, path: str, chunks: Iterable[bytes | memoryview], size: int | None = None) -> None:
        """Write ``chunks`` (``size`` bytes, if known) to a temp file next to ``path``, then rename it
        into place. A failure the server gives no reason for is QuotaExceeded if its disk is full."""
        try:
            self._write_tmp(ch, path, chunks)
        except StatusError as e:
            if e.errno is None:
                # SFTP v3 reports a full disk as a bare "Failure": ask how much space is left
                free = ch.free_bytes(path.rsplit("/", 1)[0])
                if free is not None and free < max(size or 0, self._request):
                    raise QuotaExceeded(f"{self._rel(path)}: no space left on the server ({free} bytes free)") from None
            raise translate_oserror(e, self._rel(path)) from None

    def _write_tmp(self, ch: Channel, path: str, chunks: Iterable[bytes | memoryview]) -> None:
        tmp = self._tmp_path(path)
        # servers without POSIX semantics (rclone serve sftp) rename a file onto a directory and lose
        # it: check the target, in the same round trip as the OPEN
        n_target = None if self._openssh else ch.stat_request(path)
        try:
            handle = ch.open(tmp, WRITE_FLAGS)
        except StatusError as e:
            if n_target is not None:
                ch.ignore(n_target)
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise
            self._mkdirs(ch, path.rsplit("/", 1)[0])
            handle, n_target = ch.open(tmp, WRITE_FLAGS), None
        try:
            if n_target is not None and (st := self._attributes_or_none(ch, n_target)) is not None and is_dir(st):
                ch.close_handle(handle, wait=False)
                raise NameConflict(f"{self._rel(path)}: a directory")
            ch.put(handle, chunks, self._request, self._window, close_inline=self._openssh and self.pipeline)
            try:
                self._rename(ch, tmp, path)
            except StatusError:
                st = self._stat_or_none(ch, path)
                if st is not None and is_dir(st):
                    raise NameConflict(f"{self._rel(path)}: a directory") from None
                raise
        except ChannelLost:
            raise
        except BaseException:
            if not ch.closed:
                ch.ignore(ch.remove(tmp))
            raise

    def store(self, name: str, value: Value) -> None:
        self._check_open()
        path = self._path(name)
        view = as_bytes_view(value)
        self._run(name, lambda ch: self._write(ch, path, (view,), len(view)))

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self._check_open()
        path = self._path(name)

        def chunks() -> Iterator[bytes]:
            total = 0
            while size is None or total < size:
                chunk = file.read(CHUNK_SIZE if size is None else min(CHUNK_SIZE, size - total))
                if not chunk:
                    break
                total += len(chunk)
                yield chunk

        self._run(name, lambda ch: self._write(ch, path, chunks(), size))

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        self._check_open()
        path = self._path(name)

        def do(ch: Channel) -> int:
            handle = self._open_read(ch, name, path)
            try:
                st = ch.attributes(ch.fstat(handle))
                if is_dir(st):
                    raise ObjectNotFound(f"{name}: a directory")
                start, length = resolve_range(st.st_size or 0, offset, size)
                written = 0
                buf = bytearray()
                for piece in ch.pieces(handle, start, length, self._request, self._window):
                    buf += piece
                    if len(buf) >= WRITE_BATCH:
                        file.write(buf)
                        written += len(buf)
                        buf = bytearray()
                if buf:
                    file.write(buf)
                    written += len(buf)
                if written < length:
                    raise ReadRangeError(f"{name}: item shrank while reading at {start + written}")
                return written
            finally:
                ch.close_handle(handle, wait=False)

        return self._run(name, do)

    def open_reader(self, name: str) -> BinaryIO:
        """A readable stream of ``name`` on an SFTP channel of its own (outside the pool) until closed.

        Reads are pipelined like load_file's. A reader does not survive a lost connection.
        """
        self._check_open()
        path = self._path(name)
        ch = self._pool.open_channel(pooled=False)
        try:
            handle = self._open_read(ch, name, path)
            st = ch.attributes(ch.fstat(handle))
            if is_dir(st):
                raise ObjectNotFound(f"{name}: a directory")
        except BaseException as e:
            ch.close()
            if isinstance(e, ChannelLost):
                raise BackendConnectionError(f"{self!r}: open_reader {name}: {e}") from None
            if isinstance(e, StatusError):
                raise translate_oserror(e, name) from None
            raise
        pieces = ch.pieces(handle, 0, st.st_size or 0, self._request, self._window)
        return io.BufferedReader(Reader(ch, handle, pieces, name), buffer_size=CHUNK_SIZE)

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        src = self._path(curr_name)
        dst = self._path(new_name)

        def do(ch: Channel) -> None:
            if not self._openssh:
                # servers without POSIX semantics (rclone serve sftp) lose an item renamed onto a
                # directory: look first (both STATs in one round trip)
                n_src, n_dst = ch.stat_request(src), ch.stat_request(dst)
                found, target = self._attributes_or_none(ch, n_src), self._attributes_or_none(ch, n_dst)
                if found is None:
                    raise ObjectNotFound(curr_name)
                if target is not None and is_dir(target):
                    raise NameConflict(f"{new_name}: a directory")
            try:
                self._rename(ch, src, dst)
                return
            except StatusError as e:
                error = e
            if self._stat_or_none(ch, src) is None:
                raise ObjectNotFound(curr_name)
            st = self._stat_or_none(ch, dst)
            if st is not None and is_dir(st):
                raise NameConflict(f"{new_name}: a directory")
            if error.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise error
            self._mkdirs(ch, dst.rsplit("/", 1)[0])  # the target's directory was missing
            try:
                self._rename(ch, src, dst)
            except StatusError as e:
                if e.errno == errno.ENOENT:
                    raise ObjectNotFound(curr_name) from None
                raise

        self._run(curr_name, do)

    def _listdir(self, name: str) -> builtins.list[ItemInfo]:
        path = self._path(name, allow_root=True)

        def do(ch: Channel) -> builtins.list[Any]:
            try:
                return ch.listdir(path)
            except StatusError as e:
                if e.errno in (errno.EACCES, errno.EPERM):
                    raise
                raise ObjectNotFound(f"{name}: {e.strerror}") from None  # missing, or not a directory

        items = []
        for e in self._run(name, do):
            if not is_listable(e.filename):
                continue
            d = is_dir(e)
            items.append(ItemInfo(e.filename, True, 0 if d else (e.st_size or 0), d, e.st_atime or 0, e.st_mtime or 0))
        items.sort(key=lambda i: i.name)
        return items

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        yield from self._listdir(name)

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        """All items below ``name``, sorted by name; the directories of each level listed concurrently."""
        self._check_open()
        yield from batch.walk(self, name)

    # ----------------------------------------------------------------- bulk operations
    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, value)`` in the order given; ``channels`` threads, each pipelining a batch."""
        self._check_open()
        batches = batch.batches(((n, self._path(n)) for n in names), batch.BATCH_ITEMS)
        run = lambda b: self._run("load_many", lambda ch: batch.load_batch(self, ch, b))  # noqa: E731
        for result in self._map(run, batches):
            for name, value in result:
                if isinstance(value, Exception):
                    raise value
                yield name, value

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        """Store many values on ``channels`` threads; each thread pipelines a batch (see batch.py)."""
        self._check_open()
        pairs = items.items() if isinstance(items, Mapping) else items
        views = ((self._path(n), as_bytes_view(v)) for n, v in pairs)
        for _ in self._map(
            lambda b: self._run("store_many", lambda ch: batch.store_batch(self, ch, b)), batch.value_batches(views)
        ):
            pass

    def quota(self) -> dict[str, int]:
        return {"limit": -1, "usage": -1}
