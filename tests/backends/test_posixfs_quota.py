"""posixfs quota and temp files under races, crashes (SIGKILL) and interrupts (Ctrl-C anywhere)."""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import unistore
from unistore.backends.posixfs import QUOTA_FILE, PosixFS
from unistore.errors import InvalidName, ObjectNotFound, QuotaExceeded

KEYS = [f"k/{i}" for i in range(12)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    PosixFS(path).create()
    return path


def stored_bytes(be: PosixFS) -> int:
    """What is stored, as the backend's own listing shows it."""
    return sum(i.size for i in be.list_recursive(""))


def temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*.tmp")]


def _writer(root: str, seed: int, limit: int, ops: int) -> None:
    be = PosixFS(root, quota=limit)
    be.open()
    rnd = random.Random(seed)
    for _ in range(ops):
        op, key = rnd.random(), rnd.choice(KEYS)
        try:
            if op < 0.45:
                be.store(key, os.urandom(rnd.randrange(0, 20_000)))
            elif op < 0.6:
                be.store_file(key, io.BytesIO(b"x" * rnd.randrange(0, 60_000)))
            elif op < 0.8:
                be.delete(key)
            else:
                be.move(key, rnd.choice(KEYS))
        except (ObjectNotFound, QuotaExceeded):
            pass
    be.close()


def test_usage_is_exact_after_repeated_sigkills_of_writers(root: Path) -> None:
    limit = 300_000
    ctx = multiprocessing.get_context("fork")
    for round_ in range(6):
        procs = [ctx.Process(target=_writer, args=(str(root), round_ * 10 + i, limit, 10**9)) for i in range(3)]
        for p in procs:
            p.start()
        time.sleep(0.15 + 0.05 * round_)
        for p in procs:
            assert p.pid is not None
            os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.join()
            assert p.exitcode == -signal.SIGKILL
    be = PosixFS(root, quota=limit)
    be.open()
    try:
        assert be.quota()["usage"] == stored_bytes(be) <= limit
        assert temp_files(root) == []  # the killed writers' temp files were removed by this open
    finally:
        be.close()


def test_usage_is_exact_across_live_processes_without_a_rescan(root: Path) -> None:
    limit = 300_000
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(root), i, limit, 400)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    assert sorted(os.listdir(root / "sessions.hid")) == []  # every session closed cleanly
    record = int((root / QUOTA_FILE).read_text())  # what the writers recorded, no rescan involved
    be = PosixFS(root)
    be.open()
    try:
        assert record == stored_bytes(be) <= limit
    finally:
        be.close()


