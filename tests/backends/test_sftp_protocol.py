"""SFTP pipelining against a server that answers out of order (tests/servers/sftpd_reorder.py).

Replies are matched to requests by id: whatever order the server answers in, every value comes back
to the call that asked for it. ``pipeline=False`` really sends one request at a time.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.servers.sftpd_reorder import ReorderingSFTPServer
from unistore.backends.sftp import SFTPBackend


def _serve(openssh_banner: bool) -> Iterator[ReorderingSFTPServer]:
    base = Path(tempfile.mkdtemp(prefix="unistore-reorder-"))
    server = ReorderingSFTPServer(base, openssh_banner=openssh_banner)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module", params=[True, False], ids=["openssh-banner", "paramiko-banner"])
def reorder_sftpd(request: pytest.FixtureRequest) -> Iterator[ReorderingSFTPServer]:
    yield from _serve(request.param)


def _backend(server: ReorderingSFTPServer, **extra: object) -> Iterator[SFTPBackend]:
    be = SFTPBackend.from_url(server.url(), **server.options(timeout=20, connect_timeout=10, **extra))
    be.create()
    with be:
        server.stats.reset()
        yield be
    be.destroy()


@pytest.fixture
def pipelined(reorder_sftpd: ReorderingSFTPServer) -> Iterator[SFTPBackend]:
    yield from _backend(reorder_sftpd)


@pytest.fixture
def unpipelined(reorder_sftpd: ReorderingSFTPServer) -> Iterator[SFTPBackend]:
    yield from _backend(reorder_sftpd, pipeline=False)


def test_values_never_mixed_up(pipelined: SFTPBackend, reorder_sftpd: ReorderingSFTPServer) -> None:
    # distinct sizes and contents, small and larger than one READ, so a reply given to the wrong
    # request shows as a wrong value
    items = {f"v/{i:03d}": os.urandom(i * 1531 % 70_000) + bytes([i]) for i in range(96)}
    items["v/big"] = os.urandom(3 * 1024 * 1024 + 17)
    pipelined.store_many(items)
    order = sorted(items, reverse=True)
    assert list(pipelined.load_many(order)) == [(n, items[n]) for n in order]
    for name in ("v/001", "v/050", "v/big"):
        assert pipelined.load(name) == items[name]
        assert pipelined.load(name, offset=3, size=1000) == items[name][3:1003]
        out = io.BytesIO()
        assert pipelined.load_file(name, out) == len(items[name])
        assert out.getvalue() == items[name]
    with pipelined.open_reader("v/big") as r:
        assert r.read() == items["v/big"]
    pipelined.store_file("v/streamed", io.BytesIO(items["v/big"]))
    assert pipelined.load("v/streamed") == items["v/big"]

    def one(i: int) -> None:
        name = f"t/{i % 8}/{i}"
        value = os.urandom(i * 37 % 5000)
        pipelined.store(name, value)
        assert pipelined.load(name) == value
        assert pipelined.info(name).size == len(value)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    assert [i.name for i in pipelined.list("v")][:2] == ["000", "001"]
    # the server did answer out of order, with many requests in flight
    assert reorder_sftpd.stats.reordered > 0
    assert reorder_sftpd.stats.max_in_flight > 4


def test_pipeline_false_sends_one_request_at_a_time(
    unpipelined: SFTPBackend, reorder_sftpd: ReorderingSFTPServer
) -> None:
    items = {f"p/{i:02d}": os.urandom(1000 + i) for i in range(40)}
    items["p/big"] = os.urandom(2 * 1024 * 1024 + 5)
    unpipelined.store_many(items)
    unpipelined.store_file("p/file", io.BytesIO(items["p/big"]))
    assert dict(unpipelined.load_many(sorted(items))) == items
    assert unpipelined.load("p/big", offset=-10) == items["p/big"][-10:]
    out = io.BytesIO()
    unpipelined.load_file("p/file", out)
    assert out.getvalue() == items["p/big"]
    with unpipelined.open_reader("p/big") as r:
        assert r.read() == items["p/big"]
    unpipelined.delete("p/00")
    assert len(list(unpipelined.list("p"))) == 41
    assert reorder_sftpd.stats.max_in_flight == 1
