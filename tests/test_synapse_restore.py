"""Auto-restore passes (Restorer) on a posixfs backend: newest first, byte budget, atomic, media paths only."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from unistore.adapters.synapse.restore import Restorer
from unistore.backends.posixfs import PosixFS
from unistore.layers.chaos import ChaosLayer


@pytest.fixture
def store(tmp_path: Path) -> PosixFS:
    be = PosixFS(str(tmp_path / "backend"))
    be.create()
    be.open()
    return be


def _put(be: PosixFS, root: Path, name: str, data: bytes, age: float) -> None:
    be.store(name, data)
    t = time.time() - age
    os.utime(root / name, (t, t))


@pytest.mark.parametrize("prefix", ["media/", "m", ""])
def test_newest_first_within_the_budget(store: PosixFS, tmp_path: Path, prefix: str) -> None:
    root = tmp_path / "backend"
    local = tmp_path / "media_store"
    local.mkdir()
    _put(store, root, prefix + "local_content/aa/bb/old", b"o" * 1000, 300)
    _put(store, root, prefix + "local_content/aa/bb/mid", b"m" * 1000, 200)
    _put(store, root, prefix + "remote_thumbnail/example.org/aa/bb/new/32-32-image-png-crop", b"n" * 1000, 100)
    _put(store, root, prefix + "local_content/aa/bb/have", b"remote", 50)
    _put(store, root, prefix + "url_cache/aa/bb/x", b"u", 10)  # never offloaded: not restored
    (local / "local_content/aa/bb").mkdir(parents=True)
    (local / "local_content/aa/bb/have").write_bytes(b"local")

    counts = Restorer(lambda: store, str(local), prefix, max_bytes=2500, batch_size=1, workers=2).run_pass()

    assert (counts.listed, counts.missing, counts.restored, counts.over_budget, counts.failed) == (4, 3, 2, 1, 0)
    assert counts.restored_bytes == 2000
    assert (local / "remote_thumbnail/example.org/aa/bb/new/32-32-image-png-crop").read_bytes() == b"n" * 1000
    assert (local / "local_content/aa/bb/mid").read_bytes() == b"m" * 1000
    assert not (local / "local_content/aa/bb/old").exists()  # the oldest did not fit
    assert (local / "local_content/aa/bb/have").read_bytes() == b"local"  # never overwritten
    assert not (local / "url_cache").exists()
    assert "2 of 3 missing files restored" in counts.line()
    # the next pass has a fresh budget and brings the rest
    counts = Restorer(lambda: store, str(local), prefix, max_bytes=2500).run_pass()
    assert (counts.missing, counts.restored) == (1, 1)
    assert (local / "local_content/aa/bb/old").read_bytes() == b"o" * 1000


def test_failed_restores_leave_nothing_behind(store: PosixFS, tmp_path: Path) -> None:
    local = tmp_path / "media_store"
    local.mkdir()
    for i in range(5):
        store.store(f"media/local_content/aa/bb/f{i}", os.urandom(2000))
    flaky = ChaosLayer(store, drop_rate=1.0, operations={"load_file"}, seed=1)  # data written, then a failure
    counts = Restorer(lambda: flaky, str(local), "media/", workers=3).run_pass()
    assert (counts.missing, counts.restored, counts.failed) == (5, 0, 5)
    assert not [p for p in local.rglob("*") if p.is_file()]  # no partial file, no temp file
    counts = Restorer(lambda: store, str(local), "media/", workers=3).run_pass()
    assert counts.restored == 5 and not [p for p in local.rglob("*") if "unistore-restore" in p.name]


def test_empty_backend(store: PosixFS, tmp_path: Path) -> None:
    counts = Restorer(lambda: store, str(tmp_path), "media/").run_pass()
    assert (counts.listed, counts.restored, counts.failed) == (0, 0, 0)
