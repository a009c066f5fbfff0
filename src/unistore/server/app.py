"""The aiohttp application serving one unistore backend over borgstore 0.7's REST protocol.

The backend is opened once and shared: requests run concurrently on a thread pool (borgstore's
server opens and closes the backend for every request, one request at a time). Bodies stream: an
upload is spooled (memory up to 16 MiB, then a temp file) while its SHA-256 is checked, then stored;
a download is sent in 4 MiB pieces. Limits: header line and field sizes, body size, a per-read
timeout for a client that stalls mid-body, and aiohttp's keep-alive timeout for idle connections.
Credentials are compared in constant time; the access log never holds them; names are validated
(no ``..``, no absolute paths, no backslash or NUL) before the backend sees them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..backends.base import Backend
from ..errors import InvalidName, ObjectNotFound, ReadRangeError, UnistoreError
from ..names import check_name
from .protocol import ERROR_HEADER, HASH_HEADER, MEDIA_TYPE, parse_range, status_for

logger = logging.getLogger("unistore.server")
access_logger = logging.getLogger("unistore.server.access")

PIECE = 4 * 1024 * 1024
SPOOL_MEMORY = 16 * 1024 * 1024


@dataclass
class Limits:
    max_body: int = 8 * 1024**3  # bytes in one upload
    max_json: int = 64 * 1024**2  # bytes of a gather/defrag source list
    body_timeout: float = 30.0  # seconds without a byte from a client sending a body
    max_line: int = 8190  # request line and header line bytes
    max_field: int = 8190  # header field bytes
    keepalive: float = 75.0  # seconds an idle keep-alive connection stays open
    threads: int = 16  # backend calls at once


class Server:
    """State shared by the request handlers: the backend, the credentials, the pool, the limits."""

    def __init__(
        self,
        backend: Backend,
        *,
        username: str | None = None,
        password: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.backend = backend
        self._credentials = (username.encode(), password.encode()) if username and password else None
        self.limits = limits or Limits()
        self.pool = ThreadPoolExecutor(max_workers=self.limits.threads, thread_name_prefix="unistore-serve")
        self._state = threading.Lock()

    def __repr__(self) -> str:
        return f"<unistore REST Server {self.backend!r} auth={'on' if self._credentials else 'off'}>"

    async def run(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        loop = asyncio.get_running_loop()

        def call() -> Any:
            self.ensure_open()
            return fn(*args, **kw)

        return await loop.run_in_executor(self.pool, call)

    async def lifecycle(self, fn: Callable[[], None]) -> None:
        """Run create or destroy: the backend is closed around them (the server keeps it open otherwise)."""
        loop = asyncio.get_running_loop()

        def call() -> None:
            with self._state:
                if self.backend.opened:
                    self.backend.close()
                fn()

        await loop.run_in_executor(self.pool, call)

    def ensure_open(self) -> None:
        """Open the backend on first use (a store created after the server started is served too)."""
        if not self.backend.opened:
            with self._state:
                if not self.backend.opened:
                    self.backend.open()

    def authorized(self, request: web.Request) -> bool:
        if self._credentials is None:
            return True
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded, validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        want_user, want_password = self._credentials
        # compare both, always, in constant time
        ok_user = secrets.compare_digest(user, want_user)
        ok_password = secrets.compare_digest(password, want_password)
        return bool(sep) and ok_user and ok_password

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._state:
            if self.backend.opened:
                self.backend.close()


def _name(request: web.Request, *, allow_root: bool = False) -> str:
    raw = request.match_info.get("name", "")
    name = raw.strip("/")
    if not name and allow_root:
        return ""
    if "\\" in raw or "\x00" in raw or raw.startswith("/"):
        raise InvalidName(f"invalid item name: {raw[:100]!r}")
    return check_name(name, allow_root=allow_root)


def _error(exc: BaseException) -> web.Response:
    headers = {"Cache-Control": "no-store"}
    if isinstance(exc, UnistoreError | ValueError | TypeError):
        status = status_for(exc)  # type: ignore[arg-type]
        text = str(exc)
        if isinstance(exc, UnistoreError):
            headers[ERROR_HEADER] = type(exc).__name__
    else:
        logger.exception("unexpected error", exc_info=exc)
        status, text = 500, "Internal Server Error"
    return web.Response(status=status, text=text[:2000], headers=headers)


@web.middleware
async def _checks(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    server: Server = request.app["server"]
    started = time.perf_counter()
    response: web.StreamResponse
    try:
        if request.headers.get("Accept") != MEDIA_TYPE:
            response = web.Response(status=406, text="Not Acceptable: unsupported or missing Accept header")
        elif not server.authorized(request):
            response = web.Response(
                status=401, text="Unauthorized", headers={"WWW-Authenticate": 'Basic realm="unistore"'}
            )
        else:
            response = await handler(request)
    except web.HTTPException:
        raise
    except TimeoutError:
        response = web.Response(status=408, text="Request Timeout: the client stopped sending its body")
    except Exception as exc:  # noqa: BLE001 - every error becomes a status, never a dropped connection
        response = _error(exc)
    if not response.prepared:
        response.headers.setdefault("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
    access_logger.info(
        "%s %s %s %d %.1fms",
        request.remote,
        request.method,
        request.rel_url.path[:300],  # the path only: no query string, no headers, never credentials
        response.status,
        (time.perf_counter() - started) * 1e3,
    )
    return response


async def _read_body(request: web.Request, limit: int, timeout: float) -> Any:
    """The request body in a spool file (memory up to 16 MiB), its size and its SHA-256."""
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    digest = hashlib.sha256()
    size = 0
    try:
        while True:
            chunk = await asyncio.wait_for(request.content.readany(), timeout)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            digest.update(chunk)
            spool.write(chunk)
        if length is not None and size != length:
            raise ValueError(f"the body ended after {size} of {length} bytes")
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size, digest.hexdigest()


async def _json_body(request: web.Request) -> Any:
    server: Server = request.app["server"]
    spool, _, _ = await _read_body(request, server.limits.max_json, server.limits.body_timeout)
    with spool:
        return json.loads(spool.read())


async def head(request: web.Request) -> web.StreamResponse:
    server: Server = request.app["server"]
    name = _name(request, allow_root=True)
    info = await server.run(server.backend.info, name)
    if not info.exists:
        raise ObjectNotFound(name)
    response = web.StreamResponse(
        status=200,
        headers={
            "X-BorgStore-Is-Directory": "true" if info.directory else "false",
            "X-BorgStore-Atime": str(info.atime),
            "X-BorgStore-Mtime": str(info.mtime),
        },
    )
    response.content_length = info.size
    await response.prepare(request)
    return response


async def get(request: web.Request) -> web.StreamResponse:
    server: Server = request.app["server"]
    if request.match_info.get("name", "").endswith("/") or request.rel_url.path.endswith("/"):
        name = _name(request, allow_root=True)

        def listing() -> bytes:
            items = [
                {"name": i.name, "size": i.size, "directory": i.directory, "atime": i.atime, "mtime": i.mtime}
                for i in server.backend.list(name)
            ]
            return json.dumps(items).encode()

        return web.Response(body=await server.run(listing), content_type="application/json")
    name = _name(request)
    range_header = request.headers.get("Range")
    offset, size = parse_range(range_header)
    info = await server.run(server.backend.info, name)
    if not info.exists or info.directory:
        raise ObjectNotFound(name)
    if offset < -info.size:
        raise ReadRangeError(f"offset {offset} lies before the start of an item of {info.size} bytes")
    start = info.size + offset if offset < 0 else min(offset, info.size)
    end = info.size if size is None else min(info.size, start + size)
    length = max(end - start, 0)
    if length <= PIECE:
        data = await server.run(server.backend.load, name, offset=start, size=length)
        return web.Response(status=206 if range_header else 200, body=data, content_type="application/octet-stream")
    response = web.StreamResponse(status=206 if range_header else 200)
    response.content_type = "application/octet-stream"
    response.content_length = length
    await response.prepare(request)
    sent = 0
    while sent < length:
        piece = await server.run(server.backend.load, name, offset=start + sent, size=min(PIECE, length - sent))
        if not piece:
            break  # the item shrank meanwhile: the client sees a short body and fails the read
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def post(request: web.Request) -> web.StreamResponse:
    server: Server = request.app["server"]
    backend = server.backend
    cmd = request.query.get("cmd")
    if cmd == "create":
        await server.lifecycle(backend.create)
        return web.Response()
    if cmd == "move":
        current, new = request.query.get("current"), request.query.get("new")
        if not current or not new:
            return web.Response(status=400, text="Missing current or new name for move")
        await server.run(backend.move, check_name(current), check_name(new))
        return web.Response()
    if cmd == "mkdir":
        await server.run(backend.mkdir, _name(request))
        return web.Response()
    if cmd == "hash":
        digest = await server.run(backend.hash, _name(request), request.query.get("algorithm", "sha256"))
        return web.Response(text=digest)
    if cmd == "quota":
        return web.Response(body=json.dumps(await server.run(backend.quota)).encode(), content_type="application/json")
    if cmd == "gather":
        sources = await _json_body(request)
        return web.Response(body=await server.run(backend.gather, sources), content_type="application/octet-stream")
    if cmd == "defrag":
        q = request.query
        if not q.get("target") and not q.get("algorithm"):
            return web.Response(status=400, text="Missing target or algorithm for defrag")
        sources = await _json_body(request)
        target = await server.run(
            backend.defrag,
            sources,
            target=q.get("target"),
            algorithm=q.get("algorithm"),
            namespace=q.get("namespace"),
            levels=int(q.get("levels", "0")),
        )
        return web.Response(text=target)
    if cmd is not None:
        return web.Response(status=400, text=f"unknown command {cmd[:40]!r}")
    name = _name(request)
    try:
        await _store_streamed(request, server, name)
    except _HashMismatch:
        return web.Response(status=422, text="Content hash verification failed, please retry")
    return web.Response()


class _HashMismatch(Exception):
    pass


class _BodyReader:
    """A blocking file-like view of a request body that the event loop feeds through a bounded queue.

    At the end it checks the body's SHA-256 against the client's header: on a mismatch (or a body
    cut short) it raises, so the backend's store_file fails and, being atomic, leaves nothing.
    """

    def __init__(self, expected: str | None, timeout: float, length: int | None) -> None:
        self.queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=64)
        self.loop = asyncio.get_running_loop()
        self.space = asyncio.Event()  # set (from the reading thread) whenever it took a chunk
        self.length = length
        self.received = 0
        self.expected = expected.lower() if expected else None
        self.digest = hashlib.sha256()
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        while not self.eof and (n < 0 or len(self.buffer) < n):
            try:
                item = self.queue.get(timeout=self.timeout)
            except queue.Empty:
                raise TimeoutError("the client stopped sending its body") from None
            self.loop.call_soon_threadsafe(self.space.set)
            if isinstance(item, BaseException):
                raise item
            if item is None:
                self.eof = True
                self._verify()
                break
            self.digest.update(item)
            self.buffer += item
            self.received += len(item)
            if self.length is not None and self.received >= self.length:
                # a backend that reads exactly `size` bytes never asks for the end: check here
                self.eof = True
                self._verify()
        if n < 0 or n >= len(self.buffer):
            data = bytes(self.buffer)
            self.buffer.clear()
        else:
            data = bytes(self.buffer[:n])
            del self.buffer[:n]
        return data

    def _verify(self) -> None:
        if self.expected and not secrets.compare_digest(self.expected, self.digest.hexdigest()):
            raise _HashMismatch()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


async def _store_streamed(request: web.Request, server: Server, name: str) -> None:
    limit, timeout = server.limits.max_body, server.limits.body_timeout
    length = request.content_length
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=length)
    reader = _BodyReader(request.headers.get(HASH_HEADER), timeout, length)
    stored = asyncio.ensure_future(server.run(server.backend.store_file, name, reader, size=length))
    size = 0
    try:
        while True:
            chunk = await asyncio.wait_for(request.content.readany(), timeout)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            while reader.queue.full() and not stored.done():
                reader.space.clear()
                if reader.queue.full():
                    waiter = asyncio.ensure_future(reader.space.wait())
                    await asyncio.wait([waiter, stored], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
            if stored.done():
                break
            reader.queue.put_nowait(chunk)
        if length is not None and size != length and not stored.done():
            raise ValueError(f"the body ended after {size} of {length} bytes")
        if not stored.done():
            reader.queue.put_nowait(None)
    except BaseException as exc:
        if not stored.done():
            while reader.queue.full():
                reader.queue.get_nowait()
            reader.queue.put_nowait(exc if isinstance(exc, Exception) else ConnectionError("request cancelled"))
        await asyncio.gather(stored, return_exceptions=True)
        raise
    await stored


async def delete(request: web.Request) -> web.StreamResponse:
    server: Server = request.app["server"]
    cmd = request.query.get("cmd")
    if cmd == "destroy":
        await server.lifecycle(server.backend.destroy)
        return web.Response()
    if cmd == "rmdir":
        await server.run(server.backend.rmdir, _name(request))
        return web.Response()
    if cmd is not None:
        return web.Response(status=400, text=f"unknown command {cmd[:40]!r}")
    await server.run(server.backend.delete, _name(request))
    return web.Response()


def make_app(server: Server) -> web.Application:
    app = web.Application(middlewares=[_checks], client_max_size=server.limits.max_json)
    app["server"] = server
    app.router.add_route("HEAD", "/{name:.*}", head)
    app.router.add_get("/{name:.*}", get, allow_head=False)
    app.router.add_route("POST", "/{name:.*}", post)
    app.router.add_route("DELETE", "/{name:.*}", delete)
    return app
