"""The SFTP wire protocol on one channel: every call into paramiko's private API is in this file.

paramiko's ``SFTPClient`` is used for the version handshake and then only as a packet pipe
(``_async_request`` to frame and send a request, ``_read_packet`` to read one reply). Replies are
collected by request id, so a server may answer pipelined requests in any order, as the SFTP
specification allows (paramiko's own ``_read_response`` drops every reply it did not wait for).

A request answered by a status other than OK raises :class:`StatusError` (an ``OSError`` with the
errno the status stands for, so :func:`unistore.backends.oserror.translate_oserror` can type it);
anything that means the channel or its connection is unusable raises :class:`ChannelLost`.
"""

from __future__ import annotations

import errno
import io
import struct
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_MKDIR,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_REALPATH,
    CMD_REMOVE,
    CMD_RENAME,
    CMD_RMDIR,
    CMD_STAT,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_BAD_MESSAGE,
    SFTP_EOF,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTP_NO_SUCH_FILE,
    SFTP_OK,
    SFTP_OP_UNSUPPORTED,
    SFTP_PERMISSION_DENIED,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from ...errors import BackendConnectionError
from ..oserror import translate_oserror

#: the largest offset an SFTP READ/WRITE can carry (servers treat it as a signed 64-bit number)
MAX_OFFSET = 2**63 - 1
WRITE_FLAGS = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC

# SFTP v3 has five status codes for every failure; servers that send errno text (rclone, Go's
# pkg/sftp) say more in the message, which we read back into an errno
_STATUS_ERRNO = {
    SFTP_NO_SUCH_FILE: errno.ENOENT,
    SFTP_PERMISSION_DENIED: errno.EACCES,
    SFTP_BAD_MESSAGE: errno.EBADMSG,
    SFTP_OP_UNSUPPORTED: errno.EOPNOTSUPP,
}
_TEXT_ERRNO = (
    ("no space left", errno.ENOSPC),
    ("quota exceeded", errno.EDQUOT),
    ("name too long", errno.ENAMETOOLONG),
    ("permission denied", errno.EACCES),
    ("read-only file system", errno.EROFS),
    ("directory not empty", errno.ENOTEMPTY),
    ("not a directory", errno.ENOTDIR),
    ("is a directory", errno.EISDIR),
    ("file exists", errno.EEXIST),
    ("already exists", errno.EEXIST),
    ("no such file", errno.ENOENT),
    ("not found", errno.ENOENT),
)


class StatusError(OSError):
    """The server answered a request with a failure status (the connection is fine)."""

    def __init__(self, code: int, text: str):
        low = text.lower()
        number = _STATUS_ERRNO.get(code)
        if number is None or number == errno.EBADMSG:
            number = next((n for word, n in _TEXT_ERRNO if word in low), number)
        super().__init__(number, text or f"SFTP status {code}")
        self.code = code


class ChannelLost(Exception):
    """The channel or its SSH connection is gone (closed, reset, timed out, garbled)."""


def _lost(e: BaseException) -> ChannelLost:
    return ChannelLost(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)


def unexpected(what: str) -> ChannelLost:
    return ChannelLost(f"the server sent an unexpected reply ({what})")


