"""An SFTP server on 127.0.0.1 that answers pipelined requests out of order (the SFTP spec allows it).

Built from paramiko's server classes: an SSH server (``paramiko.Transport`` in server mode, public-key
authentication with the client key of :class:`~tests.servers.sshd.SFTPServer`) whose ``sftp``
subsystem serves a local directory. Each channel holds back its replies while the client keeps
sending, then sends them in reverse order, so every pipelined batch comes back reordered. It
records the most requests it ever saw in flight on one channel (``stats.max_in_flight``): 1 means
the client never pipelined.

The server processes requests in the order it receives them (as OpenSSH does), so a client may
still send a CLOSE right behind its WRITEs; only the replies are reordered. With ``openssh_banner``
it announces itself as OpenSSH, so that clients take their OpenSSH-only pipelined paths.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import paramiko
from paramiko.sftp import CMD_VERSION

from tests.servers.sshd import SFTPServer


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.max_in_flight = 0
        self.reordered = 0  # batches of more than one reply sent in reverse order

    def reset(self) -> None:
        with self.lock:
            self.max_in_flight = 0
            self.reordered = 0


class _Handle(paramiko.SFTPHandle):
    def stat(self) -> Any:
        f = getattr(self, "readfile", None) or self.writefile
        return paramiko.SFTPAttributes.from_stat(os.fstat(f.fileno()))

    def chattr(self, attr: Any) -> int:
        return paramiko.SFTP_OK


class _Files(paramiko.SFTPServerInterface):
    """The served directory: paths are relative to ``root`` ("/" is the root)."""

    def __init__(self, server: Any, root: Path, stats: Stats):
        super().__init__(server)
        self.root = str(root)
        self.stats = stats

    def _local(self, path: str) -> str:
        return self.root + self.canonicalize(path)

    def canonicalize(self, path: str) -> str:
        return os.path.normpath("/" + path).replace("//", "/")

    def _call(self, func: Any, *args: Any) -> Any:
        try:
            return func(*args)
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)

    def list_folder(self, path: str) -> Any:
        def do() -> Any:
            local = self._local(path)
            return [paramiko.SFTPAttributes.from_stat(os.lstat(os.path.join(local, n)), n) for n in os.listdir(local)]

        return self._call(do)

    def stat(self, path: str) -> Any:
        return self._call(lambda: paramiko.SFTPAttributes.from_stat(os.stat(self._local(path))))

    def lstat(self, path: str) -> Any:
        return self._call(lambda: paramiko.SFTPAttributes.from_stat(os.lstat(self._local(path))))

    def open(self, path: str, flags: int, attr: Any) -> Any:
        def do() -> Any:
            fd = os.open(self._local(path), flags | getattr(os, "O_BINARY", 0), 0o644)
            if flags & os.O_WRONLY:
                mode = "wb"
            elif flags & os.O_RDWR:
                mode = "r+b"
            else:
                mode = "rb"
            f = os.fdopen(fd, mode)
            h = _Handle(flags)
            h.filename = path
            h.readfile = f
            h.writefile = f
            return h

        return self._call(do)

    def remove(self, path: str) -> Any:
        return self._call(lambda: os.remove(self._local(path)) or paramiko.SFTP_OK)

    def rename(self, oldpath: str, newpath: str) -> Any:
        def do() -> Any:
            if os.path.exists(self._local(newpath)):
                return paramiko.SFTP_FAILURE  # SFTP v3 rename does not replace
            os.rename(self._local(oldpath), self._local(newpath))
            return paramiko.SFTP_OK

        return self._call(do)

    def posix_rename(self, oldpath: str, newpath: str) -> Any:
        return self._call(lambda: os.rename(self._local(oldpath), self._local(newpath)) or paramiko.SFTP_OK)

    def mkdir(self, path: str, attr: Any) -> Any:
        return self._call(lambda: os.mkdir(self._local(path)) or paramiko.SFTP_OK)

    def rmdir(self, path: str) -> Any:
        return self._call(lambda: os.rmdir(self._local(path)) or paramiko.SFTP_OK)

    def chattr(self, path: str, attr: Any) -> Any:
        return paramiko.SFTP_OK


class _ReorderingSFTP(paramiko.SFTPServer):
    """paramiko's SFTP server, holding replies back while requests keep coming, then reversing them."""

    #: how long to wait for more requests before the held replies go out
    quiet = 0.003

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._held: list[tuple[int, Any]] = []
        self._stats: Stats = self.server.stats

    def _send_packet(self, t: int, packet: Any) -> None:
        if t == CMD_VERSION:
            super()._send_packet(t, packet)
            return
        self._held.append((t, packet))
        with self._stats.lock:
            self._stats.max_in_flight = max(self._stats.max_in_flight, len(self._held))
        if len(self._held) >= 256:
            self._flush()

    def _flush(self) -> None:
        held, self._held = self._held, []
        if len(held) > 1:
            with self._stats.lock:
                self._stats.reordered += 1
        for t, packet in reversed(held):
            super()._send_packet(t, packet)

    def _read_packet(self) -> Any:
        if self._held:
            deadline = time.monotonic() + self.quiet
            while not self.sock.recv_ready() and time.monotonic() < deadline:
                time.sleep(0.0002)
            if not self.sock.recv_ready():
                self._flush()
        return super()._read_packet()


class _Auth(paramiko.ServerInterface):
    def __init__(self, key: paramiko.PKey):
        self.key = key

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL if key == self.key else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class ReorderingSFTPServer(SFTPServer):
    """The server above, with the client key, known_hosts and data directory of SFTPServer."""

    kind = "reorder-sftpd"

    def __init__(self, base: Path, *, openssh_banner: bool = True):
        super().__init__(base)
        self.openssh_banner = openssh_banner
        self.stats = Stats()
        self._listener: socket.socket | None = None
        self._transports: list[paramiko.Transport] = []

    def abs_path(self, path: str) -> str:
        return "/" + path

    def start(self) -> None:
        host_key = paramiko.Ed25519Key.from_private_key_file(str(self.host_key_file))
        client_key = paramiko.Ed25519Key.from_private_key_file(str(self.client_key))
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        self._listener = listener

        def serve() -> None:
            while True:
                try:
                    sock, _ = listener.accept()
                except OSError:
                    return
                t = paramiko.Transport(sock)
                if self.openssh_banner:
                    t.local_version = "SSH-2.0-OpenSSH_9.9 unistore-reordering-test-server"
                t.add_server_key(host_key)
                t.set_subsystem_handler("sftp", _ReorderingSFTP, _Files, self.data, self.stats)
                t.start_server(server=_Auth(client_key))
                self._transports.append(t)

        threading.Thread(target=serve, name="reorder-sftpd", daemon=True).start()

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for t in self._transports:
            t.close()
        self._transports.clear()
