"""``-v``/``-vv``/``--log-file``: unistore's own operations with time and volume, then the engines' logs.

``-v`` shows ``unistore.*`` at DEBUG (each CLI operation with its bytes and seconds, the layers'
and backends' own records); ``-vv`` adds every other logger (botocore, s3transfer, paramiko, ...).
``--log-file FILE`` writes the same records to FILE (at least at the ``-v`` level). Every handler
replaces the secrets this process knows (from URLs, ``-o`` options, credentials) with ``***``,
so a secret never reaches the terminal or a log file, whichever logger emitted the record.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import sys
import time
from collections.abc import Iterator

log = logging.getLogger("unistore.cli")

_SECRETS: set[str] = set()


def add_secret(value: str | None) -> None:
    """Remember a secret so that every log handler masks it (and its usual encodings)."""
    if not value or len(value) < 4:
        return
    _SECRETS.add(value)
    with contextlib.suppress(ValueError):
        raw = base64.b64decode(value, validate=True)
        if raw:
            _SECRETS.add(repr(raw)[2:-1])
    _SECRETS.add(base64.b64encode(value.encode()).decode())


def scrub(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class _ScrubFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def setup(verbosity: int, log_file: str | None) -> None:
    fmt = _ScrubFormatter("%(asctime)s %(name)s %(levelname)s: %(message)s")
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(fmt if verbosity else _ScrubFormatter("unistore: %(name)s: %(message)s"))
    console.setLevel(logging.DEBUG if verbosity else logging.WARNING)
    root.addHandler(console)
    level_unistore = logging.DEBUG if verbosity or log_file else logging.WARNING
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.getLogger("unistore").setLevel(level_unistore)
    if log_file:
        fh = logging.FileHandler(log_file)
        fh.setFormatter(fmt)
        fh.setLevel(logging.DEBUG)
        root.addHandler(fh)


@contextlib.contextmanager
def timed(op: str, name: str, size: int | None = None) -> Iterator[dict[str, int]]:
    """Log ``op name: N bytes in S s`` at DEBUG when the block ends; the block may set ``["bytes"]``."""
    record = {"bytes": size or 0}
    t = time.perf_counter()
    ok = False
    try:
        yield record
        ok = True
    finally:
        if log.isEnabledFor(logging.DEBUG):
            took = time.perf_counter() - t
            log.debug("%s %s: %d bytes in %.3f s%s", op, name, record["bytes"], took, "" if ok else " (failed)")