class Channel:
    """One SFTP channel. Not thread-safe: the pool hands it to one thread at a time."""

    def __init__(self, client: paramiko.SFTPClient, conn: int, gen: int, *, pipeline: bool = True):
        self._client: Any = client
        self.conn = conn
        self.gen = gen
        #: False: one request at a time (each waits for the answer to the one before)
        self.pipeline = pipeline
        self._pending: set[int] = set()  # sent, reply not read yet
        self._ignored: set[int] = set()  # sent, reply to be dropped
        self._replies: dict[int, tuple[int, Message]] = {}  # read, not yet claimed

    # ----------------------------------------------------------------- the channel itself
    @property
    def closed(self) -> bool:
        return bool(self._client.sock.closed)

    @property
    def transport(self) -> Any:
        return self._client.get_channel().get_transport()

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:
            pass

    @property
    def idle(self) -> bool:
        """No reply is outstanding except ignored ones (the channel may go back to the pool)."""
        return not self._pending and not self._replies

    # ----------------------------------------------------------------- requests and replies
    def send(self, t: int, *args: Any) -> int:
        """Send request ``t``; return its id, whose reply :meth:`reply` returns."""
        if not self.pipeline:
            while self._pending or self._ignored:
                self._read_one()
        try:
            num: int = self._client._async_request(type(None), t, *args)
        except struct.error as e:  # a number the protocol cannot carry
            raise ValueError(f"SFTP request argument out of range: {e}") from None
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise _lost(e) from e
        self._client._expecting.pop(num, None)  # we collect replies ourselves
        self._pending.add(num)
        return num

    def ignore(self, num: int) -> None:
        """The reply to ``num`` is not needed: drop it when it arrives."""
        if self._replies.pop(num, None) is None and num in self._pending:
            self._pending.discard(num)
            self._ignored.add(num)

    def _read_one(self) -> None:
        try:
            t, data = self._client._read_packet()
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as e:
            raise _lost(e) from e
        msg = Message(data)
        num = msg.get_int()
        if num in self._ignored:
            self._ignored.discard(num)
        elif num in self._pending:
            self._pending.discard(num)
            self._replies[num] = (t, msg)
        else:
            raise unexpected(f"a reply to request {num}, which was never sent")

    def reply(self, num: int) -> tuple[int, Message]:
        """The reply to request ``num``, whatever order the server answers in; raises StatusError."""
        while num not in self._replies:
            if num not in self._pending:
                raise AssertionError(f"no SFTP request {num} is outstanding")
            self._read_one()
        t, msg = self._replies.pop(num)
        if t == CMD_STATUS:
            code = msg.get_int()
            text = msg.get_text()
            if code == SFTP_OK:
                return t, msg
            if code == SFTP_EOF:
                raise EOFError(text)
            raise StatusError(code, text)
        return t, msg

    def drain(self) -> None:
        """Read every outstanding reply (ignored ones included), so the channel is clean again."""
        while self._pending or self._ignored:
            self._read_one()
        self._replies.clear()

    def expect(self, num: int, kind: int) -> Message:
        t, msg = self.reply(num)
        if t != kind:
            raise unexpected(f"type {t} where {kind} was due")
        return msg

    def call(self, t: int, *args: Any) -> tuple[int, Message]:
        return self.reply(self.send(t, *args))

    # ----------------------------------------------------------------- operations
    def attributes(self, num: int) -> SFTPAttributes:
        """The attributes answering a STAT/LSTAT/FSTAT request ``num``."""
        return SFTPAttributes._from_msg(self.expect(num, CMD_ATTRS))  # type: ignore[attr-defined,no-any-return]

    def stat_request(self, path: str) -> int:
        return self.send(CMD_STAT, path)

    def stat(self, path: str) -> SFTPAttributes:
        return self.attributes(self.send(CMD_STAT, path))

    def lstat(self, path: str) -> SFTPAttributes:
        return self.attributes(self.send(CMD_LSTAT, path))

    def open_request(self, path: str, flags: int = SFTP_FLAG_READ) -> int:
        return self.send(CMD_OPEN, path, flags, SFTPAttributes())

    def open(self, path: str, flags: int = SFTP_FLAG_READ) -> bytes:
        return self.handle(self.open_request(path, flags))

    def handle(self, num: int) -> bytes:
        """The handle answering an OPEN/OPENDIR request ``num``."""
        return self.expect(num, CMD_HANDLE).get_binary()  # type: ignore[no-any-return]

    def fstat(self, handle: bytes) -> int:
        return self.send(CMD_FSTAT, handle)

    def read(self, handle: bytes, offset: int, size: int) -> int:
        return self.send(CMD_READ, handle, int64(offset), size)

    def data(self, num: int) -> bytes:
        """The bytes answering READ ``num`` (EOFError at the end of the file)."""
        return self.expect(num, CMD_DATA).get_string()  # type: ignore[no-any-return]

    def write(self, handle: bytes, offset: int, data: bytes) -> int:
        return self.send(CMD_WRITE, handle, int64(offset), data)

    def close_request(self, handle: bytes) -> int:
        return self.send(CMD_CLOSE, handle)

    def close_handle(self, handle: bytes, *, wait: bool = True) -> None:
        num = self.send(CMD_CLOSE, handle)
        if wait or not self.pipeline:
            self.reply(num)
        else:
            self.ignore(num)

    def remove(self, path: str) -> int:
        return self.send(CMD_REMOVE, path)

    def rmdir(self, path: str) -> int:
        return self.send(CMD_RMDIR, path)

    def mkdir(self, path: str) -> None:
        self.call(CMD_MKDIR, path, SFTPAttributes())

    def rename(self, src: str, dst: str) -> None:
        self.call(CMD_RENAME, src, dst)

    def posix_rename(self, src: str, dst: str) -> int:
        return self.send(CMD_EXTENDED, "posix-rename@openssh.com", src, dst)

    def realpath(self, path: str) -> str:
        msg = self.expect(self.send(CMD_REALPATH, path), CMD_NAME)
        if msg.get_int() != 1:
            raise unexpected("REALPATH gave more than one name")
        return msg.get_text()  # type: ignore[no-any-return]

    def listdir(self, path: str) -> list[SFTPAttributes]:
        handle = self.handle(self.send(CMD_OPENDIR, path))
        entries: list[SFTPAttributes] = []
        try:
            while True:
                try:
                    msg = self.expect(self.send(CMD_READDIR, handle), CMD_NAME)
                except EOFError:
                    break
                for _ in range(msg.get_int()):
                    filename = msg.get_text()
                    longname = msg.get_text()
                    attr = SFTPAttributes._from_msg(msg, filename, longname)  # type: ignore[attr-defined]
                    if filename not in (".", ".."):
                        entries.append(attr)
        finally:
            self.close_handle(handle, wait=False)
        return entries

    def free_bytes(self, path: str) -> int | None:
        """Bytes available to us on the filesystem of ``path`` (statvfs@openssh.com), None if unknown."""
        try:
            msg = self.expect(self.send(CMD_EXTENDED, "statvfs@openssh.com", path), CMD_EXTENDED_REPLY)
        except (StatusError, EOFError):
            return None
        _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
        return int(frsize * bavail)

    def abandon(self) -> None:
        """Drop the replies still due (after an error): they are read and discarded later."""
        for num in list(self._pending):
            self.ignore(num)
        self._replies.clear()

    # ----------------------------------------------------------------- streams
    def first_pieces(self, reads: Iterable[tuple[int, int]]) -> tuple[list[bytes], StatusError | None]:
        """The answers to speculative READs ``(request, size)`` up to the first short piece or EOF,
        and the first failure among them.

        After a short piece or EOF later pieces are not contiguous (the caller reads them again), but
        every answer is still taken off the channel.
        """
        pieces = []
        ended = False
        error: StatusError | None = None
        for num, n in reads:
            try:
                piece = self.data(num)
                if not ended:
                    pieces.append(piece)
                    ended = len(piece) < n
            except EOFError:
                ended = True
            except StatusError as e:
                ended = True
                error = error or e
        return pieces, error

    def pieces(self, handle: bytes, start: int, length: int, step: int, window: int) -> Iterator[bytes]:
        """Read ``length`` bytes from ``start`` with up to ``window`` READs of ``step`` bytes in flight.

        A server that answers with less than asked (its own limit) is then asked for that much.
        Stops at the end of the file.
        """
        end = min(start + length, MAX_OFFSET)
        pending: deque[tuple[int, int, int]] = deque()
        offset = start
        try:
            while offset < end or pending:
                while offset < end and len(pending) < window:
                    n = min(step, end - offset)
                    pending.append((self.read(handle, offset, n), offset, n))
                    offset += n
                num, at, n = pending.popleft()
                try:
                    piece = self.data(num)
                except EOFError:
                    return
                if not piece:
                    return
                yield piece
                if len(piece) < n:
                    # the server's limit (or the end of a file that shrank): go on from there with
                    # requests of that size; the answers still on their way are dropped
                    step = len(piece)
                    while pending:
                        self.ignore(pending.popleft()[0])
                    offset = at + len(piece)
        finally:
            while pending:
                self.ignore(pending.popleft()[0])

    def put(
        self, handle: bytes, chunks: Iterable[bytes | memoryview], step: int, window: int, *, close_inline: bool
    ) -> None:
        """Write ``chunks`` with up to ``window`` WRITEs in flight, then CLOSE the handle.

        With ``close_inline`` the CLOSE goes out right behind the last WRITE (for servers that
        handle one handle's requests in order); else it waits for every WRITE's answer. Every answer
        is checked: the first failure is raised after the handle is closed.
        """
        pending: deque[int] = deque()
        error: StatusError | None = None

        def settle(num: int) -> None:
            nonlocal error
            try:
                self.reply(num)
            except StatusError as e:
                error = error or e

        offset = 0
        try:
            for chunk in chunks:
                view = memoryview(chunk)
                for pos in range(0, len(view), step):
                    piece = bytes(view[pos : pos + step])
                    pending.append(self.write(handle, offset, piece))
                    offset += len(piece)
                    while len(pending) >= window:
                        settle(pending.popleft())
                if error is not None:
                    break
            if not close_inline:
                while pending:
                    settle(pending.popleft())
        finally:
            if not self.closed:
                pending.append(self.send(CMD_CLOSE, handle))
                while pending:
                    settle(pending.popleft())
        if error is not None:
            raise error


class Reader(io.RawIOBase):
    """A raw binary stream over pipelined READs on a channel of its own; closing it closes both."""

    def __init__(self, channel: Channel, handle: bytes, pieces: Iterator[bytes], name: str):
        self._name = name
        self._channel = channel
        self._handle = handle
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
            except ChannelLost as e:
                raise BackendConnectionError(f"sftp reader of {self._name}: connection lost: {e}") from None
            except StatusError as e:
                raise translate_oserror(e, self._name) from e
        n = min(len(b), len(self._left))
        b[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._pieces.close()  # type: ignore[attr-defined]
            try:
                self._channel.close_handle(self._handle, wait=False)
            except ChannelLost:
                pass
            self._channel.close()
        super().close()
