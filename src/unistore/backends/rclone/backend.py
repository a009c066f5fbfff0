"""RcloneBackend: items below a path of any rclone remote, through a private ``rclone rcd`` child.

Metadata calls use the rc JSON API (``operations/list``, ``stat``, ``deletefile``, ``movefile``,
``mkdir``, ``rmdir``, ``purge``, ``fsinfo``); values are streamed both ways: uploads as a streamed
multipart POST to ``operations/uploadfile``, downloads as ranged GETs from the rc server's
``--rc-serve`` endpoint. On remotes that are not object stores an upload goes to a temporary name
that is then moved into place, so readers never see a partial value.
"""

from __future__ import annotations

import builtins
import http.client
import io
import json
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import IO, Any, BinaryIO
from urllib.parse import quote

from ...errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    ConfigError,
    DirectoryNotEmpty,
    InvalidName,
    NameConflict,
    ObjectNotFound,
    ReadRangeError,
)
from ...names import HID_SUFFIX, TMP_SUFFIX, check_name, is_listable, join
from ..base import CHUNK_SIZE, Backend, ItemInfo, Value, as_bytes_view, resolve_range
from .process import DEFAULT_START_TIMEOUT, DEFAULT_TIMEOUT, HOST, Rcd, find_binary
from .remote import is_secret, parse_remote, rc_error

DEFAULT_WORKERS = 8
#: Range headers and offsets beyond this are clipped by us (rclone answers HTTP 400 to them)
_MAX_OFFSET = 2**63 - 1
#: every keyword option RcloneBackend takes
OPTIONS = frozenset(
    {"binary", "config_file", "remotes", "timeout", "start_timeout", "flags", "workers", "atomic_upload"}
)


def _mtime(item: Mapping[str, Any]) -> float:
    """rclone's ``ModTime`` (RFC 3339 with nanoseconds) as a POSIX timestamp; 0 if absent."""
    text = item.get("ModTime")
    if not text:
        return 0.0
    text = text.replace("Z", "+00:00")
    head, dot, tail = text.partition(".")
    if dot:  # fromisoformat takes at most microseconds
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[:digits][:6] + tail[digits:]
        text = f"{head}.{tail}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


