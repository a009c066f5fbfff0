"""Hash algorithms by name: everything hashlib has, plus ``blake3`` (the optional ``blake3`` package).

borgstore's names: ``new("sha256")``, ``new("blake3")``; an unknown name is a ValueError naming it.
"""

from __future__ import annotations

import hashlib
from typing import Any

BLAKE3 = "blake3"


def new_hash(algorithm: str, data: bytes = b"") -> Any:
    """A hash object for ``algorithm`` (hashlib's names or ``blake3``)."""
    if algorithm == BLAKE3:
        try:
            from blake3 import blake3  # type: ignore[import-not-found]
        except ImportError:
            raise ValueError("hash algorithm 'blake3' needs the blake3 package ('unistore[blake3]')") from None
        return blake3(data)
    try:
        return hashlib.new(algorithm, data)
    except (ValueError, TypeError):
        raise ValueError(f"unknown hash algorithm: {algorithm!r}") from None
