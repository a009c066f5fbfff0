"""A Synapse Responder that streams a backend reader to the client with backpressure.

It is a Twisted push producer. Reading runs on the provider's thread pool in batches: a batch reads
chunks and hands each to the reactor (``consumer.write`` only ever runs on the reactor thread) until
the consumer pauses us or the data ends; then the batch returns its thread to the pool. A paused,
slow client therefore holds no pool thread; ``resumeProducing`` starts the next batch. At most
IN_FLIGHT chunks are read ahead of what the reactor has written, so a busy reactor does not make a
download pile up in memory.

Every step has a deadline: a batch that delivers no chunk within ``timeout`` seconds (a stopped or
unreachable server) fails the response, and a client that stays paused longer than
``resume_timeout`` is dropped. The pool thread of a hung read is released by the backend's own read
timeout; the response does not wait for it.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, BinaryIO

from synapse.logging.context import PreserveLoggingContext, make_deferred_yieldable
from synapse.media._base import Responder
from twisted.internet import defer, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

log = logging.getLogger("unistore.adapters.synapse.responder")

CHUNK_SIZE = 64 * 1024
IN_FLIGHT = 16  # chunks read but not yet written by the reactor: bounds the read-ahead to 1 MiB
RESUME_TIMEOUT = 90.0  # as Synapse's own ThreadedFileSender


class BackendTimeout(Exception):
    """The backend gave no data within the configured timeout."""


class ConsumerStopped(Exception):
    """The client went away (stopProducing)."""


class BackendResponder(Responder):
    """Streams ``reader`` (after ``first``, the bytes already read) to a consumer. See the module doc."""

    def __init__(
        self,
        reactor: Any,
        pool: ThreadPool,
        reader: BinaryIO,
        first: bytes,
        *,
        name: str,
        timeout: float,
        resume_timeout: float = RESUME_TIMEOUT,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._reader = reader
        self._first = first
        self._name = name
        self._timeout = timeout
        self._resume_timeout = resume_timeout
        self._chunk_size = chunk_size
        self._consumer: Any = None
        self._deferred: defer.Deferred[None] = defer.Deferred()
        self._paused = threading.Event()  # set: the consumer asked us to pause
        self._stop = threading.Event()  # set: no more reading, ever
        self._running = False  # a batch is on the pool (reactor thread only)
        self._watchdog: Any = None
        self._resume_timer: Any = None
        self._closed = False
        self._slots = threading.Semaphore(IN_FLIGHT)
        self.bytes_sent = 0

    # ------------------------------------------------------------------ Responder
    def write_to_consumer(self, consumer: Any) -> defer.Deferred[None]:  # an IConsumer
        self._consumer = consumer
        consumer.registerProducer(self, True)
        if self._first:
            self._deliver(self._first)
            self._first = b""
        if not self._stop.is_set():
            self._start_batch()
        return make_deferred_yieldable(self._deferred)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._cancel_timers()
        if not self._running:
            self._close_reader()

    # ------------------------------------------------------------------ IPushProducer
    def pauseProducing(self) -> None:
        self._paused.set()

    def resumeProducing(self) -> None:
        self._paused.clear()
        if self._resume_timer is not None and self._resume_timer.active():
            self._resume_timer.cancel()
        self._resume_timer = None
        if not self._running and not self._stop.is_set() and self._consumer is not None:
            self._start_batch()

    def stopProducing(self) -> None:
        self._fail(Failure(ConsumerStopped("the client stopped the download")))

    # ------------------------------------------------------------------ batches
    def _start_batch(self) -> None:
        self._running = True
        self._arm_watchdog()
        d = threads.deferToThreadPool(self._reactor, self._pool, self._read_batch)
        d.addCallbacks(self._batch_done, self._batch_failed)

    def _read_batch(self) -> bool:
        """On a pool thread: read and hand over chunks until paused, stopped or done; True = more data."""
        while not self._stop.is_set() and not self._paused.is_set():
            if not self._slots.acquire(timeout=0.05):  # the reactor is behind: wait, unless paused or stopped
                continue
            chunk = self._reader.read(self._chunk_size)
            if not chunk:
                self._slots.release()
                return False
            self._reactor.callFromThread(self._write, chunk)
        return True

    def _batch_done(self, more: bool) -> None:
        self._running = False
        self._cancel_watchdog()
        if self._stop.is_set():
            self._close_reader()
            return
        if not more:
            self._finish()
        elif self._paused.is_set():
            self._resume_timer = self._reactor.callLater(self._resume_timeout, self._resume_timed_out)
        else:  # resumed while the batch was winding down
            self._start_batch()

    def _batch_failed(self, failure: Failure) -> None:
        self._running = False
        self._cancel_watchdog()
        if not self._stop.is_set():
            log.warning("reading %s failed: %s", self._name, failure.getErrorMessage())
        self._fail(failure)
        self._close_reader()

    # ------------------------------------------------------------------ reactor-side helpers
    def _write(self, chunk: bytes) -> None:
        """A chunk from the pool (reactor thread)."""
        self._slots.release()
        self._deliver(chunk)

    def _deliver(self, chunk: bytes) -> None:
        if self._consumer is not None and not self._stop.is_set():
            self._consumer.write(chunk)
            self.bytes_sent += len(chunk)
            if self._running:
                self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.reset(self._timeout)
        else:
            self._watchdog = self._reactor.callLater(self._timeout, self._timed_out)

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.active():
            self._watchdog.cancel()
        self._watchdog = None

    def _cancel_timers(self) -> None:
        self._cancel_watchdog()
        if self._resume_timer is not None and self._resume_timer.active():
            self._resume_timer.cancel()
        self._resume_timer = None

    def _timed_out(self) -> None:
        self._watchdog = None
        log.warning("no data for %s from the backend within %.0fs: failing the download", self._name, self._timeout)
        self._fail(Failure(BackendTimeout(f"{self._name}: no data from the backend within {self._timeout:.0f}s")))

    def _resume_timed_out(self) -> None:
        self._resume_timer = None
        self._fail(
            Failure(BackendTimeout(f"{self._name}: the client did not resume within {self._resume_timeout:.0f}s"))
        )
        self._close_reader()

    def _finish(self) -> None:
        self._stop.set()
        self._cancel_timers()
        self._unregister()
        self._close_reader()
        if not self._deferred.called:
            with PreserveLoggingContext():
                self._deferred.callback(None)

    def _fail(self, failure: Failure) -> None:
        self._stop.set()
        self._paused.clear()
        self._cancel_timers()
        self._unregister()
        if not self._running:
            self._close_reader()
        if not self._deferred.called:
            with PreserveLoggingContext():
                self._deferred.errback(failure)

    def _unregister(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.unregisterProducer()

    def _close_reader(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.callInThread(self._close_on_thread)  # closing may talk to the server: off the reactor

    def _close_on_thread(self) -> None:
        try:
            self._reader.close()
        except Exception as e:  # a reader of a lost connection may fail to close; nothing to do
            log.debug("closing the reader of %s: %s", self._name, e)
