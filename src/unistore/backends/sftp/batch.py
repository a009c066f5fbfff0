"""Batches of values on one SFTP channel: pipelined loads and stores, and removing a tree.

A batch of small values costs two round trips to load (every OPEN, then every FSTAT with the first
READs) and three to store on OpenSSH (every OPEN, then every WRITE and CLOSE, then every rename),
instead of two or three per value. Replies are matched to requests by id (see protocol.py), so the
server may answer in any order. With ``pipeline=False`` every value goes on its own, one request at
a time.
"""

from __future__ import annotations

import builtins
import errno
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ...errors import NameConflict, ObjectNotFound, ReadRangeError, UnistoreError
from ..base import ItemInfo
from ..oserror import translate_oserror
from .protocol import WRITE_FLAGS, Channel, StatusError

if TYPE_CHECKING:
    from .backend import SFTPBackend

#: values per pipelined batch, and bytes at most (a larger value goes alone, streamed)
BATCH_ITEMS = 32
BATCH_BYTES = 4 * 1024 * 1024

Item = tuple[str, str]  # (name, absolute path)


def batches(items: Iterable[Item], size: int) -> Iterator[builtins.list[Item]]:
    batch: builtins.list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def value_batches(views: Iterable[tuple[str, memoryview]]) -> Iterator[builtins.list[tuple[str, memoryview]]]:
    """``(path, value)`` pairs in batches of at most BATCH_ITEMS values and BATCH_BYTES bytes."""
    batch: builtins.list[tuple[str, memoryview]] = []
    size = 0
    for path, view in views:
        if len(view) >= BATCH_BYTES:
            yield [(path, view)]
            continue
        batch.append((path, view))
        size += len(view)
        if len(batch) >= BATCH_ITEMS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def load_batch(
    be: SFTPBackend, ch: Channel, batch: builtins.list[Item]
) -> builtins.list[tuple[str, bytes | Exception]]:
    """Load a batch; an error stands in the place of its item (load_many yields the items before it)."""
    if not be.pipeline:
        out: builtins.list[tuple[str, bytes | Exception]] = []
        for name, path in batch:
            try:
                out.append((name, be._load_on(ch, name, path)))
            except StatusError as e:
                out.append((name, translate_oserror(e, name)))
            except UnistoreError as e:
                out.append((name, e))
        return out
    opens = [ch.open_request(path) for _, path in batch]
    handles: builtins.list[bytes | None] = []
    errors: dict[int, Exception] = {}
    for i, num in enumerate(opens):
        try:
            handles.append(ch.handle(num))
        except StatusError as e:
            handles.append(None)
            name = batch[i][0]
            errors[i] = ObjectNotFound(name) if e.errno in (errno.ENOENT, errno.ENOTDIR) else translate_oserror(e, name)
    step = be._request
    first = max(255 * 1024, step)
    requests = []
    for i, handle in enumerate(handles):
        if handle is not None:
            reads = [(ch.read(handle, off, step), step) for off in range(0, first, step)]
            requests.append((i, ch.fstat(handle), reads))
    values: dict[int, bytes] = {}
    try:
        firsts: dict[int, tuple[int, bytes]] = {}
        for i, n_stat, reads in requests:
            st = ch.attributes(n_stat)
            pieces, error = ch.first_pieces(reads)
            if stat.S_ISDIR(st.st_mode or 0):
                errors[i] = ObjectNotFound(f"{batch[i][0]}: a directory")
            elif error is not None:
                errors[i] = translate_oserror(error, batch[i][0])
            else:
                firsts[i] = (st.st_size or 0, b"".join(pieces))
        # only now, with every answer of the batch in, read the rest of larger values
        for i, (size, data) in firsts.items():
            buf = bytearray(data)
            handle = handles[i]
            assert handle is not None
            if len(buf) < size:
                for piece in ch.pieces(handle, len(buf), size - len(buf), step, be._window):
                    buf += piece
            if len(buf) < size:
                errors[i] = ReadRangeError(f"{batch[i][0]}: item changed while reading")
            else:
                values[i] = bytes(buf[:size])
    finally:
        for handle in handles:  # CLOSE without waiting for the answers
            if handle is not None and not ch.closed:
                ch.close_handle(handle, wait=False)
    return [(name, errors[i] if i in errors else values[i]) for i, (name, _) in enumerate(batch)]


def _note_failures(ch: Channel, requests: Iterable[tuple[int, int]], failed: dict[int, StatusError]) -> None:
    """Take the answers to pipelined requests ``(item, request)``; the first failure of each item goes
    into ``failed``."""
    for i, num in requests:
        try:
            ch.reply(num)
        except StatusError as e:
            failed.setdefault(i, e)


