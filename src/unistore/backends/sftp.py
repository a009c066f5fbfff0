"""``sftp://[user@]host[:port]/relative/path`` and ``sftp://[user@]host[:port]//absolute/path``.

An SFTP backend over paramiko:

* ``~/.ssh/config`` (and ``/etc/ssh/ssh_config``) is honoured for HostName, User, Port, IdentityFile,
  UserKnownHostsFile, ConnectTimeout, ServerAliveInterval, ProxyCommand and StrictHostKeyChecking.
* The server's host key must be known (``known_hosts`` or the ``host_key`` option); an unknown key
  is refused unless the caller opts in with ``accept_unknown_host_key=True``; a key that does not
  match a known one is always refused.
* Authentication by key files (``key_filename``, IdentityFile, ``~/.ssh/id_*``), ssh-agent, or a
  ``password`` (never logged or shown in a repr).
* Writes go to a temporary name in the target directory and are renamed into place with the
  ``posix-rename@openssh.com`` extension (atomic replace), falling back to remove+rename only on
  servers without it.
* Every socket read has a timeout, connection set-up has its own, and keepalives are sent, so no
  call blocks forever. A lost connection is re-established and an idempotent operation retried
  (``retries`` times, with a growing pause); after that :class:`BackendConnectionError` is raised.
* Thread-safe: a pool of ``channels`` SFTP channels over ``connections`` SSH connections (one by
  default); each call borrows one. The bulk operations run on as many threads as there are
  channels, and ``store_many``/``load_many`` pipeline batches of values on each channel.
* Large values are streamed in both directions, with a window of READ/WRITE requests in flight,
  sent and answered in the calling thread (paramiko's prefetch thread is not used).

Pipelining uses paramiko's request primitives (``_async_request``/``_read_response``) directly;
they are what paramiko's own file objects are built on.
"""

from __future__ import annotations

import base64
import builtins
import errno
import io
import logging
import os
import re
import secrets
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, BinaryIO, TypeVar, cast
from urllib.parse import unquote

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_OPEN,
    CMD_READ,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTPError,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile

from ..errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendMustNotBeOpen,
    BackendURLInvalid,
    ConfigError,
    CredentialsError,
    DirectoryNotEmpty,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
)
from ..names import TMP_SUFFIX, is_listable, join
from .base import CHUNK_SIZE, Backend, ItemInfo, Value, as_bytes_view, resolve_range

log = logging.getLogger("unistore.backends.sftp")

T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 120.0
DEFAULT_KEEPALIVE = 30
DEFAULT_RETRIES = 3
DEFAULT_RETRY_WAIT = 1.0
DEFAULT_CHANNELS = 8
DEFAULT_CONNECTIONS = 1
#: bytes of WRITE requests in flight while storing
_WRITE_AHEAD = 8 * 1024 * 1024
#: store_many: values per pipelined batch, and bytes at most
_BATCH_ITEMS = 32
_BATCH_BYTES = 4 * 1024 * 1024
#: SSH channel window and maximum packet size we offer
_WINDOW_SIZE = 16 * 1024 * 1024
_MAX_PACKET_SIZE = 256 * 1024
#: bytes asked for along with the FSTAT of a load: such a value costs two round trips
_FIRST_READ_BYTES = 255 * 1024
#: bytes of READ requests in flight while loading a large value
_READ_AHEAD = 8 * 1024 * 1024
#: READ and WRITE size used with OpenSSH (its sftp-server takes messages up to 256 KiB)
_OPENSSH_READ = 255 * 1024
#: load_file hands data to the destination file in batches of this size
_WRITE_BATCH = 1024 * 1024

_URL = re.compile(
    r"^sftp://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:/\[\]]+)(?::(?P<port>\d+))?/(?P<path>.*)$", re.IGNORECASE
)

_LOST_ERRNOS = frozenset(
    getattr(errno, n)
    for n in (
        "EPIPE",
        "ECONNRESET",
        "ECONNABORTED",
        "ECONNREFUSED",
        "ENETDOWN",
        "ENETRESET",
        "ENETUNREACH",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ETIMEDOUT",
        "ESHUTDOWN",
    )
    if hasattr(errno, n)
)


def _is_connection_lost(exc: BaseException) -> bool:
    """True if ``exc`` means the connection is gone (something a reconnect may fix)."""
    if isinstance(exc, CredentialsError):
        return False
    if isinstance(exc, EOFError | TimeoutError | socket.timeout | ConnectionError | BackendConnectionError):
        return True
    if isinstance(exc, paramiko.AuthenticationException | paramiko.BadHostKeyException):
        return False
    if isinstance(exc, paramiko.SSHException | paramiko.ssh_exception.NoValidConnectionsError):
        return True
    if isinstance(exc, OSError) and exc.errno in _LOST_ERRNOS:
        return True
    # paramiko raises a bare OSError("Socket is closed") on a closed channel
    return isinstance(exc, OSError) and exc.errno is None and "closed" in str(exc).lower()


class _RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """paramiko missing-host-key policy: refuse, with a message that says how to proceed."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise CredentialsError(
            f"the SSH host key of {hostname} ({key.get_name()} {key.fingerprint}) is not known: add it to "
            "known_hosts, pass host_key=..., or opt in with accept_unknown_host_key=True"
        )


class _AcceptUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """paramiko missing-host-key policy for the explicit opt-in: accept, log, do not save."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        log.warning("accepting unknown SSH host key of %s: %s %s", hostname, key.get_name(), key.fingerprint)


