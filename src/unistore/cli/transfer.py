"""Planning and running transfers: what to copy or delete, concurrently, interruptible.

:func:`plan` compares two trees (``size+mtime`` by default, content with ``checksum``);
:class:`Runner` runs the copies on daemon worker threads while the main thread waits, so Ctrl-C
reaches the main thread at once: it sets the :class:`Cancel` token (every backend read/write
then raises inside the backend, which cleans up), waits up to a second for the transfers to
unwind, removes any local temp file still registered, and the command exits 130.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import logs
from .output import Interrupted
from .progress import Cancel, Cancelled, Progress, human
from .tree import Entry, Filters, Side, TempFiles, copy_one, digest_algorithm

GRACE_SECONDS = 0.8  # how long an interrupted command waits for transfers to clean up


@dataclass
class Plan:
    copy: list[tuple[str, Entry]] = field(default_factory=list)
    unchanged: int = 0
    kept: int = 0  # existing, different, and --no-clobber
    delete: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def copy_bytes(self) -> int:
        return sum(e.size for _, e in self.copy)


def differs(
    src: Side, dst: Side, rel: str, s: Entry, d: Entry, *, checksum: bool, size_only: bool, cancel: Cancel
) -> bool:
    if s.size != d.size:
        return True
    if checksum:
        algorithm = digest_algorithm(src, dst)
        return src.digest(rel, cancel, algorithm) != dst.digest(rel, cancel, algorithm)
    if size_only:
        return False
    # the source is newer than the copy: a local copy carries the source mtime, a backend copy the
    # time it was stored (after the source was last modified)
    return s.mtime > d.mtime + 1.0


def plan(
    src_files: dict[str, Entry],
    dst_files: dict[str, Entry],
    src: Side,
    dst: Side,
    *,
    filters: Filters,
    no_clobber: bool = False,
    checksum: bool = False,
    ignore_existing_check: bool = False,
    delete: bool = False,
    refuse: Callable[[str], bool] | None = None,
    cancel: Cancel,
) -> Plan:
    p = Plan()
    for rel, s in sorted(src_files.items()):
        if not filters(rel):
            continue
        if refuse is not None and refuse(rel):
            p.refused.append(rel)
            continue
        d = dst_files.get(rel)
        if d is None:
            p.copy.append((rel, s))
        elif no_clobber:
            p.kept += 1
        elif ignore_existing_check or differs(src, dst, rel, s, d, checksum=checksum, size_only=False, cancel=cancel):
            p.copy.append((rel, s))
        else:
            p.unchanged += 1
    if delete:
        p.delete = sorted(rel for rel in dst_files if rel not in src_files and filters(rel))
    return p


@dataclass
class Outcome:
    files: int = 0
    bytes: int = 0
    failed: list[tuple[str, BaseException]] = field(default_factory=list)
    seconds: float = 0.0


class Runner:
    """Runs jobs on ``workers`` daemon threads; the main thread stays interruptible."""

    def __init__(self, workers: int, progress: Progress, cancel: Cancel | None = None) -> None:
        self.workers = max(1, workers)
        self.progress = progress
        self.cancel = cancel or Cancel()
        self.temps = TempFiles()

    def run(self, jobs: list[tuple[str, Callable[[], int]]]) -> Outcome:
        outcome = Outcome()
        lock = threading.Lock()
        todo: queue.Queue[tuple[str, Callable[[], int]]] = queue.Queue()
        for job in jobs:
            todo.put(job)
        active = [0]
        finished = threading.Event()
        remaining = [len(jobs)]

        def worker() -> None:
            while True:
                try:
                    item = todo.get_nowait()
                except queue.Empty:
                    return
                if self.cancel.is_set():
                    with lock:
                        remaining[0] -= 1
                        if remaining[0] <= 0:
                            finished.set()
                    continue
                label, fn = item
                with lock:
                    active[0] += 1
                try:
                    with logs.timed("transfer", label) as rec:
                        n = fn()
                        rec["bytes"] = n
                    with lock:
                        outcome.files += 1
                        outcome.bytes += n
                    self.progress.file_done()
                except Cancelled:
                    pass
                except BaseException as e:  # reported per file by the command
                    with lock:
                        outcome.failed.append((label, e))
                    logs.log.debug("%s failed", label, exc_info=logs.log.isEnabledFor(logging.DEBUG))
                finally:
                    with lock:
                        active[0] -= 1
                        remaining[0] -= 1
                        if remaining[0] <= 0:
                            finished.set()

        if not jobs:
            finished.set()
        threads = [
            threading.Thread(target=worker, name=f"unistore-cli-{i}", daemon=True)
            for i in range(min(self.workers, len(jobs)))
        ]
        for t in threads:
            t.start()
        try:
            while not finished.wait(0.1):
                pass
        except KeyboardInterrupt:
            self.interrupt(lambda: active[0] == 0)
        outcome.seconds = self.progress.seconds
        return outcome

    def interrupt(self, idle: Callable[[], bool]) -> None:
        """Cancel everything, give the transfers a moment to clean up, then raise Interrupted."""
        self.cancel.set()
        deadline = time.monotonic() + GRACE_SECONDS
        while time.monotonic() < deadline and not idle():
            time.sleep(0.02)
        self.temps.remove_all()
        self.progress.close()
        raise Interrupted("interrupted: transfer stopped, nothing half-written left behind")


def copy_jobs(
    src: Side,
    dst: Side,
    pairs: list[tuple[str, str, Entry]],
    runner: Runner,
) -> list[tuple[str, Callable[[], int]]]:
    """One job per ``(source rel, destination rel, entry)``."""
    jobs: list[tuple[str, Callable[[], int]]] = []
    for s_rel, d_rel, e in pairs:

        def job(s_rel: str = s_rel, d_rel: str = d_rel, e: Entry = e) -> int:
            return copy_one(src, s_rel, dst, d_rel, e.size, e.mtime, runner.progress, runner.cancel, runner.temps)

        jobs.append((s_rel, job))
    return jobs


def summary_text(verb: str, outcome: Outcome, plan_: Plan | None = None, deleted: int = 0) -> str:
    rate = outcome.bytes / outcome.seconds if outcome.seconds > 0 else 0.0
    parts = [f"{verb} {outcome.files} file{'s' if outcome.files != 1 else ''} ({human(outcome.bytes)})"]
    parts.append(f"in {outcome.seconds:.1f} s, {human(rate)}/s")
    extra = []
    if plan_ is not None:
        extra.append(f"{plan_.unchanged} unchanged")
        if plan_.kept:
            extra.append(f"{plan_.kept} kept (--no-clobber)")
    if deleted:
        extra.append(f"{deleted} deleted")
    extra.append(f"{len(outcome.failed)} failed")
    return " ".join(parts) + "; " + ", ".join(extra)


def summary_data(outcome: Outcome, plan_: Plan | None = None, deleted: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {
        "files": outcome.files,
        "bytes": outcome.bytes,
        "seconds": round(outcome.seconds, 3),
        "failed": [{"name": n, "error": f"{type(e).__name__}: {e}"} for n, e in outcome.failed],
        "deleted": deleted,
    }
    if plan_ is not None:
        data.update(unchanged=plan_.unchanged, kept=plan_.kept)
    return data
