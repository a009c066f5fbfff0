"""Running the REST server: on a TCP port (optionally TLS), on a systemd-activated socket, or on stdio.

On stdio (``--stdio``, what ``rest://`` URLs run over ssh) the server listens on a private Unix
socket (in a fresh mode-0700 directory) and one connection to it is bridged to stdin/stdout, so the
one client on the pipe gets the same HTTP implementation, limits and checks as a network client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ConfigError
from ..url import open_backend
from .app import Limits, Server, make_app

logger = logging.getLogger("unistore.server")

#: borgstore-server-rest's permission shortcuts (the letters: l list, r read, w write, W overwrite, D delete)
PERMISSION_SHORTCUTS: dict[str, dict[str, str] | None] = {
    "borgbackup-all": None,
    "borgbackup-no-delete": {
        "": "lr", "archives": "lrw", "cache": "lrwWD", "config": "lrW", "data": "lrw", "keys": "lr", "locks": "lrwD",
    },
    "borgbackup-write-only": {
        "": "l", "archives": "lw", "cache": "lrwWD", "config": "lrW", "data": "lw", "keys": "lr", "locks": "lrwD",
    },
    "borgbackup-read-only": {"": "lr", "locks": "lrwD"},
}  # fmt: skip


def resolve_permissions(value: str | None) -> dict[str, str] | None:
    """A shortcut name or a JSON object -> a permissions mapping (None: no permission checks)."""
    if value is None:
        return None
    if value in PERMISSION_SHORTCUTS:
        return PERMISSION_SHORTCUTS[value]
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise ConfigError(
            f"--permissions must be a shortcut ({', '.join(PERMISSION_SHORTCUTS)}) or a JSON object"
        ) from None
    if not isinstance(parsed, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
        raise ConfigError("--permissions JSON must map path prefixes to permission letters")
    return parsed


def backend_url(value: str) -> str:
    """borgstore's ``FILE:path`` (relative, ``~`` allowed) -> a file:// URL; other URLs unchanged."""
    if value.startswith("FILE:"):
        return Path(value[5:]).expanduser().resolve().as_uri()
    return value


def build_server(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    permissions: dict[str, str] | None = None,
    quota: int | None = None,
    limits: Limits | None = None,
) -> Server:
    options: dict[str, Any] = {}
    url = backend_url(url)
    if permissions is not None or quota is not None:
        if not url.startswith("file:"):
            raise ConfigError("--permissions and --quota are only supported for file: backends")
        if permissions is not None:
            options["permissions"] = permissions
        if quota is not None:
            options["quota"] = quota
    if bool(username) != bool(password):
        raise ConfigError("give both --username and --password, or neither")
    backend = open_backend(url, **options)
    return Server(backend, username=username, password=password, limits=limits)


def _systemd_socket() -> socket.socket:
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or int(os.environ.get("LISTEN_FDS", "0")) < 1:
        raise ConfigError("--socket-activation: no socket passed by systemd (LISTEN_PID/LISTEN_FDS)")
    sock = socket.socket(fileno=3)
    sock.setblocking(False)
    return sock


async def _serve(server: Server, sites: list[Any], ready: threading.Event | None = None) -> None:
    runner = web.AppRunner(
        make_app(server),
        access_log=None,
        keepalive_timeout=server.limits.keepalive,
        handler_cancellation=True,
        max_line_size=server.limits.max_line,
        max_field_size=server.limits.max_field,
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (RuntimeError, ValueError):  # not the main thread
            pass
    try:
        for make_site in sites:
            await make_site(runner).start()
        if ready is not None:
            ready.set()
        await stop.wait()
    finally:
        await runner.cleanup()
        server.shutdown()


def serve_tcp(
    server: Server,
    host: str,
    port: int,
    *,
    socket_activation: bool = False,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    context = None
    if tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls_cert, tls_key)
    elif tls_key:
        raise ConfigError("--tls-key needs --tls-cert")
    sites: list[Any]
    if socket_activation:
        sock = _systemd_socket()
        sites = [lambda r: web.SockSite(r, sock, ssl_context=context)]
        logger.info("serving %r on the systemd socket %s", server.backend, sock.getsockname())
    else:
        sites = [lambda r: web.TCPSite(r, host, port, ssl_context=context, reuse_address=True)]
        logger.info("serving %r on %s://%s:%d", server.backend, "https" if context else "http", host, port)
    asyncio.run(_serve(server, sites))


def _pump(src: Any, dst: Any, on_eof: Any) -> None:
    try:
        while True:
            data = src.read1(65536) if hasattr(src, "read1") else src.recv(65536)
            if not data:
                break
            if hasattr(dst, "sendall"):
                dst.sendall(data)
            else:
                dst.write(data)
                dst.flush()
    except OSError:
        pass
    finally:
        on_eof()


def serve_stdio(server: Server) -> None:
    """Serve the one client on stdin/stdout (see the module docstring)."""
    private = tempfile.mkdtemp(prefix="unistore-serve-")
    os.chmod(private, 0o700)
    path = os.path.join(private, "s")
    ready = threading.Event()
    loop_holder: dict[str, Any] = {}

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop_holder["loop"] = loop
        loop.run_until_complete(_serve(server, [lambda r: web.UnixSite(r, path)], ready))

    thread = threading.Thread(target=run, name="unistore-serve-loop", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise ConfigError("the stdio server did not start")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(path)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    done = threading.Event()

    def client_gone() -> None:
        try:
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    to_server = threading.Thread(target=_pump, args=(stdin, conn, client_gone), daemon=True)
    to_server.start()
    _pump(conn, stdout, done.set)
    loop = loop_holder.get("loop")
    if loop is not None:
        for task in asyncio.all_tasks(loop):
            loop.call_soon_threadsafe(task.cancel)
    thread.join(5)
    shutil.rmtree(private, ignore_errors=True)
