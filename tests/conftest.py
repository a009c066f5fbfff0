"""Shared fixtures. Servers live in tests/servers/ (one plugin module per engine).

The backend contract suite (tests/backends/test_contract.py) runs over every entry of
CONTRACT_BACKENDS: each entry names a fixture ``backend_<entry>`` that yields a created, opened,
empty backend and cleans it up afterwards. A new backend adds its entry here and its fixture in a
plugin module listed in ``pytest_plugins``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from unistore.backends.base import Backend
from unistore.backends.memory import MemoryBackend
from unistore.backends.posixfs import PosixFS

pytest_plugins: list[str] = [
    "tests.servers.sshd",
    "tests.servers.rclone",
    "tests.servers.seaweedfs",
    "tests.servers.moto",
    "tests.servers.postgres",
    "tests.servers.rest",
]

CONTRACT_BACKENDS: list[str] = [
    "memory",
    "posixfs",
    "sftp",
    "sftp_rclone",
    "rclone_local",
    "rclone_s3",
    "s3_seaweedfs",
    "s3_moto",
    "rest",
]


@pytest.fixture(autouse=True)
def _no_emulation(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("UNISTORE_LATENCY", "UNISTORE_BANDWIDTH", "BORGSTORE_LATENCY", "BORGSTORE_BANDWIDTH"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def backend_memory() -> Iterator[Backend]:
    be = MemoryBackend(f"t-{uuid.uuid4().hex}")
    be.create()
    with be:
        yield be
    be.destroy()


@pytest.fixture
def backend_posixfs(tmp_path: os.PathLike[str]) -> Iterator[Backend]:
    be = PosixFS(os.path.join(os.fspath(tmp_path), "store"))
    be.create()
    with be:
        yield be
    be.destroy()


@pytest.fixture(params=CONTRACT_BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"backend_{request.param}")  # type: ignore[no-any-return]
