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


#: the contract suite also runs (bare) over the client-side data layers
LAYERED_BACKENDS: list[str] = ["encrypt_memory", "compress_posixfs", "encrypt_compress_s3"]
_TEST_KEY = bytes(range(32))


@pytest.fixture
def backend_encrypt_memory(backend_memory: Backend) -> Backend:
    from unistore.layers.encrypt import EncryptLayer

    return EncryptLayer(backend_memory, key=_TEST_KEY)


@pytest.fixture
def backend_compress_posixfs(backend_posixfs: Backend) -> Backend:
    from unistore.layers.compress import CompressLayer

    return CompressLayer(backend_posixfs, level=3)


@pytest.fixture
def backend_encrypt_compress_s3(backend_s3_seaweedfs: Backend) -> Backend:
    from unistore.layers.compress import CompressLayer
    from unistore.layers.encrypt import EncryptLayer

    return CompressLayer(EncryptLayer(backend_s3_seaweedfs, key=_TEST_KEY))
