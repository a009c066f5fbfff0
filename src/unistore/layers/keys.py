"""Encryption keys for :class:`~unistore.layers.encrypt.EncryptLayer`: where they come from, their ids.

A key is 32 random bytes (AES-256). It can be given as bytes, read from a key file (32 raw bytes,
64 hex digits or base64 of 32 bytes, surrounding whitespace ignored), taken from an environment
variable (hex or base64) or returned by a callable (a secrets manager, a KMS unwrap). A key's id is
the first 8 bytes of HMAC-SHA256(key, "unistore key id"): stored in every item's header, it tells
which key decrypts an item without revealing anything about the key. Keys never appear in a repr,
a log record or an error message; only their ids do (as hex).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from ..errors import ConfigError

KEY_SIZE = 32
KEY_ID_SIZE = 8

KeySource = bytes | bytearray | str | os.PathLike[str] | Callable[[], bytes]


def key_id(key: bytes) -> bytes:
    """The 8-byte id of ``key``."""
    return hmac.new(key, b"unistore key id", hashlib.sha256).digest()[:KEY_ID_SIZE]


def generate_key() -> bytes:
    """32 random bytes from the OS."""
    return secrets.token_bytes(KEY_SIZE)


def _decode_text(text: str, origin: str) -> bytes:
    text = text.strip()
    if len(text) == 2 * KEY_SIZE:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == KEY_SIZE:
        return raw
    raise ConfigError(f"{origin} does not hold a 32-byte key (64 hex digits or base64 of 32 bytes)")


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """A key from a file: 32 raw bytes, or 64 hex digits / base64 text."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the key file {os.fspath(path)!r}: {e.strerror}") from None
    if len(data) == KEY_SIZE:
        return data
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise ConfigError(f"the key file {os.fspath(path)!r} does not hold a 32-byte key") from None
    return _decode_text(text, f"the key file {os.fspath(path)!r}")


def key_from_env(variable: str) -> bytes:
    """A key from environment variable ``variable`` (hex or base64)."""
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"the environment variable {variable} holds no key")
    return _decode_text(value, f"the environment variable {variable}")


def resolve_key(source: KeySource) -> bytes:
    """Turn a key source (bytes, a key file path, a callable) into 32 key bytes."""
    if callable(source):
        key = source()
        if not isinstance(key, bytes | bytearray):
            raise ConfigError("a key callable must return bytes")
        source = bytes(key)
    if isinstance(source, bytes | bytearray):
        if len(source) != KEY_SIZE:
            raise ConfigError(f"an encryption key must be {KEY_SIZE} bytes, not {len(source)}")
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        return read_key_file(source)
    raise ConfigError(f"unsupported key source of type {type(source).__name__}")
