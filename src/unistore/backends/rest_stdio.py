"""One HTTP/1.1 connection over a child process's stdin/stdout (``rest://``: the server runs over ssh).

h11 does the HTTP framing (Content-Length or chunked bodies, keep-alive), so a response is read
exactly, whatever the server's framing. Every read waits at most ``timeout`` seconds: a server that
stops answering (a frozen ssh peer) gives BackendConnectionError in bounded time, and the child is
killed. The child's stderr is kept (its last lines go into error messages) but never its arguments.
"""

from __future__ import annotations

import collections
import os
import selectors
import signal
import subprocess
import threading
import time
from typing import Any

import h11

from ..errors import BackendConnectionError

READ = 256 * 1024


class StdioConnection:
    """A child process speaking HTTP on stdio; one request at a time (the caller locks)."""

    def __init__(self, command: list[str], timeout: float) -> None:
        self.timeout = timeout
        self.stderr: collections.deque[str] = collections.deque(maxlen=10)
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
            )
        except OSError as e:
            raise BackendConnectionError(f"cannot start the REST server command {command[0]!r}: {e.strerror}") from None
        self.conn = h11.Connection(h11.CLIENT)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.decode("utf-8", "replace").rstrip())

    def _lost(self, what: str) -> BackendConnectionError:
        time.sleep(0.05)  # let the stderr thread catch the last words
        tail = "; ".join(self.stderr)
        return BackendConnectionError(f"REST stdio server {what}" + (f": {tail}" if tail else ""))

    def _send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(data)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                raise self._lost("closed the connection while we sent") from None

    def _receive(self) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            if not sel.select(self.timeout):
                raise self._lost(f"did not answer within {self.timeout:g} s")
        return os.read(fd, READ)

    def request(
        self, method: str, target: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], bytes]:
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()
        if isinstance(body, bytes | bytearray | memoryview):
            payload = bytes(body)
        elif body is None:
            payload = b""
        else:
            payload = body.read()
        hdrs = [(k, v) for k, v in headers.items() if k.lower() not in ("content-length", "host", "connection")]
        hdrs += [("Host", "stdio"), ("Content-Length", str(len(payload)))]
        self._send(h11.Request(method=method, target=target, headers=hdrs))
        if payload:
            self._send(h11.Data(data=payload))
        self._send(h11.EndOfMessage())
        status = 0
        rheaders: dict[str, str] = {}
        parts: list[bytes] = []
        while True:
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                data = self._receive()
                if not data:
                    raise self._lost("closed the connection")
                self.conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                rheaders = {k.decode("latin-1"): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, rheaders, b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise self._lost("closed the connection")

    def close(self) -> None:
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)
