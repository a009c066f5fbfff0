"""The s3kv adapter's local cache: one folder per endpoint, bucket and prefix under the user's cache dir.

Location: ``$XDG_CACHE_HOME/unistore/s3kv/<scope>/`` (``~/.cache/unistore/s3kv/<scope>/`` when the
variable is unset), where ``<scope>`` is a readable slug of the backend (endpoint, bucket, prefix or
path) plus a hash of it. Each key is one file named by the SHA-256 of the key, so no key can reach
outside the folder and no file name is ever too long. An entry file holds one JSON header line
(the key, the MD5 of the value, and the ETag or size+mtime the backend reported) followed by the
stored bytes. Entries are written to a temp file and renamed into place (atomic); the file's mtime
is the last time the entry was known to be current, which is what ``cache_ttl`` measures.

Every process of the user on the same backend shares the folder, so a write by one unistore process
on this machine replaces the entry the others read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("unistore.adapters.s3kv.cache")

ENTRY_SUFFIX = ".entry"


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/unistore/s3kv`` or ``~/.cache/unistore/s3kv``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "unistore" / "s3kv"


def scope_dirname(scope: str) -> str:
    """A folder name for ``scope``: a readable slug (at most 60 characters) plus 16 hex of its hash."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", scope).strip("._-")[:60] or "backend"
    return f"{slug}-{hashlib.sha256(scope.encode('utf-8')).hexdigest()[:16]}"


@dataclass(frozen=True)
class Entry:
    """One cached value and what it was validated against."""

    key: str
    data: bytes
    md5: str
    etag: str | None
    size: int | None
    mtime: float | None
    age: float  # seconds since the entry was last known to be current

    def matches(self, etag: str | None, checksums: Mapping[str, str], size: int, mtime: float) -> bool:
        """True if the backend's current ``etag``/checksums (or size+mtime when it has neither) match."""
        md5 = checksums.get("md5")
        if etag or md5:
            return (bool(etag) and etag in (self.md5, self.etag)) or md5 == self.md5
        return self.etag is None and self.size == size and self.mtime is not None and self.mtime == mtime


class KVCache:
    """Entries for one backend scope in ``root``; thread-safe, shared safely between processes."""

    def __init__(self, root: str | os.PathLike[str], scope: str) -> None:
        self.dir = Path(root) / scope_dirname(scope)
        self.scope = scope
        self._lock = threading.Lock()
        self._generation: dict[str, int] = {}
        self._made = False

    def __repr__(self) -> str:
        return f"<KVCache {str(self.dir)!r}>"

    # ----------------------------------------------------------------- paths
    def path(self, key: str) -> Path:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return self.dir / digest[:2] / (digest + ENTRY_SUFFIX)

    def _ensure_dir(self, sub: Path) -> None:
        if not self._made:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            info = self.dir / "scope.json"
            if not info.exists():
                info.write_text(json.dumps({"scope": self.scope}) + "\n")
            self._made = True
        sub.mkdir(exist_ok=True, mode=0o700)

    # ----------------------------------------------------------------- generations
    def generation(self, key: str) -> int:
        """A counter that changes whenever this process writes ``key`` (see :meth:`put`)."""
        with self._lock:
            return self._generation.get(key, 0)

    def bump(self, key: str) -> None:
        """Note a write of ``key`` by this process: fills started before it will not be kept."""
        with self._lock:
            self._generation[key] = self._generation.get(key, 0) + 1

    # ----------------------------------------------------------------- entries
    def get(self, key: str) -> Entry | None:
        """The entry of ``key`` (None if there is none or it cannot be read)."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                header = json.loads(f.readline())
                data = f.read()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            log.debug("unreadable cache entry %s: %s", path, e)
            self._unlink(path)
            return None
        if header.get("key") != key or len(data) != header.get("length"):
            self._unlink(path)  # a hash collision or a torn file: never serve it
            return None
        return Entry(
            key,
            data,
            header["md5"],
            header.get("etag"),
            header.get("size"),
            header.get("mtime"),
            max(0.0, time.time() - st.st_mtime),
        )

    def put(
        self,
        key: str,
        data: bytes,
        *,
        etag: str | None = None,
        size: int | None = None,
        mtime: float | None = None,
        generation: int | None = None,
    ) -> bool:
        """Write the entry atomically; skipped (False) if this process wrote ``key`` since ``generation``."""
        header: dict[str, Any] = {
            "key": key,
            "md5": hashlib.md5(data).hexdigest(),
            "etag": etag,
            "size": size,
            "mtime": mtime,
            "length": len(data),
        }
        path = self.path(key)
        try:
            self._ensure_dir(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(json.dumps(header).encode("utf-8") + b"\n")
                    f.write(data)
                with self._lock:
                    if generation is not None and self._generation.get(key, 0) != generation:
                        os.unlink(tmp)
                        return False
                    os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:  # a full or read-only cache disk must not fail the operation
            log.warning("cannot write cache entry for %r in %s: %s", key, self.dir, e)
            return False
        return True

    def touch(self, key: str) -> None:
        """Mark the entry of ``key`` as just validated."""
        with contextlib.suppress(OSError):
            os.utime(self.path(key))

    def drop(self, key: str) -> None:
        """Remove the entry of ``key`` (no error if there is none)."""
        self._unlink(self.path(key))

    def clear(self) -> None:
        """Remove every entry of this scope (other backends' caches are left alone)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        self._made = False

    def entries(self) -> Iterator[Path]:
        """Paths of all entry files."""
        if not self.dir.is_dir():
            return
        for sub in sorted(self.dir.iterdir()):
            if sub.is_dir():
                yield from sorted(sub.glob("*" + ENTRY_SUFFIX))

    def clear_older_than(self, seconds: float) -> int:
        """Remove entries not validated for ``seconds``; return how many were removed."""
        cutoff = time.time() - seconds
        removed = 0
        for path in self.entries():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except OSError:
                continue
        return removed

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:  # an entry that cannot be removed must not fail the operation
            log.warning("cannot remove cache entry %s: %s", path, e)