def test_threads_overwriting_one_key_keep_usage_exact(root: Path) -> None:
    limit = 25_000
    be = PosixFS(root, quota=limit)
    be.open()
    seen: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def overwrite(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for i in range(150):
                key = "shared" if i % 3 else f"own/{seed}"
                try:
                    be.store(key, b"v" * rnd.randrange(0, 9_000))
                except QuotaExceeded:
                    pass
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def monitor() -> None:
        while not stop.is_set():
            seen.append(be.quota()["usage"])

    mon = threading.Thread(target=monitor)
    mon.start()
    threads = [threading.Thread(target=overwrite, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    mon.join()
    try:
        assert errors == []
        assert seen and min(seen) >= 0 and max(seen) <= limit
        assert be.quota()["usage"] == stored_bytes(be) <= limit
    finally:
        be.close()


def test_move_onto_an_existing_item_counts_one(root: Path) -> None:
    be = PosixFS(root, quota=1000)
    be.open()
    be.store("a", b"a" * 100)
    be.store("b", b"b" * 50)
    be.move("a", "b")
    assert be.quota()["usage"] == 100 == stored_bytes(be)
    be.move("b", "b")  # onto itself: nothing changes
    assert be.quota()["usage"] == 100
    be.close()


def test_undelete_over_a_live_item_counts_one(root: Path) -> None:
    store = unistore.Store(f"file://{root}", config={"": {"levels": [0]}}, quota=10_000)
    with store:
        store.store("k", b"1" * 100)
        store.move("k", delete=True)
        store.store("k", b"2" * 40)
        store.move("k", undelete=True)
        assert store.load("k") == b"1" * 100
        assert store.quota()["usage"] == 100


def test_hidden_names_cannot_reach_the_quota_record(root: Path) -> None:
    be = PosixFS(root, quota=1000)
    be.open()
    be.store("a", b"x" * 300)
    for name in (QUOTA_FILE, "sessions.hid/x", "a.tmp", "d/b.hid"):
        with pytest.raises(InvalidName):
            be.store(name, b"0")
        with pytest.raises(InvalidName):
            be.load(name)
    assert be.quota()["usage"] == 300
    with pytest.raises(QuotaExceeded):
        be.store("b", b"x" * 701)
    be.close()


class _Blocking(io.RawIOBase):
    """A reader that yields some bytes, then blocks: a writer stuck in the middle of store_file."""

    def __init__(self) -> None:
        self.sent = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        if not self.sent:
            self.sent = True
            buf[:4] = b"part"
            return 4
        time.sleep(3600)
        return 0


def _stuck_writer(root: str) -> None:
    be = PosixFS(root, quota=10**9)
    be.open()
    be.store_file("d/stuck", io.BufferedReader(_Blocking()))


def test_stale_temp_files_are_removed_on_open_and_live_ones_kept(root: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    dead, alive = (ctx.Process(target=_stuck_writer, args=(str(root),)) for _ in range(2))
    dead.start()
    alive.start()
    try:
        deadline = time.monotonic() + 30
        while len(temp_files(root)) < 2:
            assert time.monotonic() < deadline, "the writers never started"
            time.sleep(0.02)
        assert dead.pid is not None
        os.kill(dead.pid, signal.SIGKILL)
        dead.join()
        be = PosixFS(root, quota=10**9)
        be.open()
        be.close()
        left = temp_files(root)
        assert len(left) == 1  # the live writer's temp file survives another session's open
    finally:
        assert alive.pid is not None
        os.kill(alive.pid, signal.SIGKILL)
        alive.join()
    be = PosixFS(root)
    be.open()
    be.close()
    assert temp_files(root) == []


# ------------------------------------------------------------------- Ctrl-C anywhere
class _Interrupt:
    """Raise KeyboardInterrupt when the n-th call of an OS function (posix or fcntl) returns.

    This is where a real Ctrl-C lands: CPython runs signal handlers right after a system call
    returns. It is the interpreter's profiling hook, not a replacement of any of our functions.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.fired = False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_return" and getattr(arg, "__module__", None) in ("posix", "fcntl"):
            self.count += 1
            if self.count == self.n:
                self.fired = True
                raise KeyboardInterrupt(f"at {arg.__name__}")


def _interrupted(call: Callable[[], None], n: int) -> bool:
    hook = _Interrupt(n)
    sys.setprofile(hook)
    try:
        call()
    except KeyboardInterrupt:
        assert hook.fired
    finally:
        sys.setprofile(None)
    return hook.fired


@pytest.mark.parametrize("quota", [None, 10**6], ids=["no-quota", "quota"])
@pytest.mark.parametrize("do_fsync", [False, True], ids=["no-fsync", "fsync"])
@pytest.mark.parametrize("op", ["store", "store_file", "move", "delete"])
def test_ctrl_c_at_any_os_call_leaves_no_temp_file_and_an_exact_quota(
    root: Path, quota: int | None, do_fsync: bool, op: str
) -> None:
    be = PosixFS(root, quota=quota, do_fsync=do_fsync)
    be.open()
    calls: dict[str, Callable[[], None]] = {
        "store": lambda: be.store("d/k", b"new" * 300),
        "store_file": lambda: be.store_file("d/k", io.BytesIO(b"new" * 300)),
        "move": lambda: be.move("d/other", "d/k"),
        "delete": lambda: be.delete("d/k"),
    }
    n = 0
    try:
        while True:
            n += 1
            be.store("d/k", b"old")
            be.store("d/other", b"new" * 300)
            if not _interrupted(calls[op], n):
                break  # the operation completed before the n-th OS call: every point was tried
            assert temp_files(root) == [], f"interrupted at OS call {n}"
            if be.info("d/k").exists:
                assert be.load("d/k") in (b"old", b"new" * 300)
            if quota is not None:
                assert be.quota()["usage"] == stored_bytes(be), f"interrupted at OS call {n}"
        assert n >= 2  # at least one interruption point was tried
    finally:
        be.close()
