"""How the ZODB adapter opens the backends it is given, and which of them it owns (closes)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ...backends.base import Backend
from ...errors import BackendAlreadyExists, BackendDoesNotExist, ConfigError
from ...layers.keys import KeySource

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


#: the Python argument names of the data layer options (ZConfig names them with dashes)
PYTHON_NAMES = {
    "key": "encryption_key",
    "key_file": "encryption_key_file",
    "old_keys": "old_encryption_keys",
    "compression": "compression",
}


@dataclass(frozen=True)
class DataLayers:
    """Client-side layers around the blob backend(s): compression (zstd), then encryption.

    Blobs are stored compressed, then encrypted; the local cache and staging files stay plaintext.
    ``names`` maps each option to the name an error message gives it (a Python argument or a
    ZConfig key).
    """

    key: KeySource | None = field(default=None, repr=False)
    key_file: str | os.PathLike[str] | None = None
    old_keys: Sequence[KeySource] = field(default=(), repr=False)
    compression: str | None = None
    names: Mapping[str, str] = field(default_factory=lambda: dict(PYTHON_NAMES))

    def __bool__(self) -> bool:
        return self.key is not None or self.key_file is not None or self.compression is not None or bool(self.old_keys)

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the option whose value is bad (reads the key files)."""
        from ...layers.stack import parse_compression

        if self.key is not None and self.key_file is not None:
            raise ConfigError(f"give {self.names['key']} or {self.names['key_file']}, not both")
        if self.old_keys and self.key is None and self.key_file is None:
            raise ConfigError(f"{self.names['old_keys']} is given without a current key ({self.names['key_file']})")
        if self.compression is not None:
            try:
                parse_compression(self.compression)
            except ConfigError as e:
                raise ConfigError(f"{self.names['compression']}: {e}") from None
        if self.key is not None or self.key_file is not None or self.old_keys:
            from ...layers.keys import resolve_key

            for option, sources in (
                ("key", [self.key]),
                ("key_file", [self.key_file]),
                ("old_keys", list(self.old_keys)),
            ):
                for source in sources:
                    if source is None:
                        continue
                    try:
                        resolve_key(source)
                    except ConfigError as e:
                        raise ConfigError(f"{self.names[option]}: {e}") from None

    def wrap(self, backend: Backend) -> Backend:
        """``backend`` inside the layers (itself when no option is set)."""
        if not self:
            return backend
        from ...layers.stack import wrap_data_layers

        self.check()
        try:
            return wrap_data_layers(
                backend,
                encryption_key=self.key,
                encryption_key_file=self.key_file,
                old_keys=self.old_keys,
                compression=self.compression,
            )
        except ImportError as e:  # the 'encrypt' or 'compress' extra is missing
            raise ConfigError(
                f"{self.names['key_file'] if self.key or self.key_file else self.names['compression']} needs "
                f"pip install 'unistore[encrypt,compress]' ({e})"
            ) from None
