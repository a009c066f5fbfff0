"""``S3StorageProviderBackend``: a Synapse media storage provider on any unistore backend.

A drop-in for synapse-s3-storage-provider (and its enhanced fork): the same class name, the same
config keys and the same object layout (``prefix + path``, with the prefix used verbatim as
upstream does), plus ``url:`` for any unistore backend. See docs/synapse.md.

Synapse calls :meth:`parse_config` at config load (no network I/O: errors name the key and stop
start-up) and then ``S3StorageProviderBackend(hs, parsed)``. All blocking work runs on the
provider's own thread pool (sized like the backend's connection pool) through Synapse's
``ModuleApi.defer_to_threadpool``; the backend is opened lazily on that pool, so ``__init__`` does no
network I/O either. The pool stops on the reactor's shutdown trigger.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, BinaryIO

from synapse.config._base import ConfigError as SynapseConfigError
from synapse.logging.context import make_deferred_yieldable, run_in_background
from synapse.media._base import FileInfo, Responder
from synapse.media.storage_provider import StorageProvider
from synapse.util.async_helpers import timeout_deferred
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool

from ...backends.base import Backend
from ...errors import BackendConnectionError, ObjectNotFound
from ...url import redact
from .config import ProviderConfig, ProviderConfigError, build_backend
from .config import parse_config as parse_provider_config
from .responder import CHUNK_SIZE, BackendResponder
from .restore import AutoRestore, Restorer

log = logging.getLogger("unistore.adapters.synapse")


class S3StorageProviderBackend(StorageProvider):
    """Stores and fetches Synapse media files through a unistore backend."""

    def __init__(self, hs: Any, config: ProviderConfig) -> None:
        self._module_api = hs.get_module_api()
        self._reactor = hs.get_reactor()
        self._clock = hs.get_clock()
        self.cache_directory: str = hs.config.media.media_store_path
        self.config = config
        self.backend: Backend = build_backend(config)
        self._open_lock = threading.Lock()
        self._pool = ThreadPool(minthreads=0, maxthreads=config.threadpool_size, name="unistore-synapse")
        self._pool.start()
        self._restore: AutoRestore | None = None
        if config.auto_restore:
            restorer = Restorer(
                self._opened_backend,
                self.cache_directory,
                config.prefix,
                batch_size=config.auto_restore_batch_size,
                max_bytes=config.auto_restore_max_bytes,
                workers=config.restore_workers,
            )
            self._restore = AutoRestore(
                self._reactor,
                restorer,
                startup=config.auto_restore_startup,
                interval=config.auto_restore_monitor_interval,
            )
            self._reactor.callWhenRunning(self._restore.start)
        self._reactor.addSystemEventTrigger("during", "shutdown", self._shutdown)

    def __str__(self) -> str:
        return f"S3StorageProviderBackend[{redact(self.config.url)} prefix={self.config.prefix!r}]"

    @staticmethod
    def parse_config(config: dict[str, Any]) -> ProviderConfig:
        """Validate the provider's ``config:`` block; a bad key stops Synapse with a message naming it."""
        try:
            return parse_provider_config(config)
        except ProviderConfigError as e:
            raise SynapseConfigError(e.message, path=(e.key,)) from None

    # ------------------------------------------------------------------ threads
    def _opened_backend(self) -> Backend:
        """The backend, opened on first use (on a pool thread: opening may talk to the server)."""
        if not self.backend.opened:
            with self._open_lock:
                if not self.backend.opened:
                    self.backend.open()
        return self.backend

    def _shutdown(self) -> None:
        if self._restore is not None:
            self._restore.stop()
        self._pool.stop()
        try:
            if self.backend.opened:
                self.backend.close()
        except Exception as e:  # shutting down: nothing else to do
            log.debug("closing %s: %s", self.backend, e)

    def _key(self, path: str) -> str:
        return self.config.prefix + path

    # ------------------------------------------------------------------ StorageProvider
    async def store_file(self, path: str, file_info: FileInfo) -> None:
        """Upload ``media_store_path/path`` (streamed from disk, on the pool)."""
        await self._module_api.defer_to_threadpool(self._pool, self._store, path)

    def _store(self, path: str) -> None:
        local = os.path.join(self.cache_directory, path)
        key = self._key(path)
        t0 = time.monotonic()
        backend = self._opened_backend()
        with open(local, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            backend.store_file(key, f, size=size)
        log.debug("stored %s (%d bytes) in %.3fs", key, size, time.monotonic() - t0)
        if self.config.delete_local_after_upload:
            stored = backend.info(key)
            if stored.exists and stored.size == size:
                os.remove(local)
                _remove_empty_dirs(os.path.dirname(local), self.cache_directory)
            else:
                log.warning("kept %s: the stored object has %d bytes, not %d", local, stored.size, size)

    async def fetch(self, path: str, file_info: FileInfo) -> Responder | None:
        """A streaming Responder for ``path``, or None if the backend does not have it."""
        key = self._key(path)
        abandoned = threading.Event()
        d = run_in_background(self._module_api.defer_to_threadpool, self._pool, self._open, key, abandoned)
        d = timeout_deferred(deferred=d, timeout=self.config.timeout, clock=self._clock)
        try:
            opened = await make_deferred_yieldable(d)
        except defer.TimeoutError:
            abandoned.set()
            log.warning("fetch %s: no answer from %s within %.0fs", key, self, self.config.timeout)
            raise BackendConnectionError(
                f"{key}: no answer from the media backend within {self.config.timeout:.0f}s"
            ) from None
        if opened is None:
            log.info("media %s not found in %s", key, self)
            return None
        reader, first = opened
        log.info("fetching %s from %s", key, self)
        return BackendResponder(self._reactor, self._pool, reader, first, name=key, timeout=self.config.timeout)

    def _open(self, key: str, abandoned: threading.Event) -> tuple[BinaryIO, bytes] | None:
        """On the pool: open a reader of ``key`` and read its first chunk (so errors come before headers)."""
        try:
            reader = self._opened_backend().open_reader(key)
        except ObjectNotFound:
            return None
        try:
            first = reader.read(CHUNK_SIZE)
        except BaseException:
            reader.close()
            raise
        if abandoned.is_set():  # the request gave up on us already
            reader.close()
            return None
        return reader, first


def _remove_empty_dirs(directory: str, stop_at: str) -> None:
    stop_at = os.path.abspath(stop_at)
    directory = os.path.abspath(directory)
    while directory.startswith(stop_at + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)
