"""zodb-s3blobs' object layout: one blob revision is ``blobs/{oid_hex}/{tid_hex}.blob``.

Kept byte-for-byte, so buckets written by zodb-s3blobs keep working.
"""

from __future__ import annotations

from ZODB.utils import p64, u64

BLOB_ROOT = "blobs"
Key = tuple[str, str]  # (oid_hex, tid_hex): a revision in the local cache


def oid_hex(oid: bytes) -> str:
    """zodb-s3blobs' spelling of an oid or tid: lowercase hex without leading zeros ("0" for zero)."""
    return format(u64(oid), "x")


def blob_key(oid: bytes, tid: bytes) -> Key:
    return oid_hex(oid), oid_hex(tid)


def blob_name(oid: bytes, tid: bytes) -> str:
    """The backend name of one blob revision: ``blobs/{oid_hex}/{tid_hex}.blob``."""
    return f"{BLOB_ROOT}/{oid_hex(oid)}/{oid_hex(tid)}.blob"


def parse_blob_name(name: str) -> tuple[bytes, bytes] | None:
    """``(oid, tid)`` of a name relative to ``blobs/`` (``"{oid_hex}/{tid_hex}.blob"``), else None."""
    oid_part, sep, file_part = name.partition("/")
    if not sep or "/" in file_part or not file_part.endswith(".blob"):
        return None
    if not _is_hex(oid_part) or not _is_hex(file_part[:-5]):
        return None
    oid, tid = int(oid_part, 16), int(file_part[:-5], 16)
    if oid >= 2**64 or tid >= 2**64 or oid_part != format(oid, "x") or file_part[:-5] != format(tid, "x"):
        return None  # not a name blob_name() writes (leading zeros, upper case, out of range)
    return p64(oid), p64(tid)


def _is_hex(text: str) -> bool:
    return bool(text) and all(c in "0123456789abcdef" for c in text)
