"""How the ZODB adapter opens the backends it is given, and which of them it owns (closes)."""

from __future__ import annotations

import logging

from ...backends.base import Backend
from ...errors import BackendAlreadyExists, BackendDoesNotExist

log = logging.getLogger("unistore.adapters.zodb.backends")


def open_owned(backend: Backend | str, create: bool, owned: list[Backend], owns: bool | None) -> Backend:
    """Open a backend given as object or URL (creating its storage only when ``create``).

    ``owned`` collects what the caller must close later: a backend made from a URL (unless
    ``owns`` is false) and, when ``owns`` is true, a backend object too.
    """
    if isinstance(backend, str):
        from ...url import open_backend

        backend = open_backend(backend)
        if owns is None or owns:
            owned.append(backend)
    elif owns:
        owned.append(backend)
    if not backend.opened:
        try:
            backend.open()
        except BackendDoesNotExist as e:
            if not create:
                raise BackendDoesNotExist(
                    f"{backend!r} does not exist ({e}); create it first, or ask for its creation"
                    " (create=True in Python, create-bucket true in <s3blobstorage>, --create for the CLI)"
                ) from None
            try:
                backend.create()
            except BackendAlreadyExists:  # another process created it a moment ago
                pass
            backend.open()
    return backend


def close_all(backends: list[Backend]) -> None:
    """Close the open ones of ``backends``, the last opened first; failures are logged."""
    for be in reversed(backends):
        try:
            if be.opened:
                be.close()
        except Exception:
            log.warning("closing %r failed", be, exc_info=True)
