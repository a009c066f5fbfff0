"""SSH connections and the pool of SFTP channels over them.

``channels`` channels are spread over ``connections`` SSH connections, each made when first needed.
A call borrows a channel; a channel that saw its connection die is handed back ``broken``, which
drops that connection (the other channels on it notice by its generation number), and the next
call that needs one makes a new connection. Nothing here retries: RetryLayer does.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any, cast

import paramiko

from ...errors import BackendConnectionError, CredentialsError
from .config import Settings, host_key_entry
from .protocol import Channel, ChannelLost

log = logging.getLogger("unistore.backends.sftp")

#: SSH channel window and maximum packet size we offer (paramiko: 2 MiB / 32 KiB): fewer packets
#: and no stalls waiting for window adjustments while streaming
_WINDOW_SIZE = 16 * 1024 * 1024
_MAX_PACKET_SIZE = 256 * 1024


def _connect_error(s: Settings, e: BaseException) -> Exception:
    """The typed error for a failed connection set-up."""
    where = f"{s.user + '@' if s.user else ''}{s.hostname}:{s.port}"
    if isinstance(e, CredentialsError):
        return e
    if isinstance(e, paramiko.BadHostKeyException):
        return CredentialsError(
            f"the SSH host key of {s.hostname}:{s.port} does not match the known one "
            f"(got {e.key.get_name()} {e.key.fingerprint}): refusing to connect"
        )
    if isinstance(e, paramiko.AuthenticationException):
        return CredentialsError(f"SSH authentication to {where} failed: {e}")
    if isinstance(e, paramiko.SSHException) and "authentication methods" in str(e).lower():
        # paramiko found nothing it could offer that the server accepts (no key, agent or password)
        return CredentialsError(f"SSH authentication to {where} failed: {e}")
    return BackendConnectionError(f"cannot connect to {where}: {type(e).__name__}: {e}")


class Pool:
    """Channels for one backend instance; thread-safe."""

    def __init__(self, settings: Settings):
        self.settings = settings
        n = settings.connections
        self._lock = threading.Lock()
        self._clients: list[Any] = [None] * n
        self._gens = [0] * n
        self._counts = [0] * n
        self._idle: list[Channel] = []
        self._slots = threading.BoundedSemaphore(settings.channels)
        self.active = False
        #: SSH connections made so far (a reconnect makes one more)
        self.connects = 0
        #: the server's SSH version string, e.g. "SSH-2.0-OpenSSH_9.2p1" (set by the first connection)
        self.remote_version = ""

    # ----------------------------------------------------------------- connections
    def _connect(self) -> Any:
        s = self.settings
        client = paramiko.SSHClient()
        try:
            if s.known_hosts:
                for f in s.known_hosts:
                    if os.path.exists(f):
                        client.load_system_host_keys(f)
            else:
                client.load_system_host_keys()
            if s.host_key is not None:
                client.get_host_keys().add(host_key_entry(s.hostname, s.port), s.host_key.get_name(), s.host_key)
            client.set_missing_host_key_policy(s.missing_host_key_policy())
            client.connect(
                s.hostname,
                port=s.port,
                username=s.user,
                password=s.password.reveal() if s.password else None,
                key_filename=cast(Any, s.key_filename),
                passphrase=s.passphrase.reveal() if s.passphrase else None,
                allow_agent=s.allow_agent,
                look_for_keys=s.look_for_keys,
                timeout=s.connect_timeout,
                banner_timeout=s.connect_timeout,
                auth_timeout=s.connect_timeout,
                channel_timeout=s.connect_timeout,
                sock=cast(Any, paramiko.ProxyCommand(s.proxy_command) if s.proxy_command else None),
            )
            transport = client.get_transport()
            assert transport is not None
            if s.keepalive:
                transport.set_keepalive(s.keepalive)
            transport.default_window_size = _WINDOW_SIZE
            transport.default_max_packet_size = _MAX_PACKET_SIZE
            self.remote_version = transport.remote_version
        except BaseException as e:
            client.close()
            if isinstance(e, Exception):
                raise _connect_error(s, e) from None
            raise
        self.connects += 1
        log.debug("connected to %s:%d (%s)", s.hostname, s.port, self.remote_version)
        return client

    def _drop_locked(self, conn: int | None = None) -> None:
        """Close connection ``conn`` (all when None) and its idle channels; busy ones notice by gen."""
        for i in range(len(self._clients)) if conn is None else (conn,):
            self._gens[i] += 1
            self._counts[i] = 0
            keep = []
            for ch in self._idle:
                if ch.conn == i:
                    ch.close()
                else:
                    keep.append(ch)
            self._idle = keep
            client, self._clients[i] = self._clients[i], None
            if client is not None:
                try:
                    client.close()
                except Exception:
                    pass

    def close(self) -> None:
        with self._lock:
            self.active = False
            self._drop_locked()

    # ----------------------------------------------------------------- channels
    def open_channel(self, *, pooled: bool = True) -> Channel:
        """A new channel (a connection is made if its slot has none, or a dead one)."""
        with self._lock:
            conn = min(range(len(self._clients)), key=lambda i: self._counts[i])
            client = self._clients[conn]
            if client is not None:
                transport = client.get_transport()
                if transport is None or not transport.is_active():
                    self._drop_locked(conn)
                    client = None
            if client is None:
                client = self._clients[conn] = self._connect()
            gen = self._gens[conn]
            if pooled:
                self._counts[conn] += 1
        try:
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.settings.timeout)
        except BaseException as e:
            with self._lock:
                if gen == self._gens[conn]:
                    if pooled:
                        self._counts[conn] -= 1
                    if isinstance(e, paramiko.SSHException | OSError | EOFError):
                        self._drop_locked(conn)
            if isinstance(e, paramiko.SSHException | OSError | EOFError):
                raise BackendConnectionError(f"cannot open an SFTP channel: {type(e).__name__}: {e}") from None
            raise
        return Channel(sftp, conn, gen, pipeline=self.settings.pipeline)

    def acquire(self) -> Channel:
        # every call that holds a channel is bounded by the timeouts, so this wait is bounded too
        self._slots.acquire()
        try:
            with self._lock:
                while self._idle:
                    ch = self._idle.pop()
                    if ch.gen == self._gens[ch.conn] and not ch.closed:
                        return ch
                    self._forget_locked(ch)
            return self.open_channel()
        except BaseException:
            self._slots.release()
            raise

    def _forget_locked(self, ch: Channel) -> None:
        ch.close()
        if ch.gen == self._gens[ch.conn]:
            self._counts[ch.conn] -= 1

    def release(self, ch: Channel, *, broken: bool = False) -> None:
        try:
            with self._lock:
                if broken:
                    self._forget_locked(ch)
                    if ch.gen == self._gens[ch.conn]:  # first to notice: drop that connection
                        self._drop_locked(ch.conn)
                elif ch.gen == self._gens[ch.conn] and self.active and ch.idle:
                    self._idle.append(ch)
                else:
                    self._forget_locked(ch)
        finally:
            self._slots.release()

    def idle_channels(self) -> list[Channel]:
        """The channels waiting in the pool (for tests and monitoring)."""
        with self._lock:
            return list(self._idle)


def lost(e: ChannelLost | socket.timeout, label: str, what: str) -> BackendConnectionError:
    return BackendConnectionError(f"{label}: {what} failed, connection lost ({e})")
