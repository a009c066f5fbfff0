"""Keeping S3 secrets (secret key, session token, SSE-C key) out of reprs and of every log record.

botocore logs request headers (the SSE-C key among them) and s3transfer logs call arguments at
DEBUG, from loggers such as ``s3transfer.tasks`` whose records a filter on a parent logger never
sees. So the scrubbing happens where every record is born: :func:`protect` installs (once) a
log-record factory that replaces each registered secret by ``***`` in the formatted message of
any record, from any logger, for every handler. It costs nothing for records below the level a
logger emits (those are never created).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_installed: Callable[..., logging.LogRecord] | None = None


class Secret:
    """Holds a secret; its repr and str never show it."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def _scrub_record(record: logging.LogRecord) -> None:
    try:
        msg = record.getMessage()
    except Exception:  # a broken format string: leave the record to logging's own error handling
        return
    clean = scrub(msg)
    if clean != msg:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = scrub(text)  # formatters use exc_text when it is set


def protect(secrets: Iterable[str]) -> None:
    """Register ``secrets`` (strings of 8+ characters) to be scrubbed from every log record."""
    global _installed
    new = {s for s in secrets if len(s) >= 8}
    if not new:
        return
    with _LOCK:
        _SECRETS.update(new)
        if _installed is not None and logging.getLogRecordFactory() is _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _SECRETS:
                _scrub_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = factory