def store_batch(be: SFTPBackend, ch: Channel, batch: builtins.list[tuple[str, memoryview]]) -> None:
    """Store a batch: each value to a temp file, renamed into place only after its WRITEs and CLOSE
    succeeded. What the pipeline cannot do (a missing directory, a failed rename) goes the careful
    way, one by one, which creates directories and raises the precise error after the others are in."""
    todo: builtins.list[int] = list(range(len(batch)))
    if be.pipeline and be._openssh and be._posix_rename and len(batch) > 1:
        todo = _store_pipelined(be, ch, batch)
    error: UnistoreError | None = None
    for i in todo:
        path, view = batch[i]
        try:
            be._write(ch, path, (view,), len(view))
        except UnistoreError as e:
            error = error or e
    if error is not None:
        raise error


def _store_pipelined(be: SFTPBackend, ch: Channel, batch: builtins.list[tuple[str, memoryview]]) -> builtins.list[int]:
    """The pipelined part of store_batch (OpenSSH: one handle's requests are handled in order);
    returns the indexes of the values still to store."""
    tmps = [be._tmp_path(path) for path, _ in batch]
    opens = [ch.open_request(tmp, WRITE_FLAGS) for tmp in tmps]
    handles: builtins.list[bytes | None] = []
    for num in opens:
        try:
            handles.append(ch.handle(num))
        except StatusError:
            handles.append(None)  # e.g. a missing directory: stored one by one
    step = be._request
    writes: builtins.list[tuple[int, int]] = []
    for i, ((_, view), handle) in enumerate(zip(batch, handles, strict=True)):
        if handle is None:
            continue
        for off in range(0, len(view), step):
            writes.append((i, ch.write(handle, off, bytes(view[off : off + step]))))
        writes.append((i, ch.close_request(handle)))
    failed: dict[int, StatusError] = {}
    _note_failures(ch, writes, failed)
    renames = [
        (i, ch.posix_rename(tmps[i], batch[i][0]))
        for i, handle in enumerate(handles)
        if handle is not None and i not in failed
    ]
    _note_failures(ch, renames, failed)
    for i in failed:
        ch.ignore(ch.remove(tmps[i]))
    return [i for i, handle in enumerate(handles) if handle is None or i in failed]


def remove_tree(ch: Channel, root: str) -> None:
    """Remove ``root`` and everything below it (no recursion; each directory's REMOVEs pipelined)."""
    order: builtins.list[str] = []
    stack = [root]
    while stack:
        directory = stack.pop()
        order.append(directory)
        try:
            entries = ch.listdir(directory)
        except StatusError as e:
            if e.errno == errno.ENOENT:
                continue
            raise
        removes = []
        for entry in entries:
            child = f"{directory}/{entry.filename}"
            if stat.S_ISDIR(entry.st_mode or 0):
                stack.append(child)
            else:
                removes.append((0, ch.remove(child)))
        failed: dict[int, StatusError] = {}
        _note_failures(ch, removes, failed)
    for directory in reversed(order):  # deepest first
        try:
            ch.reply(ch.rmdir(directory))
        except StatusError as err:
            if err.errno == errno.ENOENT:
                continue
            # a server with a listing cache (rclone) may have shown a stale listing: one more pass
            for e2 in ch.listdir(directory):
                if stat.S_ISDIR(e2.st_mode or 0):
                    raise NameConflict(f"cannot remove {directory}: it still holds {e2.filename}") from None
                try:
                    ch.reply(ch.remove(f"{directory}/{e2.filename}"))
                except StatusError as e3:
                    if e3.errno != errno.ENOENT:
                        raise
            ch.reply(ch.rmdir(directory))


def walk(be: SFTPBackend, name: str) -> builtins.list[ItemInfo]:
    """Every item below directory ``name`` (names relative to it), sorted; the directories of each
    level are listed concurrently on the backend's channels."""

    def listdir(d: str) -> builtins.list[ItemInfo]:
        try:
            return be._listdir(f"{name}/{d}" if name else d)
        except ObjectNotFound:
            return []  # removed while we were listing

    found: builtins.list[ItemInfo] = []
    current = [("", be._listdir(name))]
    with ThreadPoolExecutor(max_workers=be.channels, thread_name_prefix="unistore-sftp-list") as pool:
        while current:
            subdirs = []
            for prefix, entries in current:
                for item in entries:
                    rel = f"{prefix}/{item.name}" if prefix else item.name
                    if item.directory:
                        subdirs.append(rel)
                    else:
                        found.append(item._replace(name=rel))
            current = list(zip(subdirs, pool.map(listdir, subdirs), strict=True))
    found.sort(key=lambda i: i.name)
    return found
