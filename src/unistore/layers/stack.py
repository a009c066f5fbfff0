"""Building the client-side layer stack from options, as the CLI and the adapters take them.

``wrap_data_layers(backend, encryption_key_file=..., compression="zstd:6")`` returns the backend
wrapped as data flows: compression (outermost), then encryption, then the backend. Options left
None add nothing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..backends.base import Backend
from ..errors import ConfigError
from .keys import KeySource


def parse_compression(spec: str) -> int | None:
    """``"zstd"`` -> 3, ``"zstd:9"`` -> 9, ``"none"``/``"off"``/``""`` -> None; anything else is a ConfigError."""
    spec = spec.strip().lower()
    if spec in ("", "none", "off", "no", "false"):
        return None
    algo, _, level = spec.partition(":")
    if algo != "zstd":
        raise ConfigError(f"unknown compression {spec!r}: use zstd or zstd:LEVEL (1-22)")
    if not level:
        return 3
    try:
        value = int(level)
    except ValueError:
        raise ConfigError(f"compression level must be a number 1-22, not {level!r}") from None
    if not 1 <= value <= 22:
        raise ConfigError(f"compression level must be 1-22, not {value}")
    return value


def wrap_data_layers(
    backend: Backend,
    *,
    encryption_key: KeySource | None = None,
    encryption_key_file: str | os.PathLike[str] | None = None,
    encryption_key_env: str | None = None,
    old_keys: Sequence[KeySource] = (),
    compression: str | None = None,
) -> Backend:
    """``backend`` wrapped in the compression and encryption layers the options ask for."""
    given = [k for k in (encryption_key, encryption_key_file, encryption_key_env) if k is not None]
    if len(given) > 1:
        raise ConfigError("give one encryption key source: a key, a key file or an environment variable")
    if old_keys and not given:
        raise ConfigError("old keys were given without a current encryption key")
    if given:
        from .encrypt import EncryptLayer  # needs the 'encrypt' extra (cryptography)

        backend = EncryptLayer(
            backend,
            key=encryption_key,
            key_file=encryption_key_file,
            key_env=encryption_key_env,
            old_keys=old_keys,
        )
    level = parse_compression(compression) if compression is not None else None
    if level is not None:
        from .compress import CompressLayer  # needs the 'compress' extra (zstandard)

        backend = CompressLayer(backend, level=level)
    return backend