class RcloneBackend(Backend):
    """Items below a path of an rclone remote, through a private ``rclone rcd``."""

    schemes = ("rclone",)

    def __init__(
        self,
        path: str,
        *,
        binary: str | None = None,
        config_file: str | None = None,
        remotes: Mapping[str, Mapping[str, str]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        flags: list[str] | None = None,
        workers: int = DEFAULT_WORKERS,
        atomic_upload: bool | None = None,
    ):
        if not path:
            raise ConfigError("an rclone backend needs a path: rclone:remote:path")
        if config_file is not None and remotes is not None:
            raise ConfigError("give either config_file= or remotes=, not both")
        if timeout is None or timeout <= 0:
            raise ConfigError("timeout must be > 0 (no call may block forever)")
        remote = parse_remote(path)
        self._remote = remote
        #: the path as given, with secret option values shown as ***
        self.path = remote.shown
        self.fs = remote.fs
        self.binary = binary
        self.config_file = os.path.expanduser(config_file) if config_file else None
        self._remotes = {k: dict(v) for k, v in (remotes or {}).items()}
        remote.secrets += [v for r in self._remotes.values() for k, v in r.items() if len(v) >= 4 and is_secret(k)]
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
        self.flags = list(flags or [])
        self.bulk_workers = workers
        self.atomic_upload = atomic_upload
        self._rcd: Rcd | None = None
        self._atomic = True
        self._bucket_based = False
        self._move_locks = [threading.Lock() for _ in range(256)]
        self.opened = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RcloneBackend:
        """``rclone:remote:path`` (or ``rclone:/local/path``, ``rclone::backend,opt=x:path``)."""
        if not url.lower().startswith("rclone:"):
            raise BackendURLInvalid("an rclone URL starts with rclone:, e.g. rclone:remote:path")
        path = url[len("rclone:") :]
        if path.startswith("//"):  # tolerate rclone://remote:path
            path = path[2:]
        if not path:
            raise BackendURLInvalid("an rclone URL needs a remote, e.g. rclone:remote:path")
        unknown = sorted(set(options) - OPTIONS)
        if unknown:
            raise ConfigError(f"unknown rclone option(s): {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}")
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"<RcloneBackend rclone:{self.path}>"

    # ----------------------------------------------------------------- process lifecycle
    def _start(self) -> Rcd:
        binary = find_binary(self.binary)
        tmpdir = None
        config = self.config_file
        if self._remotes:
            tmpdir = tempfile.mkdtemp(prefix="unistore-rclone-")
            config = os.path.join(tmpdir, "rclone.conf")
            fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                for name, opts in self._remotes.items():
                    f.write(f"[{name}]\n")
                    for k, v in opts.items():
                        f.write(f"{k} = {v}\n")
                    f.write("\n")
        try:
            return Rcd(
                binary,
                config,
                self.flags,
                self.start_timeout,
                self.timeout,
                tmpdir,
                env=self._remote.env,
                scrub=self._remote.scrub,
            )
        except BaseException:
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise

    def _stop(self) -> None:
        rcd, self._rcd = self._rcd, None
        if rcd is not None:
            rcd.stop()

    @property
    def pid(self) -> int | None:
        """PID of the running ``rclone rcd`` child (None when closed)."""
        return self._rcd.proc.pid if self._rcd is not None else None

    def _with_rcd(self, func: Callable[[], Any]) -> Any:
        """Run a lifecycle step with a temporary rcd (create/destroy work on a closed backend)."""
        self._rcd = self._start()
        try:
            return func()
        finally:
            self._stop()

    def create(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()

        def do() -> None:
            try:
                entries = self._rpc("operations/list", {"fs": self.fs, "remote": "", "opt": {"noModTime": True}})
                if entries.get("list"):
                    raise BackendAlreadyExists(f"rclone storage is not empty: {self.path}")
            except ObjectNotFound:
                pass
            self._rpc("operations/mkdir", {"fs": self.fs, "remote": ""})

        self._with_rcd(do)

    def destroy(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()

        def do() -> None:
            item = self._rpc("operations/stat", {"fs": self.fs, "remote": "", "opt": {"noModTime": True}}).get("item")
            if item is None:
                raise BackendDoesNotExist(f"rclone storage does not exist: {self.path}")
            self._rpc("operations/purge", {"fs": self.fs, "remote": ""})

        try:
            self._with_rcd(do)
        except ObjectNotFound:
            raise BackendDoesNotExist(f"rclone storage does not exist: {self.path}") from None

    def open(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self._rcd = self._start()
        try:
            try:
                item = self._rpc("operations/stat", {"fs": self.fs, "remote": "", "opt": {"noModTime": True}})["item"]
            except ObjectNotFound:
                item = None
            if item is None or not item.get("IsDir", True):
                self._probe_parent()
                raise BackendDoesNotExist(f"rclone storage does not exist: {self.path}")
            info = self._rpc("operations/fsinfo", {"fs": self.fs})
            self._bucket_based = bool(info.get("Features", {}).get("BucketBased", False))
            if self.atomic_upload is None:
                # object stores replace objects atomically; elsewhere upload to a temp name and move
                self._atomic = not self._bucket_based
            else:
                self._atomic = self.atomic_upload
        except BaseException:
            self._stop()
            raise
        self.opened = True

    def close(self) -> None:
        self.opened = False
        self._stop()

    def _probe_parent(self) -> None:
        """Look at the root from its parent: a remote that refuses our credentials may answer a stat
        of the root itself with "not found" or "is a file" (rclone's s3 backend does), while a stat
        from the parent raises the real error (CredentialsError, PermissionDenied)."""
        head, sep, rest = self.fs.rpartition(":") if not self.fs.startswith("/") else ("", "", self.fs)
        parent, _, last = rest.rstrip("/").rpartition("/")
        if not last:
            return
        try:
            self._rpc(
                "operations/stat", {"fs": f"{head}{sep}{parent}" or "/", "remote": last, "opt": {"noModTime": True}}
            )
        except ObjectNotFound:
            pass

    # ----------------------------------------------------------------- rc calls
    def _rcd_or_raise(self) -> Rcd:
        rcd = self._rcd
        if rcd is None:
            self._check_open()
            raise BackendConnectionError(f"{self!r}: rclone is not running")
        return rcd

    def _rpc(self, command: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        rcd = self._rcd_or_raise()
        body = json.dumps(payload).encode()
        resp = rcd.request("POST", "/" + command, body=body, headers={"Content-Type": "application/json"})
        data = resp.read()
        return self._json_result(command, payload, resp.status, data)

    def _json_result(self, command: str, payload: Mapping[str, Any], status: int, data: bytes) -> dict[str, Any]:
        try:
            result = json.loads(data) if data else {}
        except ValueError:
            result = {"error": data[:200].decode(errors="replace")}
        if status != 200:
            what = f"{command} {payload.get('remote', payload.get('srcRemote', ''))}".strip()
            raise self._error(what, status, str(result.get("error", result)))
        return result  # type: ignore[no-any-return]

    def _error(self, what: str, status: int, message: str) -> Exception:
        return rc_error(self._remote.scrub(what), status, self._remote.scrub(message))

    @staticmethod
    def _name(name: str, *, allow_root: bool = False) -> str:
        name = check_name(name, allow_root=allow_root)
        if any(seg.endswith((TMP_SUFFIX, HID_SUFFIX)) for seg in name.split("/") if name):
            raise InvalidName(f"names ending in {TMP_SUFFIX} or {HID_SUFFIX} are the backend's own: {name!r}")
        return name

    def _serve_path(self, name: str) -> str:
        return "/" + quote(f"[{self.fs}]", safe=":/") + "/" + quote(name, safe="/")

    # ----------------------------------------------------------------- core operations
    def mkdir(self, name: str) -> None:
        self._check_open()
        name = self._name(name, allow_root=True)
        self._rpc("operations/mkdir", {"fs": self.fs, "remote": name})

    def rmdir(self, name: str) -> None:
        self._check_open()
        name = self._name(name)
        if self._bucket_based and self._list(name, False):
            # object stores drop a directory marker even when objects remain below it
            raise DirectoryNotEmpty(f"directory not empty: {name}")
        self._rpc("operations/rmdir", {"fs": self.fs, "remote": name})

    @staticmethod
    def _item(name: str, item: Mapping[str, Any]) -> ItemInfo:
        is_dir = bool(item.get("IsDir"))
        mtime = _mtime(item)
        return ItemInfo(name, True, 0 if is_dir else max(0, int(item.get("Size", 0))), is_dir, mtime, mtime)

    def info(self, name: str) -> ItemInfo:
        self._check_open()
        name = self._name(name, allow_root=True)
        base = name.rsplit("/", 1)[-1]
        try:
            item = self._rpc("operations/stat", {"fs": self.fs, "remote": name, "opt": {"noMimeType": True}}).get(
                "item"
            )
        except ObjectNotFound:
            item = None
        return ItemInfo(base, False) if item is None else self._item(base, item)

    def _get(self, name: str, start: int, length: int | None) -> http.client.HTTPResponse:
        """GET ``name`` from ``start``; ``length`` None means to the end."""
        rcd = self._rcd_or_raise()
        headers = {}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            headers["Range"] = f"bytes={start}-{end}"
        resp = rcd.request("GET", self._serve_path(name), headers=headers)
        if resp.status in (200, 206):
            return resp
        data = resp.read()
        if resp.status == 416:
            raise _RangeNotSatisfiable()
        try:
            message = json.loads(data).get("error", "")
        except ValueError:
            message = data[:200].decode(errors="replace")
        raise self._error(f"load {name}", resp.status, message or resp.reason)

    def _range(self, name: str, offset: int, size: int | None) -> tuple[int, int | None]:
        """``(start, length or None for 'to the end')``; asks for the size only when it must (a
        negative offset, or a range beyond what an HTTP Range header carries)."""
        if size is not None and size < 0:
            raise ReadRangeError(f"size must be >= 0 or None, not {size}")
        if 0 <= offset <= _MAX_OFFSET and (size is None or offset + size <= _MAX_OFFSET):
            return offset, size
        info = self.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(name)
        return resolve_range(info.size, offset, size)

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        self._check_open()
        name = self._name(name)
        start, length = self._range(name, offset, size)
        if length == 0:
            if not self.info(name).exists:
                raise ObjectNotFound(name)
            return b""
        try:
            with self._get(name, start, length) as resp:
                data = resp.read()
                if resp.status == 200 and start:  # server ignored the range
                    data = data[start:]
                if length is not None:
                    data = data[:length]
        except _RangeNotSatisfiable:
            data = b""
        except ObjectNotFound:
            if not start or not self.info(name).exists:
                raise
            data = b""  # some remotes answer a range past the end with 404
        return data

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        self._check_open()
        name = self._name(name)
        start, length = self._range(name, offset, size)
        written = 0
        if length != 0:
            try:
                with self._get(name, start, length) as resp:
                    if resp.status == 200 and start:
                        raise ReadRangeError(f"{name}: the server ignored the requested range")
                    while length is None or written < length:
                        chunk = resp.read(CHUNK_SIZE if length is None else min(CHUNK_SIZE, length - written))
                        if not chunk:
                            break
                        file.write(chunk)
                        written += len(chunk)
            except _RangeNotSatisfiable:
                pass
            except ObjectNotFound:
                if not start or not self.info(name).exists:
                    raise
        elif not self.info(name).exists:
            raise ObjectNotFound(name)
        return written

    def open_reader(self, name: str) -> BinaryIO:
        """A readable stream of ``name`` (one GET, on a connection of its own until closed)."""
        self._check_open()
        name = self._name(name)
        rcd = self._rcd_or_raise()
        conn = http.client.HTTPConnection(HOST, rcd.port, timeout=self.timeout)
        try:
            conn.request("GET", self._serve_path(name), headers={"Authorization": rcd._auth})
            resp = conn.getresponse()
            if resp.status != 200:
                data = resp.read()
                try:
                    message = json.loads(data).get("error", "")
                except ValueError:
                    message = data[:200].decode(errors="replace")
                raise self._error(f"open_reader {name}", resp.status, message or resp.reason)
        except BaseException as e:
            conn.close()
            if isinstance(e, OSError | http.client.HTTPException):
                raise BackendConnectionError(f"rclone rcd connection failed: {e}") from None
            raise
        return io.BufferedReader(_ResponseReader(resp, conn), buffer_size=CHUNK_SIZE)

    def _upload(
        self, name: str, write_body: Callable[[Any], None] | None, data: bytes | None, size: int | None
    ) -> None:
        """POST a multipart upload of one file to operations/uploadfile (streamed)."""
        rcd = self._rcd_or_raise()
        directory, _, base = name.rpartition("/")
        boundary = secrets.token_hex(16)
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename*=UTF-8''{quote(base, safe='')}"
            "\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        path = "/operations/uploadfile?" + "&".join(
            f"{k}={quote(v, safe='')}" for k, v in (("fs", self.fs), ("remote", directory))
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        if data is not None:
            resp = rcd.request("POST", path, body=b"".join((head, data, tail)), headers=headers)
        else:
            assert write_body is not None
            if size is not None:
                headers["Content-Length"] = str(len(head) + size + len(tail))

                def body(conn: http.client.HTTPConnection) -> None:
                    conn.send(head)
                    write_body(conn.send)
                    conn.send(tail)

            else:
                headers["Transfer-Encoding"] = "chunked"

                def body(conn: http.client.HTTPConnection) -> None:
                    def send_chunk(b: bytes) -> None:
                        if b:
                            conn.send(b"%x\r\n" % len(b) + b + b"\r\n")

                    send_chunk(head)
                    write_body(send_chunk)
                    send_chunk(tail)
                    conn.send(b"0\r\n\r\n")

            resp = rcd.request("POST", path, body=body, headers=headers)
        self._json_result("uploadfile", {"remote": name}, resp.status, resp.read())

    def _refuse_directory(self, name: str) -> None:
        """NameConflict if ``name`` is a directory on an object store (which would take an object
        ``name`` beside the objects ``name/...``); elsewhere the remote refuses by itself."""
        if not self._bucket_based:
            return
        try:
            below = self._list(name, False)
        except ObjectNotFound:
            return
        if below:
            raise NameConflict(f"{name}: a directory")

    def _store_via(self, name: str, upload: Callable[[str], None]) -> None:
        self._refuse_directory(name)
        if not self._atomic:
            # rclone verifies an upload by reading the object's size and hash back: two uploads to
            # one name at once make that check fail ("corrupted on transfer"), so serialize them
            with self._move_locks[hash(name) % len(self._move_locks)]:
                upload(name)
            return
        tmp = f"{name}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            upload(tmp)
            self._movefile(tmp, name)
        except BaseException:
            try:
                self._rpc("operations/deletefile", {"fs": self.fs, "remote": tmp})
            except Exception:
                pass
            raise

    def store(self, name: str, value: Value) -> None:
        self._check_open()
        name = self._name(name)
        view = as_bytes_view(value)
        data = value if isinstance(value, bytes) else bytes(view)
        self._store_via(name, lambda target: self._upload(target, None, data, None))

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self._check_open()
        name = self._name(name)
        if size is None and file.seekable():
            pos = file.tell()
            size = file.seek(0, os.SEEK_END) - pos
            file.seek(pos)
        total = 0

        def write_body(send: Callable[[bytes], None]) -> None:
            nonlocal total
            while size is None or total < size:
                chunk = file.read(CHUNK_SIZE if size is None else min(CHUNK_SIZE, size - total))
                if not chunk:
                    break
                send(chunk)
                total += len(chunk)
            if size is not None and total != size:
                raise ReadRangeError(f"{name}: the file ended after {total} of {size} bytes")

        self._store_via(name, lambda target: self._upload(target, write_body, None, size))

    def _movefile(self, src: str, dst: str) -> None:
        # rclone's local backend removes an existing target before renaming, so two moves onto one
        # target race; serialize them per target within this backend
        with self._move_locks[hash(dst) % len(self._move_locks)]:
            self._rpc("operations/movefile", {"srcFs": self.fs, "srcRemote": src, "dstFs": self.fs, "dstRemote": dst})

    def delete(self, name: str) -> None:
        self._check_open()
        name = self._name(name)
        self._rpc("operations/deletefile", {"fs": self.fs, "remote": name})

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        curr_name = self._name(curr_name)
        new_name = self._name(new_name)
        self._refuse_directory(new_name)
        if curr_name == new_name:  # rclone answers "ok" without looking
            info = self.info(curr_name)
            if not info.exists or info.directory:
                raise ObjectNotFound(curr_name)
            return
        self._movefile(curr_name, new_name)

    def _list(self, name: str, recurse: bool) -> builtins.list[dict[str, Any]]:
        opt = {"recurse": recurse, "noMimeType": True}
        if recurse:
            opt["filesOnly"] = True
        result = self._rpc("operations/list", {"fs": self.fs, "remote": name, "opt": opt})
        return result.get("list") or []

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        name = self._name(name, allow_root=True)
        entries = self._list(name, False)
        items = sorted((self._item(e["Name"], e) for e in entries if is_listable(e["Name"])), key=lambda i: i.name)
        yield from items

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        """All items below ``name`` from one recursive listing call."""
        self._check_open()
        name = self._name(name, allow_root=True)
        prefix = name + "/" if name else ""
        items = []
        for e in self._list(name, True):
            if e.get("IsDir"):
                continue
            path = e.get("Path", "")
            rel = path[len(prefix) :] if path.startswith(prefix) else join(name, e["Name"])
            if all(is_listable(seg) for seg in rel.split("/")):
                items.append(self._item(rel, e))
        items.sort(key=lambda i: i.name)
        yield from items


class _ResponseReader(io.RawIOBase):
    """A raw binary stream over an HTTP response body; closing it closes its connection."""

    def __init__(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection):
        self._resp = resp
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._resp.readinto(b)

    def close(self) -> None:
        if not self.closed:
            self._resp.close()
            self._conn.close()
        super().close()


class _RangeNotSatisfiable(Exception):
    """HTTP 416: the range starts at or after the end of the item."""
