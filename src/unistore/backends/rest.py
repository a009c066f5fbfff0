"""REST client backend: borgstore 0.7's REST protocol, against ``unistore serve`` or borgstore's server.

URLs (borgstore's syntax)::

    http://[user:password@]host[:port][/path]     https://...
    rest://[user@]host[:port]/path                 the server runs over ssh stdio on host
    rest:///path                                    the server runs here, on stdio

Credentials come from the URL (URL-quoted) or ``$BORGSTORE_REST_USERNAME`` /
``$BORGSTORE_REST_PASSWORD`` (``$UNISTORE_REST_*`` first). TLS is verified by default (``ca_file=``
for a private CA, ``verify=False`` to opt out). Credentials are never sent over plain http to a
host other than loopback unless ``allow_insecure_http=True``. ``rest://`` runs ``ssh [opts] host
unistore serve --stdio --backend FILE:path`` (``$BORGSTORE_RSH``/``$UNISTORE_RSH`` replace ``ssh``;
``remote_command=`` replaces ``unistore serve``, e.g. with ``borgstore-server-rest``). Every call
is bounded by ``timeout`` (connect and each read); after a lost connection the next call opens a
fresh one (RetryLayer retries). Values stream both ways: ``store_file`` sends the file as the body
(hash first, for a seekable file), ``load_file`` writes the response as it arrives.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import shlex
import threading
from collections.abc import Iterable, Iterator
from typing import IO, Any, ClassVar
from urllib.parse import quote, unquote, urlencode

import urllib3

from ..errors import (
    BackendConnectionError,
    BackendMustBeOpen,
    BackendURLInvalid,
    ConfigError,
    ObjectNotFound,
    ReadRangeError,
)
from ..server.protocol import ERROR_HEADER, HASH_HEADER, MEDIA_TYPE, error_for, make_range
from .base import CHUNK_SIZE, Backend, ItemInfo, Value, as_bytes_view, resolve_range, validate_sources
from .rest_stdio import StdioConnection

HTTP_RE = re.compile(
    r"(?P<scheme>https?)://(?:(?P<user>[^:@/]+):(?P<password>[^@/]*)@)?(?P<host>\[[^\]]+\]|[^:/?#]+)"
    r"(?::(?P<port>\d+))?(?P<path>/[^?#]*)?$"
)
REST_RE = re.compile(
    r"rest://(?:(?:(?P<user>[^@:/]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\[\]]+)(?::(?P<port>\d+))?)?/(?P<path>[^?#]+)$"
)
OPTIONS = {"timeout", "ca_file", "verify", "allow_insecure_http", "remote_command", "workers", "username", "password"}


def _loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class RestBackend(Backend):
    """A backend served by a REST server speaking borgstore 0.7's protocol."""

    schemes = ("http", "https", "rest")
    #: options from_url takes beyond the constructor's
    url_options: ClassVar[dict[str, Any]] = {"remote_command": str}

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        command: list[str] | None = None,
        timeout: float = 30.0,
        ca_file: str | None = None,
        verify: bool = True,
        allow_insecure_http: bool = False,
        workers: int = 8,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._username = username
        self._password = password
        self.command = command
        self.timeout = timeout
        self.bulk_workers = max(1, workers)
        host = urllib3.util.parse_url(self.base_url).host or ""
        if command is None and self.base_url.startswith("http://") and password and not _loopback(host):
            if not allow_insecure_http:
                raise ConfigError(
                    "refusing to send REST credentials over plain http to a non-loopback host: use https "
                    "(or allow_insecure_http=True)"
                )
        self._headers = {"Accept": MEDIA_TYPE}
        if username and password:
            self._headers.update(urllib3.make_headers(basic_auth=f"{username}:{password}"))
        kwargs: dict[str, Any] = {"maxsize": self.bulk_workers, "block": True, "retries": False, "blocksize": 1 << 20}
        if self.base_url.startswith("https://"):
            kwargs["cert_reqs"] = "CERT_REQUIRED" if verify else "CERT_NONE"
            if ca_file:
                kwargs["ca_certs"] = ca_file
        self._pool_kwargs = kwargs
        self._http: urllib3.PoolManager | None = None
        self._stdio: StdioConnection | None = None
        self._stdio_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RestBackend:
        unknown = set(options) - OPTIONS
        if unknown:
            raise ConfigError(f"unknown options for the REST backend: {sorted(unknown)}")
        remote_command = options.pop("remote_command", None)
        m = HTTP_RE.match(url)
        if m:
            user, password = m.group("user"), m.group("password")
            if user and password:
                user, password = unquote(user), unquote(password)
            else:
                user = options.pop("username", None) or _env("USERNAME")
                password = options.pop("password", None) or _env("PASSWORD")
            port = f":{m.group('port')}" if m.group("port") else ""
            base = f"{m.group('scheme')}://{m.group('host')}{port}{m.group('path') or ''}"
            return cls(base, username=user, password=password, **options)
        m = REST_RE.match(url)
        if m:
            path, host = m.group("path"), m.group("host")
            serve = shlex.split(remote_command) if remote_command else ["unistore", "serve"]
            command = [] if not host else [*_ssh_command(), *(["-p", m.group("port")] if m.group("port") else [])]
            if host:
                command.append(f"{m.group('user')}@{host}" if m.group("user") else host)
            command += [*serve, "--stdio", "--backend", f"FILE:{path}"]
            options.pop("username", None)
            options.pop("password", None)
            return cls("http://stdio", command=command, **options)
        raise BackendURLInvalid("not a REST URL: use http(s)://[user:pass@]host[:port][/path] or rest://[user@]host/path")

    def __repr__(self) -> str:
        where = "stdio" if self.command is not None else self.base_url
        return f"<RestBackend {where}{' (auth)' if self._password else ''}>"

    # ----------------------------------------------------------------- transport
    def _url(self, name: str, params: dict[str, Any] | None = None) -> str:
        path = "/" + quote(name, safe="/")
        query = f"?{urlencode(params)}" if params else ""
        return path + query

    def _request(
        self,
        method: str,
        name: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Any:
        all_headers = dict(self._headers)
        if headers:
            all_headers.update(headers)
        target = self._url(name, params)
        if self.command is not None:
            return self._stdio_request(method, target, body, all_headers)
        http = self._http
        if http is None:
            http = urllib3.PoolManager(num_pools=2, **self._pool_kwargs)
            self._http = http
        try:
            return http.request(
                method.upper(),
                self.base_url + target,
                body=body,
                headers=all_headers,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                preload_content=not stream,
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as e:
            raise BackendConnectionError(f"REST server {self.base_url}: {type(e).__name__}") from None

    def _stdio_request(self, method: str, target: str, body: Any, headers: dict[str, str]) -> _Response:
        with self._stdio_lock:
            if self._stdio is None:
                assert self.command is not None
                self._stdio = StdioConnection(self.command, self.timeout)
            try:
                status, rheaders, data = self._stdio.request(method.upper(), target, headers, body)
            except BackendConnectionError:
                self._stdio.close()
                self._stdio = None  # the next call starts a fresh server
                raise
        return _Response(status, rheaders, data)

    def _check(self, response: Any, name: str, ok: tuple[int, ...] = (200, 206)) -> Any:
        if response.status in ok:
            return response
        text = self._body(response).decode("utf-8", "replace")
        error_class = {k.lower(): v for k, v in response.headers.items()}.get(ERROR_HEADER.lower())
        raise error_for(response.status, text, name, error_class)

    @staticmethod
    def _body(response: Any) -> bytes:
        return response.data if hasattr(response, "data") else response.body  # type: ignore[no-any-return]

    # ----------------------------------------------------------------- lifecycle
    def create(self) -> None:
        self._check(self._request("post", "", params={"cmd": "create"}), "backend")

    def destroy(self) -> None:
        self._check(self._request("delete", "", params={"cmd": "destroy"}), "backend")

    def open(self) -> None:
        self.opened = True

    def close(self) -> None:
        self.opened = False
        if self._http is not None:
            self._http.clear()
            self._http = None
        with self._stdio_lock:
            if self._stdio is not None:
                self._stdio.close()
                self._stdio = None

    # ----------------------------------------------------------------- primitives
    def mkdir(self, name: str) -> None:
        self._check_open()
        name = self._name(name)
        self._check(self._request("post", name, params={"cmd": "mkdir"}), name)

    def rmdir(self, name: str) -> None:
        self._check_open()
        name = self._name(name)
        self._check(self._request("delete", name, params={"cmd": "rmdir"}), name)

    def info(self, name: str) -> ItemInfo:
        self._check_open()
        name = self._name(name, allow_root=True)
        response = self._request("head", name)
        leaf = name.rpartition("/")[2]
        if response.status == 404:
            return ItemInfo(leaf, False)
        self._check(response, name)
        h = {k.lower(): v for k, v in response.headers.items()}
        return ItemInfo(
            leaf,
            True,
            int(h.get("content-length", 0)),
            h.get("x-borgstore-is-directory") == "true",
            float(h.get("x-borgstore-atime", 0)),
            float(h.get("x-borgstore-mtime", 0)),
        )

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        self._check_open()
        name = self._name(name)
        if size is not None and size < 0:
            raise ReadRangeError(f"size must be >= 0 or None, not {size}")
        total = None
        if (offset < 0 and size is not None) or size == 0:
            info = self.info(name)
            if not info.exists or info.directory:
                raise ObjectNotFound(name)
            total = info.size
            start, length = resolve_range(total, offset, size)
            if length == 0:
                return b""
            offset, size = start, length
        rng = make_range(offset, size, total)
        response = self._request("get", name, headers={"Range": rng} if rng else None)
        return self._body(self._check(response, name))

    def store(self, name: str, value: Value) -> None:
        self._check_open()
        name = self._name(name)
        view = as_bytes_view(value)
        headers = {HASH_HEADER: hashlib.sha256(view).hexdigest(), "Content-Type": "application/octet-stream"}
        self._check(self._request("post", name, body=bytes(view), headers=headers), name)

    def delete(self, name: str) -> None:
        self._check_open()
        name = self._name(name)
        self._check(self._request("delete", name), name)

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        curr_name, new_name = self._name(curr_name), self._name(new_name)
        params = {"cmd": "move", "current": curr_name, "new": new_name}
        self._check(self._request("post", "", params=params), curr_name)

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        name = self._name(name, allow_root=True)
        response = self._check(self._request("get", name + "/" if name else ""), name)
        entries = json.loads(self._body(response))
        return iter(
            [
                ItemInfo(e["name"], True, e["size"], e.get("directory", False), e.get("atime", 0), e.get("mtime", 0))
                for e in entries
            ]
        )

    # ----------------------------------------------------------------- streaming and server-side work
    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self._check_open()
        name = self._name(name)
        if self.command is not None or not file.seekable():
            return super().store_file(name, file, size=size)  # the stdio pipe and unseekable sources: in memory
        start = file.tell()
        h = hashlib.sha256()
        n = 0
        while size is None or n < size:
            chunk = file.read(CHUNK_SIZE if size is None else min(CHUNK_SIZE, size - n))
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
        file.seek(start)
        body = _Limited(file, n)
        headers = {HASH_HEADER: h.hexdigest(), "Content-Length": str(n), "Content-Type": "application/octet-stream"}
        self._check(self._request("post", name, body=body, headers=headers), name)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        self._check_open()
        if self.command is not None:
            return super().load_file(name, file, offset=offset, size=size)
        name = self._name(name)
        info = self.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(name)
        start, length = resolve_range(info.size, offset, size)
        if length == 0:
            return 0
        response = self._request(
            "get", name, headers={"Range": f"bytes={start}-{start + length - 1}"}, stream=True
        )
        try:
            if response.status not in (200, 206):
                response.read()
                self._check(response, name)
            written = 0
            for chunk in response.stream(1024 * 1024):
                file.write(chunk)
                written += len(chunk)
        except urllib3.exceptions.HTTPError as e:
            raise BackendConnectionError(f"REST server {self.base_url}: {type(e).__name__} while reading") from None
        finally:
            response.release_conn()
        if written != length:
            raise ReadRangeError(f"{name}: got {written} of {length} bytes")
        return written

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        self._check_open()
        name = self._name(name)
        response = self._request("post", name, params={"cmd": "hash", "algorithm": algorithm})
        return self._body(self._check(response, name)).decode("ascii")

    def quota(self) -> dict[str, int]:
        self._check_open()
        return dict(json.loads(self._body(self._check(self._request("post", "", params={"cmd": "quota"}), "quota"))))

    def gather(self, sources: Iterable[tuple[str, int, int]]) -> bytes:
        self._check_open()
        ranges = validate_sources(sources)
        for n, _, _ in ranges:
            self._name(n)
        if not ranges:
            return b""
        body = json.dumps(ranges).encode()
        response = self._request("post", "", params={"cmd": "gather"}, body=body)
        data = self._body(self._check(response, "gather"))
        if len(data) != sum(s for _, _, s in ranges):
            raise ReadRangeError(f"gather returned {len(data)} bytes, not {sum(s for _, _, s in ranges)}")
        return data

    def defrag(
        self,
        sources: Iterable[tuple[str, int, int]],
        *,
        target: str | None = None,
        algorithm: str | None = None,
        namespace: str | None = None,
        levels: int = 0,
    ) -> str:
        self._check_open()
        params: dict[str, Any] = {"cmd": "defrag"}
        for key, value in (("target", target), ("algorithm", algorithm), ("namespace", namespace)):
            if value is not None:
                params[key] = value
        if levels:
            params["levels"] = levels
        body = json.dumps(validate_sources(sources)).encode()
        return self._body(self._check(self._request("post", "", params=params, body=body), "defrag")).decode()

    def _check_open(self) -> None:
        if not self.opened:
            raise BackendMustBeOpen(f"{self!r} must be opened first")


def _env(what: str) -> str | None:
    return os.environ.get(f"UNISTORE_REST_{what}") or os.environ.get(f"BORGSTORE_REST_{what}") or None


def _ssh_command() -> list[str]:
    rsh = os.environ.get("UNISTORE_RSH") or os.environ.get("BORGSTORE_RSH")
    if rsh:
        return shlex.split(rsh)
    return ["ssh", "-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=3", "-o", "BatchMode=yes"]


class _Limited:
    """A file-like body of exactly ``n`` bytes from ``f`` (urllib3 reads it in blocks)."""

    def __init__(self, f: IO[bytes], n: int) -> None:
        self.f = f
        self.left = n

    def read(self, amount: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if amount is None or amount < 0 else min(amount, self.left)
        data = self.f.read(want)
        self.left -= len(data)
        return data