def _host_key_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def _parse_host_key(value: Any) -> Any:
    """``host_key`` option: a paramiko PKey, or an OpenSSH public key line ``type base64 [comment]``."""
    if isinstance(value, paramiko.PKey):
        return value
    if not isinstance(value, str):
        raise ConfigError("host_key must be an OpenSSH public key line ('ssh-ed25519 AAAA...') or a paramiko PKey")
    parts = value.split()
    if parts and not parts[0].startswith(("ssh-", "ecdsa-", "sk-")) and len(parts) >= 3:
        parts = parts[1:]  # a known_hosts line: drop the host pattern
    if len(parts) < 2:
        raise ConfigError("host_key must look like 'ssh-ed25519 AAAA...'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as e:
        raise ConfigError(f"host_key could not be parsed: {e}") from None


class _Channel:
    """One SFTP channel of the pool: on connection ``conn``, valid while that connection's gen lasts."""

    __slots__ = ("sftp", "conn", "gen")

    def __init__(self, sftp: Any, conn: int, gen: int):
        self.sftp = sftp
        self.conn = conn
        self.gen = gen


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
        retries: int = DEFAULT_RETRIES,
        retry_wait: float = DEFAULT_RETRY_WAIT,
        pipeline: bool = True,
    ):
        if not path:
            raise ConfigError("an sftp backend needs a path")
        if channels < 1:
            raise ConfigError("channels must be >= 1")
        if timeout is None or timeout <= 0:
            raise ConfigError("timeout must be > 0 (no call may block forever)")
        self.host = host
        self.path = path
        self._password = password
        self._passphrase = passphrase
        self.allow_agent = allow_agent
        self.look_for_keys = look_for_keys
        self.accept_unknown_host_key = accept_unknown_host_key
        self.timeout = float(timeout)
        self.channels = channels
        self.bulk_workers = channels
        self.retries = max(0, retries)
        self.retry_wait = retry_wait
        self._host_key = _parse_host_key(host_key) if host_key is not None else None

        cfg = self._ssh_config(host, ssh_config)
        self.hostname: str = cfg.get("hostname", host)
        self.port: int = port or int(cfg.get("port", 22))
        self.user: str | None = user or cfg.get("user")
        keys: list[str] = []
        if isinstance(key_filename, str):
            keys.append(key_filename)
        elif key_filename:
            keys.extend(key_filename)
        keys.extend(os.path.expanduser(k) for k in cfg.get("identityfile", []) if os.path.exists(os.path.expanduser(k)))
        self.key_filename = keys or None
        self.known_hosts: list[str] = []
        if known_hosts is not None:
            self.known_hosts.append(os.path.expanduser(known_hosts))
        else:
            for f in (cfg.get("userknownhostsfile") or "").split():
                self.known_hosts.append(os.path.expanduser(f))
        strict = str(cfg.get("stricthostkeychecking", "")).lower()
        if strict in ("no", "off", "accept-new"):
            self.accept_unknown_host_key = True
        self.connect_timeout = float(
            connect_timeout if connect_timeout is not None else cfg.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT)
        )
        self.keepalive = int(keepalive if keepalive is not None else cfg.get("serveraliveinterval", DEFAULT_KEEPALIVE))
        self._proxy_command: str | None = cfg.get("proxycommand")

        self._lock = threading.Lock()
        self.connections = max(1, min(connections, channels))
        self._clients: list[Any] = [None] * self.connections
        self._gens = [0] * self.connections
        self._channel_count = [0] * self.connections
        self._idle: list[_Channel] = []
        self._slots = threading.BoundedSemaphore(channels)
        self._root = ""  # absolute base path on the server, set by open()
        self._posix_rename = True
        self.pipeline = pipeline
        self._in_order_server = False
        self._read_size = SFTPFile.MAX_REQUEST_SIZE
        self._rename_locks = [threading.Lock() for _ in range(64)]
        self.opened = False

    @staticmethod
    def _ssh_config(host: str, path: str | None) -> dict[str, Any]:
        cfg: dict[str, Any] = {}
        for f in ("/etc/ssh/ssh_config", path):
            if not f:
                continue
            f = os.path.expanduser(f)
            if not os.path.isfile(f):
                continue
            try:
                looked = paramiko.SSHConfig.from_path(f).lookup(host)
            except Exception as e:  # a broken config file must not stop us
                log.warning("ignoring unreadable ssh config %s: %s", f, e)
                continue
            for k, v in looked.items():
                if k == "hostname" and v == host and "hostname" in cfg:
                    continue
                cfg[k] = v
        return cfg

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SFTPBackend:
        """``sftp://[user@]host[:port]/relative/path`` or ``sftp://[user@]host[:port]//absolute/path``."""
        m = _URL.match(url)
        if not m:
            raise BackendURLInvalid(
                "sftp URL must look like sftp://[user@]host[:port]/relative/path or sftp://[user@]host[:port]//abs/path"
            )
        user = unquote(m["user"]) if m["user"] else None
        if user is not None and ":" in user:
            raise BackendURLInvalid("do not put a password into an sftp URL; pass password=... as an option")
        path = unquote(m["path"])
        if not path.strip("/"):
            raise BackendURLInvalid("an sftp URL needs a path below the host, e.g. sftp://host/store")
        host = m["host"].strip("[]")
        if user is not None:
            options.setdefault("user", user)
        if m["port"]:
            options.setdefault("port", int(m["port"]))
        return cls(host, path.rstrip("/") or "/", **options)

    def __repr__(self) -> str:
        who = f"{self.user}@" if self.user else ""
        sep = "/" if self.path.startswith("/") else ""
        return f"<SFTPBackend sftp://{who}{self.hostname}:{self.port}/{sep}{self.path}>"

    # ----------------------------------------------------------------- connection handling
    def _connect(self) -> Any:
        client = paramiko.SSHClient()
        try:
            if self.known_hosts:
                for f in self.known_hosts:
                    if os.path.exists(f):
                        client.load_system_host_keys(f)
            else:
                client.load_system_host_keys()
            if self._host_key is not None:
                client.get_host_keys().add(
                    _host_key_entry(self.hostname, self.port), self._host_key.get_name(), self._host_key
                )
            policy: paramiko.MissingHostKeyPolicy = (
                _AcceptUnknownHostKey() if self.accept_unknown_host_key else _RejectUnknownHostKey()
            )
            client.set_missing_host_key_policy(policy)
            sock = paramiko.ProxyCommand(self._proxy_command) if self._proxy_command else None
            client.connect(
                self.hostname,
                port=self.port,
                username=self.user,
                password=self._password,
                key_filename=cast(Any, self.key_filename),
                passphrase=self._passphrase,
                allow_agent=self.allow_agent,
                look_for_keys=self.look_for_keys,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                sock=sock,
            )
            transport = client.get_transport()
            if transport is not None:
                if self.keepalive:
                    transport.set_keepalive(self.keepalive)
                # a larger channel window and packets than paramiko's 2 MiB / 32 KiB: fewer packets
                # and no stalls waiting for window adjustments while streaming
                transport.default_window_size = _WINDOW_SIZE
                transport.default_max_packet_size = _MAX_PACKET_SIZE
            # OpenSSH's sftp-server answers a channel's requests strictly in order
            remote = transport.remote_version if transport is not None else ""
            self._in_order_server = self.pipeline and remote.startswith("SSH-2.0-OpenSSH")
            self._read_size = _OPENSSH_READ if self._in_order_server else SFTPFile.MAX_REQUEST_SIZE
        except paramiko.BadHostKeyException as e:
            client.close()
            raise CredentialsError(
                f"the SSH host key of {self.hostname}:{self.port} does not match the known one "
                f"(got {e.key.get_name()} {e.key.fingerprint}): refusing to connect"
            ) from None
        except paramiko.AuthenticationException as e:
            client.close()
            raise CredentialsError(
                f"SSH authentication to {self.user}@{self.hostname}:{self.port} failed: {e}"
            ) from None
        except BaseException:
            client.close()
            raise
        log.debug("connected to %s:%d", self.hostname, self.port)
        return client

    def _open_channel(self) -> _Channel:
        with self._lock:
            # spread channels over the connections; a connection is made when first needed
            conn = min(range(self.connections), key=lambda i: self._channel_count[i])
            client = self._clients[conn]
            if client is not None:
                transport = client.get_transport()
                if transport is None or not transport.is_active():
                    self._drop_connection_locked(conn)
                    client = None
            if client is None:
                client = self._clients[conn] = self._connect()
            gen = self._gens[conn]
            self._channel_count[conn] += 1
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)
        except BaseException as e:
            with self._lock:
                if gen == self._gens[conn]:
                    self._channel_count[conn] -= 1
                    if _is_connection_lost(e):
                        self._drop_connection_locked(conn)
            raise
        return _Channel(sftp, conn, gen)

    def _acquire(self) -> _Channel:
        # every call that holds a channel is bounded by the timeouts, so this wait is bounded too
        # (a fixed limit here would fail callers queued behind long transfers)
        self._slots.acquire()
        try:
            with self._lock:
                while self._idle:
                    ch = self._idle.pop()
                    if ch.gen == self._gens[ch.conn] and not ch.sftp.sock.closed:
                        return ch
                    self._forget_locked(ch)
            return self._open_channel()
        except BaseException:
            self._slots.release()
            raise

    def _forget_locked(self, ch: _Channel) -> None:
        _quiet_close(ch.sftp)
        if ch.gen == self._gens[ch.conn]:
            self._channel_count[ch.conn] -= 1

    def _release(self, ch: _Channel, *, broken: bool = False) -> None:
        try:
            with self._lock:
                if broken:
                    self._forget_locked(ch)
                    if ch.gen == self._gens[ch.conn]:  # first to notice: drop that connection
                        self._drop_connection_locked(ch.conn)
                elif ch.gen == self._gens[ch.conn] and self.opened:
                    self._idle.append(ch)
                else:
                    self._forget_locked(ch)
        finally:
            self._slots.release()

    def _drop_connection_locked(self, conn: int | None = None) -> None:
        """Close connection ``conn`` (all when None) and its idle channels; busy ones notice by gen."""
        for i in range(self.connections) if conn is None else (conn,):
            self._gens[i] += 1
            self._channel_count[i] = 0
            keep = []
            for ch in self._idle:
                if ch.conn == i:
                    _quiet_close(ch.sftp)
                else:
                    keep.append(ch)
            self._idle = keep
            client, self._clients[i] = self._clients[i], None
            if client is not None:
                _quiet_close(client)

    def _run(self, what: str, func: Callable[[Any, int], T], *, retry: bool = True) -> T:
        """Run ``func(sftp, attempt)`` on a pooled channel; reconnect and retry on connection loss."""
        attempt = 0
        while True:
            ch: _Channel | None = None
            try:
                ch = self._acquire()
                result = func(ch.sftp, attempt)
            except BaseException as e:
                lost = _is_connection_lost(e)
                if ch is not None:
                    self._release(ch, broken=lost)
                if not lost:
                    if isinstance(e, PermissionError):
                        raise PermissionDenied(f"{self!r}: {what}: {e}") from None
                    if isinstance(e, FileNotFoundError):
                        raise ObjectNotFound(f"{what}: {e}") from None
                    raise
                if not retry or attempt >= self.retries or not self.opened:
                    raise BackendConnectionError(
                        f"{self!r}: {what} failed, connection lost ({type(e).__name__}: {e})"
                        + (f" after {attempt + 1} attempts" if attempt else "")
                    ) from e
                attempt += 1
                pause = min(self.retry_wait * 2 ** (attempt - 1), 30.0)
                log.warning(
                    "%r: %s: connection lost (%s), retry %d/%d in %.1fs", self, what, e, attempt, self.retries, pause
                )
                time.sleep(pause)
                continue
            self._release(ch)
            return result

    # ----------------------------------------------------------------- paths
    def _path(self, name: str, *, allow_root: bool = False) -> str:
        name = self._name(name, allow_root=allow_root)
        return f"{self._root}/{name}" if name else self._root

    def _mkdirs(self, sftp: Any, path: str) -> None:
        """mkdir -p on the server (absolute path)."""
        try:
            sftp.mkdir(path)
            return
        except FileNotFoundError:
            parent = path.rsplit("/", 1)[0]
            if not parent or parent == path:
                raise
            self._mkdirs(sftp, parent)
            try:
                sftp.mkdir(path)
                return
            except OSError:
                pass
        except OSError:
            pass
        # mkdir failed: fine if it is a directory already
        try:
            st = sftp.stat(path)
        except FileNotFoundError:
            raise ObjectNotFound(f"cannot create directory {path}") from None
        if not stat.S_ISDIR(st.st_mode or 0):
            raise ObjectNotFound(f"{path} is an item, not a directory")

    def _rename(self, sftp: Any, src: str, dst: str) -> None:
        # renames onto one target are serialized within this backend: some servers (rclone serve
        # sftp) lose files when two renames to the same target race
        with self._rename_locks[hash(dst) % len(self._rename_locks)]:
            self._rename_unlocked(sftp, src, dst)

    def _rename_unlocked(self, sftp: Any, src: str, dst: str) -> None:
        if self._posix_rename:
            for attempt in range(4):
                try:
                    sftp.posix_rename(src, dst)
                    return
                except OSError as e:
                    if isinstance(e, FileNotFoundError | PermissionError) or _is_connection_lost(e):
                        raise
                    if "unsupported" in str(e).lower():
                        log.info("%r: server lacks posix-rename, falling back to remove+rename", self)
                        self._posix_rename = False
                        break
                    # some servers (rclone serve sftp) fail a rename that races with another rename
                    # to the same target; retry while the source is still there
                    if attempt == 3 or stat.S_ISDIR(sftp.stat(src).st_mode or 0):
                        raise
                    time.sleep(0.01 * (attempt + 1))
            else:  # pragma: no cover - the loop always returns or raises
                return
        try:
            sftp.rename(src, dst)
        except FileNotFoundError:
            raise
        except OSError:
            # plain SFTP rename refuses to replace: remove the target first (not atomic)
            try:
                sftp.remove(dst)
            except FileNotFoundError:
                pass
            sftp.rename(src, dst)

    # ----------------------------------------------------------------- lifecycle
    def _lifecycle_connect(self) -> None:
        """Connect (with retries, through _run) and resolve the base path to an absolute one."""

        def resolve(sftp: Any, attempt: int) -> str:
            if self.path.startswith("/"):
                return "/" + self.path.strip("/")
            home = sftp.normalize(".")  # relative paths start at the login directory
            return home.rstrip("/") + "/" + self.path.strip("/")

        self._root = self._run("connect", resolve)

    def _lifecycle_disconnect(self) -> None:
        with self._lock:
            self._drop_connection_locked()

    def _connected(self, func: Callable[[], T]) -> T:
        """Run a lifecycle step on a temporary connection (create/destroy work on a closed backend)."""
        self.opened = True  # let _run retry
        try:
            self._lifecycle_connect()
            return func()
        except OSError as e:
            if _is_connection_lost(e):
                raise BackendConnectionError(f"{self!r}: {e}") from e
            raise
        finally:
            self.opened = False
            self._lifecycle_disconnect()

    def create(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()

        def do() -> None:
            def mk(sftp: Any, attempt: int) -> bool:
                self._mkdirs(sftp, self._root)
                return any(True for e in sftp.listdir(self._root))

            if self._run("create", mk):
                raise BackendAlreadyExists(f"sftp storage base path is not empty: {self._root}")

        self._connected(do)

    def destroy(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()

        def do() -> None:
            def check(sftp: Any, attempt: int) -> None:
                try:
                    sftp.stat(self._root)
                except FileNotFoundError:
                    raise BackendDoesNotExist(f"sftp storage base path does not exist: {self._root}") from None

            self._run("destroy", check)
            self._remove_tree(self._root)

        self._connected(do)

    def _remove_tree(self, path: str) -> None:
        def rm_tree(sftp: Any, p: str) -> None:
            for tries in range(5):
                try:
                    entries = sftp.listdir_attr(p)
                except FileNotFoundError:
                    return
                for e in entries:
                    child = f"{p}/{e.filename}"
                    if stat.S_ISDIR(e.st_mode or 0):
                        rm_tree(sftp, child)
                    else:
                        try:
                            sftp.remove(child)
                        except FileNotFoundError:
                            pass
                try:
                    sftp.rmdir(p)
                    return
                except FileNotFoundError:
                    return
                except OSError as e:
                    # a server with a listing cache (rclone) may have shown a stale listing: list again
                    if _is_connection_lost(e) or tries == 4:
                        raise
                    time.sleep(0.05 * (tries + 1))

        def rm(sftp: Any, attempt: int) -> None:
            rm_tree(sftp, path)

        self._run("destroy", rm)

    def open(self) -> None:
        if self.opened:
            raise BackendMustNotBeOpen()
        self.opened = True
        try:
            self._lifecycle_connect()

            def check(sftp: Any, attempt: int) -> None:
                try:
                    st = sftp.stat(self._root)
                except FileNotFoundError:
                    raise BackendDoesNotExist(f"sftp storage base path does not exist: {self._root}") from None
                if not stat.S_ISDIR(st.st_mode or 0):
                    raise BackendDoesNotExist(f"sftp storage base path is not a directory: {self._root}")

            self._run("open", check)
        except BaseException:
            self.opened = False
            self._lifecycle_disconnect()
            raise

    def close(self) -> None:
        self.opened = False
        self._lifecycle_disconnect()

    # ----------------------------------------------------------------- core operations
    def mkdir(self, name: str) -> None:
        self._check_open()
        path = self._path(name, allow_root=True)
        t0 = time.perf_counter()
        self._run(f"mkdir {name}", lambda sftp, attempt: self._mkdirs(sftp, path))
        log.debug("mkdir %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)

    def rmdir(self, name: str) -> None:
        self._check_open()
        path = self._path(name)

        def do(sftp: Any, attempt: int) -> None:
            failure = _remove(sftp, sftp.rmdir, path, name, attempt)
            if failure is None:
                return
            st, err = failure
            if not stat.S_ISDIR(st.st_mode or 0):
                raise ObjectNotFound(f"{name} is not a directory")
            raise DirectoryNotEmpty(f"directory not empty: {name}") from err

        t0 = time.perf_counter()
        self._run(f"rmdir {name}", do)
        log.debug("rmdir %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)

    def info(self, name: str) -> ItemInfo:
        self._check_open()
        path = self._path(name, allow_root=True)
        base = name.rsplit("/", 1)[-1]

        def do(sftp: Any, attempt: int) -> ItemInfo:
            try:
                st = sftp.stat(path)
            except FileNotFoundError:
                return ItemInfo(base, False)
            is_dir = stat.S_ISDIR(st.st_mode or 0)
            return ItemInfo(base, True, 0 if is_dir else (st.st_size or 0), is_dir, st.st_atime or 0, st.st_mtime or 0)

        t0 = time.perf_counter()
        result = self._run(f"info {name}", do)
        log.debug("info %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)
        return result

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, value)`` in the order given; ``channels`` threads, each pipelining a batch.

        A batch of small values costs two round trips in all: every OPEN, then every FSTAT with the
        first READs of each value.
        """
        self._check_open()

        def batches() -> Iterator[builtins.list[tuple[str, str]]]:
            batch: builtins.list[tuple[str, str]] = []
            for name in names:
                batch.append((name, self._path(name)))
                if len(batch) >= _BATCH_ITEMS:
                    yield batch
                    batch = []
            if batch:
                yield batch

        def run(batch: builtins.list[tuple[str, str]]) -> builtins.list[tuple[str, bytes | Exception]]:
            t0 = time.perf_counter()
            result = self._run("load_many", lambda sftp, attempt: self._load_batch(sftp, batch))
            log.debug(
                "load_many: %d items, %d bytes in %.3f ms",
                len(result),
                sum(len(v) for _, v in result if isinstance(v, bytes)),
                (time.perf_counter() - t0) * 1e3,
            )
            return result

        for result in self._map(run, batches()):
            for name, value in result:
                if isinstance(value, Exception):
                    raise value
                yield name, value

    def _load_batch(
        self, sftp: Any, batch: builtins.list[tuple[str, str]]
    ) -> builtins.list[tuple[str, bytes | Exception]]:
        opens = [sftp._async_request(type(None), CMD_OPEN, path, SFTP_FLAG_READ, SFTPAttributes()) for _, path in batch]
        handles: builtins.list[bytes | None] = []
        errors: dict[int, Exception] = {}
        for i, num in enumerate(opens):
            try:
                handles.append(_answer(sftp, num, CMD_HANDLE, "handle").get_binary())
            except OSError as e:
                if _is_connection_lost(e):
                    raise
                handles.append(None)
                errors[i] = (
                    PermissionDenied(f"{batch[i][0]}: {e}")
                    if isinstance(e, PermissionError)
                    else (ObjectNotFound(batch[i][0]))
                )
        step = self._read_size
        requests: builtins.list[tuple[int, int, builtins.list[int]]] = []
        for i, handle in enumerate(handles):
            if handle is not None:
                n_stat = sftp._async_request(type(None), CMD_FSTAT, handle)
                reads = [
                    sftp._async_request(type(None), CMD_READ, handle, int64(off), step)
                    for off in range(0, max(_FIRST_READ_BYTES, step), step)
                ]
                requests.append((i, n_stat, reads))
        values: dict[int, bytes] = {}
        firsts: dict[int, tuple[int, bytes]] = {}
        try:
            for i, n_stat, reads in requests:
                st = _attributes(sftp, n_stat)
                pieces, _ = _first_pieces(sftp, [(num, step) for num in reads])
                if stat.S_ISDIR(st.st_mode or 0):
                    errors[i] = ObjectNotFound(f"{batch[i][0]} is a directory")
                    continue
                firsts[i] = (st.st_size or 0, b"".join(pieces))
            # only now, with every answer of the batch in, read the rest of larger values
            for i, (size, first) in firsts.items():
                buf = bytearray(first)
                if len(buf) < size:
                    handle = handles[i]
                    assert handle is not None
                    for piece in _pieces(sftp, handle, len(buf), size - len(buf), step):
                        buf += piece
                if len(buf) < size:
                    errors[i] = ReadRangeError(f"{batch[i][0]}: item changed while reading")
                    continue
                values[i] = bytes(buf[:size])
        finally:
            for handle in handles:  # CLOSE without waiting for the answers
                if handle is not None:
                    try:
                        sftp._async_request(type(None), CMD_CLOSE, handle)
                    except Exception:
                        break
        # an error stands in the place of its item, so load_many yields the items before it first
        return [(name, errors[i] if i in errors else values[i]) for i, (name, _) in enumerate(batch)]

    def _open_read(self, sftp: Any, name: str, path: str) -> Any:
        try:
            f = sftp.open(path, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(name) from None
        except OSError as e:
            if not _is_connection_lost(e) and not isinstance(e, PermissionError):
                raise ObjectNotFound(f"{name}: {e}") from None  # e.g. a directory
            raise
        return f

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        self._check_open()
        path = self._path(name)

        def do(sftp: Any, attempt: int) -> bytes:
            f = self._open_read(sftp, name, path)
            try:
                # FSTAT and the first READ in flight together: a small value costs two round trips
                step = f.MAX_REQUEST_SIZE
                n_stat = sftp._async_request(type(None), CMD_FSTAT, f.handle)
                reads: list[tuple[int, int]] = []
                if offset >= 0 and size != 0:
                    # speculative READs: a value up to _FIRST_READ_BYTES arrives with the FSTAT
                    first = max(_FIRST_READ_BYTES, step)
                    want = first if size is None else min(size, first)
                    for off in range(offset, offset + want, step):
                        n = min(step, offset + want - off)
                        reads.append((sftp._async_request(type(None), CMD_READ, f.handle, int64(off), n), n))
                st = _attributes(sftp, n_stat)
                pieces, error = _first_pieces(sftp, reads)
                if error is not None and not stat.S_ISDIR(st.st_mode or 0):
                    raise error
                first = b"".join(pieces)
                if stat.S_ISDIR(st.st_mode or 0):
                    raise ObjectNotFound(f"{name} is a directory")
                start, length = resolve_range(st.st_size or 0, offset, size)
                if len(first) >= length:
                    return bytes(first[:length])
                buf = bytearray(first)
                for piece in _pieces(sftp, f.handle, start + len(buf), length - len(buf), self._read_size):
                    buf += piece
                if len(buf) < length:  # replaced or truncated while we read
                    raise ReadRangeError(f"{name}: item changed while reading ({len(buf)} of {length} bytes)")
                return bytes(buf[:length])
            finally:
                # CLOSE without waiting for its answer (paramiko drops it when it arrives)
                if not f._closed and not sftp.sock.closed:
                    f._closed = True
                    try:
                        sftp._async_request(type(None), CMD_CLOSE, f.handle)
                    except Exception:
                        pass

        t0 = time.perf_counter()
        result = self._run(f"load {name}", do)
        log.debug("load %s: %d bytes in %.3f ms", name, len(result), (time.perf_counter() - t0) * 1e3)
        return result

    @staticmethod
    def _open_handle(sftp: Any, path: str) -> bytes:
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
        t, msg = sftp._request(CMD_OPEN, path, flags, SFTPAttributes())
        if t != CMD_HANDLE:
            raise SFTPError("Expected handle")
        return msg.get_binary()  # type: ignore[no-any-return]

    def _put(self, sftp: Any, path: str, tmp: str, chunks: Iterable[bytes | memoryview]) -> None:
        """Write ``chunks`` to ``tmp`` with up to _WRITE_REQUESTS WRITEs in flight, then CLOSE it.

        On servers that handle a channel's requests strictly in order (OpenSSH's sftp-server) the
        CLOSE goes out right behind the last WRITE, so a small value costs two round trips (OPEN,
        then WRITE+CLOSE). Every answer is checked before the caller renames the file into place.
        """
        try:
            handle = self._open_handle(sftp, tmp)
        except FileNotFoundError:
            self._mkdirs(sftp, path.rsplit("/", 1)[0])
            handle = self._open_handle(sftp, tmp)
        step = self._read_size  # OpenSSH takes WRITEs as large as its READs
        pending: deque[int] = deque()
        error: OSError | None = None

        def settle(num: int) -> None:
            nonlocal error
            try:
                sftp._read_response(num)
            except OSError as e:
                if _is_connection_lost(e):
                    raise
                error = error or e

        offset = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                for pos in range(0, len(view), step):
                    piece = bytes(view[pos : pos + step])
                    pending.append(sftp._async_request(type(None), CMD_WRITE, handle, int64(offset), piece))
                    offset += len(piece)
                    if len(pending) >= max(4, _WRITE_AHEAD // step):
                        settle(pending.popleft())
                if error is not None:
                    break
            if not self._in_order_server:
                while pending:
                    settle(pending.popleft())
        finally:
            pending.append(sftp._async_request(type(None), CMD_CLOSE, handle))
            while pending:
                settle(pending.popleft())
        if error is not None:
            raise error

    def _write_tmp(self, sftp: Any, path: str, chunks: Callable[[], Iterable[bytes | memoryview]]) -> None:
        """Write ``chunks()`` to a temp file next to ``path``, then rename it into place."""
        tmp = f"{path}.{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            self._put(sftp, path, tmp, chunks())
            try:
                self._rename(sftp, tmp, path)
            except OSError as e:
                if _is_connection_lost(e):
                    raise
                try:
                    st = sftp.stat(path)
                except OSError:
                    raise e from None
                if stat.S_ISDIR(st.st_mode or 0):
                    raise ObjectNotFound(f"{path[len(self._root) + 1 :]} is a directory") from None
                raise
        except BaseException as e:
            if not _is_connection_lost(e):
                try:
                    sftp.remove(tmp)
                except Exception:
                    pass
            raise

    def store(self, name: str, value: Value) -> None:
        self._check_open()
        path = self._path(name)
        view = as_bytes_view(value)
        t0 = time.perf_counter()
        self._run(f"store {name}", lambda sftp, attempt: self._write_tmp(sftp, path, lambda: (view,)))
        log.debug("store %s: %d bytes in %.3f ms", name, len(view), (time.perf_counter() - t0) * 1e3)

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        """Store many values on ``channels`` threads; on OpenSSH each thread pipelines a batch.

        A batch of small values costs three round trips in all (the OPENs, then every WRITE and
        CLOSE, then the renames), instead of three per value. Each value is still written to a temp
        file and renamed into place only after its WRITEs and CLOSE succeeded.
        """
        self._check_open()
        pairs = items.items() if isinstance(items, Mapping) else items
        t0 = time.perf_counter()
        count = 0
        volume = 0

        def batches() -> Iterator[builtins.list[tuple[str, memoryview]]]:
            nonlocal count, volume
            batch: builtins.list[tuple[str, memoryview]] = []
            size = 0
            for name, value in pairs:
                view = as_bytes_view(value)
                if len(view) >= _BATCH_BYTES:  # a large value goes alone, streamed
                    count += 1
                    volume += len(view)
                    yield [(self._path(name), view)]
                    continue
                batch.append((self._path(name), view))
                size += len(view)
                count += 1
                volume += len(view)
                if len(batch) >= _BATCH_ITEMS or size >= _BATCH_BYTES:
                    yield batch
                    batch, size = [], 0
            if batch:
                yield batch

        for _ in self._map(
            lambda batch: self._run("store_many", lambda sftp, a: self._store_batch(sftp, batch)), batches()
        ):
            pass
        log.debug("store_many: %d items, %d bytes in %.3f ms", count, volume, (time.perf_counter() - t0) * 1e3)

    def _store_batch(self, sftp: Any, batch: builtins.list[tuple[str, memoryview]]) -> None:
        if not self._in_order_server or len(batch) == 1:
            for path, view in batch:
                self._write_tmp(sftp, path, lambda v=view: (v,))  # type: ignore[misc]
            return
        tmps = [f"{path}.{secrets.token_hex(4)}{TMP_SUFFIX}" for path, _ in batch]
        flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
        opens = [sftp._async_request(type(None), CMD_OPEN, tmp, flags, SFTPAttributes()) for tmp in tmps]
        handles: builtins.list[bytes | None] = []
        failed: dict[int, OSError] = {}
        for num in opens:
            try:
                handles.append(_answer(sftp, num, CMD_HANDLE, "handle").get_binary())
            except OSError as e:
                if _is_connection_lost(e):
                    raise
                handles.append(None)  # e.g. a missing directory: stored one by one below
        step = self._read_size
        writes: builtins.list[tuple[int, int]] = []
        for i, ((_, view), handle) in enumerate(zip(batch, handles, strict=True)):
            if handle is None:
                continue
            for off in range(0, len(view), step):
                piece = bytes(view[off : off + step])
                writes.append((i, sftp._async_request(type(None), CMD_WRITE, handle, int64(off), piece)))
            writes.append((i, sftp._async_request(type(None), CMD_CLOSE, handle)))
        _note_failures(sftp, writes, failed)
        renames = [
            (i, sftp._async_request(type(None), CMD_EXTENDED, "posix-rename@openssh.com", tmps[i], batch[i][0]))
            for i, handle in enumerate(handles)
            if handle is not None and i not in failed
        ]
        _note_failures(sftp, renames, failed)
        for i in failed:
            try:
                sftp.remove(tmps[i])
            except OSError as e:
                if _is_connection_lost(e):
                    raise
        # what the pipeline could not do (missing directories, a failed rename) goes the careful way,
        # which creates directories and raises the precise error
        error: Exception | None = None
        for i, handle in enumerate(handles):
            if handle is None or i in failed:
                path, view = batch[i]
                try:
                    self._write_tmp(sftp, path, lambda v=view: (v,))  # type: ignore[misc]
                except Exception as e:
                    if _is_connection_lost(e):
                        raise
                    error = error or e  # the others of the batch are still stored
        if error is not None:
            raise error

    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        self._check_open()
        path = self._path(name)
        start = file.tell() if file.seekable() else None
        total = 0

        def chunks() -> Iterator[bytes]:
            nonlocal total
            total = 0
            while size is None or total < size:
                chunk = file.read(CHUNK_SIZE if size is None else min(CHUNK_SIZE, size - total))
                if not chunk:
                    break
                total += len(chunk)
                yield chunk

        def do(sftp: Any, attempt: int) -> None:
            if attempt:
                assert start is not None
                file.seek(start)
            self._write_tmp(sftp, path, chunks)

        t0 = time.perf_counter()
        self._run(f"store_file {name}", do, retry=start is not None)
        log.debug("store_file %s: %d bytes in %.3f ms", name, total, (time.perf_counter() - t0) * 1e3)

    def load_file(self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None) -> int:
        self._check_open()
        path = self._path(name)
        written = 0
        rng: tuple[int, int] | None = None

        def do(sftp: Any, attempt: int) -> int:
            nonlocal written, rng
            with self._open_read(sftp, name, path) as f:
                if rng is None:
                    st = f.stat()
                    if stat.S_ISDIR(st.st_mode or 0):
                        raise ObjectNotFound(f"{name} is a directory")
                    rng = resolve_range(st.st_size or 0, offset, size)
                start, length = rng
                # resume where a broken connection left us
                buf = bytearray()
                for piece in _pieces(sftp, f.handle, start + written, length - written, self._read_size):
                    buf += piece
                    if len(buf) >= _WRITE_BATCH:
                        file.write(buf)
                        written += len(buf)
                        buf = bytearray()
                if buf:
                    file.write(buf)
                    written += len(buf)
                if written < length:
                    raise ReadRangeError(f"{name}: item shrank while reading at {start + written}")
            return written

        t0 = time.perf_counter()
        result = self._run(f"load_file {name}", do)
        log.debug("load_file %s: %d bytes in %.3f ms", name, result, (time.perf_counter() - t0) * 1e3)
        return result

    def open_reader(self, name: str) -> BinaryIO:
        """A readable stream of ``name`` on an SFTP channel of its own (outside the pool) until closed.

        Reads are pipelined like load_file's. A reader does not survive a lost connection.
        """
        self._check_open()
        path = self._path(name)
        try:
            ch = self._open_channel()
        except BaseException as e:
            if _is_connection_lost(e):
                raise BackendConnectionError(f"{self!r}: open_reader {name}: {e}") from e
            raise
        with self._lock:  # not a pooled channel: do not count it against the pool
            if ch.gen == self._gens[ch.conn]:
                self._channel_count[ch.conn] -= 1
        try:
            f = self._open_read(ch.sftp, name, path)
            st = f.stat()
            if stat.S_ISDIR(st.st_mode or 0):
                f.close()
                raise ObjectNotFound(f"{name} is a directory")
        except BaseException as e:
            _quiet_close(ch.sftp)
            if _is_connection_lost(e):
                raise BackendConnectionError(f"{self!r}: open_reader {name}: {e}") from e
            raise
        raw = _SFTPReader(ch.sftp, f, _pieces(ch.sftp, f.handle, 0, st.st_size or 0, self._read_size))
        return io.BufferedReader(raw, buffer_size=CHUNK_SIZE)

    def delete(self, name: str) -> None:
        self._check_open()
        path = self._path(name)

        def do(sftp: Any, attempt: int) -> None:
            failure = _remove(
                sftp,
                sftp.remove,
                path,
                name,
                attempt,
                final=lambda e: _is_connection_lost(e) or isinstance(e, PermissionError),
            )
            if failure is None:
                return
            st, err = failure
            if stat.S_ISDIR(st.st_mode or 0):
                raise ObjectNotFound(f"{name} is a directory, not an item")
            raise err

        t0 = time.perf_counter()
        self._run(f"delete {name}", do)
        log.debug("delete %s: %.3f ms", name, (time.perf_counter() - t0) * 1e3)

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        src = self._path(curr_name)
        dst = self._path(new_name)

        def do(sftp: Any, attempt: int) -> None:
            try:
                self._rename(sftp, src, dst)
                return
            except FileNotFoundError:
                pass
            try:
                sftp.stat(src)
            except FileNotFoundError:
                if attempt:
                    try:
                        sftp.stat(dst)
                        return  # the attempt before the connection broke did it
                    except FileNotFoundError:
                        pass
                raise ObjectNotFound(curr_name) from None
            self._mkdirs(sftp, dst.rsplit("/", 1)[0])
            try:
                self._rename(sftp, src, dst)
            except FileNotFoundError:
                raise ObjectNotFound(curr_name) from None

        t0 = time.perf_counter()
        self._run(f"move {curr_name}", do)
        log.debug("move %s -> %s: %.3f ms", curr_name, new_name, (time.perf_counter() - t0) * 1e3)

    def _listdir(self, name: str) -> list[ItemInfo]:
        path = self._path(name, allow_root=True)

        def do(sftp: Any, attempt: int) -> list[Any]:
            try:
                return list(sftp.listdir_attr(path))
            except FileNotFoundError:
                raise ObjectNotFound(name) from None
            except OSError as e:
                if _is_connection_lost(e) or isinstance(e, PermissionError):
                    raise
                raise ObjectNotFound(f"{name}: {e}") from None  # not a directory

        entries = self._run(f"list {name}", do)
        items = []
        for e in entries:
            if not is_listable(e.filename):
                continue
            is_dir = stat.S_ISDIR(e.st_mode or 0)
            items.append(
                ItemInfo(e.filename, True, 0 if is_dir else (e.st_size or 0), is_dir, e.st_atime or 0, e.st_mtime or 0)
            )
        items.sort(key=lambda i: i.name)
        return items

    def list(self, name: str) -> Iterator[ItemInfo]:
        self._check_open()
        t0 = time.perf_counter()
        items = self._listdir(name)
        log.debug("list %s: %d entries in %.3f ms", name, len(items), (time.perf_counter() - t0) * 1e3)
        yield from items

    def list_recursive(self, name: str) -> Iterator[ItemInfo]:
        """All items below ``name``, listing the directories of each level concurrently."""
        self._check_open()
        t0 = time.perf_counter()
        found: list[ItemInfo] = []
        level = [""]
        top = self._listdir(name)
        with ThreadPoolExecutor(max_workers=self.channels, thread_name_prefix="unistore-sftp-list") as pool:
            current = [("", top)]
            while current:
                subdirs = []
                for prefix, entries in current:
                    for item in entries:
                        rel = join(prefix, item.name)
                        if item.directory:
                            subdirs.append(rel)
                        else:
                            found.append(item._replace(name=rel))
                level = subdirs
                listings = pool.map(lambda d: self._listdir_missing_ok(join(name, d)), level)
                current = list(zip(level, listings, strict=True))
        found.sort(key=lambda i: i.name.split("/"))
        log.debug("list_recursive %s: %d items in %.3f ms", name, len(found), (time.perf_counter() - t0) * 1e3)
        yield from found

    def _listdir_missing_ok(self, name: str) -> builtins.list[ItemInfo]:
        try:
            return self._listdir(name)
        except ObjectNotFound:
            return []  # removed while we were listing

    def quota(self) -> dict[str, int]:
        return {"limit": -1, "usage": -1}


def _remove(
    sftp: Any,
    remove: Callable[[str], object],
    path: str,
    name: str,
    attempt: int,
    final: Callable[[OSError], bool] = lambda e: False,
) -> tuple[Any, OSError] | None:
    """``remove(path)`` (rmdir or remove); None when done, else the stat of ``path`` and the error,
    for the caller to tell what stands in the way. An error ``final`` says is raised as it is.

    ObjectNotFound if nothing is at ``path``, unless on a retry (``attempt``): then the attempt
    before the connection broke did it.
    """
    try:
        remove(path)
        return None
    except FileNotFoundError:
        if attempt:
            return None
        raise ObjectNotFound(name) from None
    except OSError as e:
        if final(e):
            raise
        err = e
    try:
        return sftp.stat(path), err
    except FileNotFoundError:
        raise ObjectNotFound(name) from None


def _answer(sftp: Any, num: int, expected: int, what: str) -> Any:
    """The message answering pipelined request ``num``, which must be of type ``expected``."""
    t, msg = sftp._read_response(num)
    if t != expected:
        raise SFTPError(f"Expected {what}")
    return msg


def _attributes(sftp: Any, num: int) -> Any:
    """The SFTPAttributes answering a pipelined FSTAT ``num``."""
    return cast(Any, SFTPAttributes)._from_msg(_answer(sftp, num, CMD_ATTRS, "attributes"))


def _first_pieces(sftp: Any, reads: Iterable[tuple[int, int]]) -> tuple[list[bytes], OSError | None]:
    """The answers to speculative READs ``(request, size)`` up to the first short piece or EOF, and
    the first error among them (a connection lost is raised).

    After a short piece or EOF later pieces are not contiguous (the caller reads them again), but
    every answer is still taken off the channel.
    """
    pieces = []
    ended = False
    error: OSError | None = None
    for num, n in reads:
        try:
            msg = _answer(sftp, num, CMD_DATA, "data")
            if not ended:
                piece = msg.get_string()
                pieces.append(piece)
                ended = len(piece) < n
        except EOFError:  # SFTP status EOF: reading at or past the end
            ended = True
        except OSError as e:
            if _is_connection_lost(e):
                raise
            ended = True
            error = error or e
    return pieces, error


def _note_failures(sftp: Any, requests: Iterable[tuple[int, int]], failed: dict[int, OSError]) -> None:
    """Take the answers to pipelined requests ``(item, request)``; the first error of each item goes
    into ``failed`` (a connection lost is raised)."""
    for i, num in requests:
        try:
            sftp._read_response(num)
        except OSError as e:
            if _is_connection_lost(e):
                raise
            failed.setdefault(i, e)


def _pieces(sftp: Any, handle: bytes, start: int, length: int, step: int) -> Iterator[bytes]:
    """Read ``length`` bytes from ``start`` of an open handle, with several READs in flight.

    The requests are sent and answered in this thread (paramiko's prefetch thread can make the
    reader spin while the thread registers its requests, and its request limit polls with sleeps).
    READs ask for ``step`` bytes; a server that answers with less (its own limit) is then asked for
    that much. Stops at the end of the file.
    """
    end = start + length
    pending: deque[tuple[int, int, int]] = deque()
    offset = start
    while offset < end or pending:
        while offset < end and len(pending) < max(4, _READ_AHEAD // step):
            n = min(step, end - offset)
            pending.append((sftp._async_request(type(None), CMD_READ, handle, int64(offset), n), offset, n))
            offset += n
        num, at, n = pending.popleft()
        try:
            msg = _answer(sftp, num, CMD_DATA, "data")
        except EOFError:
            return
        piece = msg.get_string()
        if not piece:
            return
        yield piece
        if len(piece) < n:
            # a short read: the server's limit (or the end of a file that shrank): go on from there
            # with requests of that size; answers still on their way are dropped when they arrive
            step = len(piece)
            pending.clear()
            offset = at + len(piece)


class _SFTPReader(io.RawIOBase):
    """A raw binary stream over pipelined READs; closing it closes the file and its channel."""

    def __init__(self, sftp: Any, f: Any, pieces: Iterator[bytes]):
        self._sftp = sftp
        self._f = f
        self._pieces = pieces
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._left:
            try:
                self._left = next(self._pieces)
            except StopIteration:
                return 0
            except OSError as e:
                if _is_connection_lost(e):
                    raise BackendConnectionError(f"sftp reader: connection lost: {e}") from e
                raise
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            _quiet_close(self._f)
            _quiet_close(self._sftp)
        super().close()


def _quiet_close(obj: Any) -> None:
    try:
        obj.close()
    except Exception:
        pass
