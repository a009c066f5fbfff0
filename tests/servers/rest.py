"""REST servers for the tests: ``unistore serve`` and borgstore's ``borgstore-server-rest``, by PID."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from unistore.backends.base import Backend
from unistore.backends.rest import RestBackend

USER, PASSWORD = "borg", "s3cret-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RestServer:
    """A server process serving ``root`` (a directory of stores) on 127.0.0.1."""

    def __init__(self, root: Path, command: list[str], port: int) -> None:
        self.root = root
        self.port = port
        self.log = open(root / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"REST server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("REST server did not start")

    def url(self, auth: bool = True) -> str:
        creds = f"{USER}:{PASSWORD}@" if auth else ""
        return f"http://{creds}127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def unistore_serve(root: Path, store: str, *extra: str) -> RestServer:
    port = free_port()
    cmd = [sys.executable, "-m", "unistore.server", "--backend", f"file://{root / store}", "--port", str(port),
           "--username", USER, "--password", PASSWORD, *extra]  # fmt: skip
    return RestServer(root, cmd, port)


def borgstore_serve(root: Path, store: str) -> RestServer:
    port = free_port()
    cmd = [sys.executable, "-m", "borgstore.server.rest", "--backend", f"file://{root / store}", "--port", str(port),
           "--username", USER, "--password", PASSWORD]  # fmt: skip
    return RestServer(root, cmd, port)


@pytest.fixture(scope="session")
def rest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestServer]:
    """``unistore serve`` over posixfs, started once per session."""
    root = tmp_path_factory.mktemp("rest")
    server = unistore_serve(root, "store", "--body-timeout", "2", "--max-body", str(64 * 1024 * 1024))
    yield server
    server.stop()


@pytest.fixture
def backend_rest(rest_server: RestServer) -> Iterator[Backend]:
    """A fresh store behind the session's server: the server serves one store, so clean it per test."""
    be = RestBackend.from_url(rest_server.url())
    try:
        be.destroy()
    except Exception:  # noqa: BLE001 - nothing there yet
        pass
    be.create()
    with be:
        yield be
    be.destroy()
