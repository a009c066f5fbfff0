"""s3kv's layout and value encoding: user keys <-> backend names, values <-> the bytes stored.

Layout (s3kv 0.1.5's): the value of key ``k`` is the object ``s3kv/<k>.json``.

Values are stored as s3kv stores them, ``json.dumps(value)`` with Python's default separators, so
s3kv 0.1.5 reads what unistore writes and the other way round. ``bytes`` (which JSON cannot hold)
are stored as a JSON object s3kv reads as a plain dict::

    {"$unistore": "bytes", "base64": "<standard base64>"}

and a dict value that itself has the key ``"$unistore"`` is wrapped once, so that no JSON value is
ever mistaken for bytes::

    {"$unistore": "json", "value": <the dict>}
"""

from __future__ import annotations

import base64
import json
from typing import Any

from ...errors import InvalidName
from ...names import HID_SUFFIX, TMP_SUFFIX

ROOT = "s3kv"
SUFFIX = ".json"
MARKER = "$unistore"
MAX_KEY_BYTES = 1000  # S3 keys are at most 1,024 bytes: room for "s3kv/", ".json" and a short prefix


def check_key(key: object) -> str:
    """Return ``key`` if it can be stored and listed back unchanged, else raise :class:`InvalidName`.

    A key is a non-empty ``str``; it may hold ``/`` (it then spans "directories"), but no segment
    before the last may be empty, ``.`` or ``..`` or end in ``.tmp``/``.hid``, and it may not hold
    a backslash, NUL or other control characters. Nothing is written before this check.
    """
    if not isinstance(key, str):
        raise InvalidName(f"s3kv key must be a str, not {type(key).__name__}: {key!r}")
    if not key:
        raise InvalidName("s3kv key must not be empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key) or "\\" in key:
        raise InvalidName(f"s3kv key must not contain a backslash or control characters: {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidName(f"s3kv key is not valid Unicode (lone surrogate): {key!r}") from None
    if size > MAX_KEY_BYTES:
        raise InvalidName(f"s3kv key is too long ({size} bytes, at most {MAX_KEY_BYTES}): {key[:60]!r}...")
    *dirs, _last = key.split("/")
    for segment in dirs:
        if segment in ("", ".", ".."):
            raise InvalidName(f"s3kv key must not have an empty, '.' or '..' segment before its last: {key!r}")
        if segment.endswith(TMP_SUFFIX) or segment.endswith(HID_SUFFIX):
            raise InvalidName(f"s3kv key segments must not end in {TMP_SUFFIX} or {HID_SUFFIX}: {key!r}")
    return key


def key_name(key: object) -> str:
    """The backend name of ``key`` (``s3kv/<key>.json``), after :func:`check_key`."""
    return f"{ROOT}/{check_key(key)}{SUFFIX}"


def name_key(relative: str) -> str | None:
    """The user key of a name below ``s3kv/`` (``a/b.json`` -> ``a/b``); None for foreign objects."""
    if not relative.endswith(SUFFIX):
        return None
    key = relative[: -len(SUFFIX)]
    try:
        return check_key(key)
    except InvalidName:
        return None


def raw_or_key(key: str) -> str:
    """``key``, or the user key inside s3kv's raw form ``s3kv/<key>.json`` (as s3kv's get_tags takes)."""
    if key.startswith(ROOT + "/") and key.endswith(SUFFIX) and len(key) > len(ROOT) + 1 + len(SUFFIX):
        return key[len(ROOT) + 1 : -len(SUFFIX)]
    return key


def encode(value: Any, key: str = "") -> bytes:
    """The stored bytes of ``value`` (any JSON value, or bytes): byte-identical to s3kv for JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = {MARKER: "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    elif isinstance(value, dict) and MARKER in value:
        value = {MARKER: "json", "value": value}
    try:
        return json.dumps(value).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"value of s3kv key {key!r} is neither JSON nor bytes: {e}") from None


def decode(data: bytes, key: str = "") -> Any:
    """The value stored as ``data`` (the inverse of :func:`encode`; reads anything s3kv wrote)."""
    try:
        value = json.loads(data)
    except ValueError as e:
        raise ValueError(f"s3kv key {key!r} does not hold JSON: {e}") from None
    if isinstance(value, dict) and MARKER in value:
        kind = value[MARKER]
        if kind == "bytes" and isinstance(value.get("base64"), str):
            return base64.b64decode(value["base64"])
        if kind == "json" and isinstance(value.get("value"), dict):
            return value["value"]
    return value
