"""Listings on S3: paginated ListObjectsV2 pages, directory and recursive entries, batch deletes.

Directories are zero-byte ``dir/`` markers (written by ``mkdir``) or implied by the keys below
them. ``list`` asks with the delimiter ``/``; ``list_recursive`` asks once without it (one
request per 1,000 keys, not one per directory).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from ...errors import PermissionDenied
from ...names import is_listable
from ..base import ItemInfo
from .errors import error_code, translate

T = TypeVar("T")

DELETE_BATCH = 1000  # DeleteObjects limit


def page_count(page: dict[str, Any]) -> int:
    """Keys plus common prefixes in a ListObjectsV2 page (not every service sends KeyCount)."""
    return len(page.get("Contents", [])) + len(page.get("CommonPrefixes", []))


def chain_first(first: T | None, rest: Iterator[T]) -> Iterator[T]:
    if first is not None:
        yield first
    yield from rest


def pages(client: Any, bucket: str, prefix: str, delimiter: str = "", max_keys: int = 0) -> Iterator[dict[str, Any]]:
    """The ListObjectsV2 pages below ``prefix`` (one request per page, fetched as consumed)."""
    args: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        args["Delimiter"] = delimiter
    if max_keys:
        args["MaxKeys"] = max_keys
    while True:
        try:
            resp = client.list_objects_v2(**args)
        except Exception as e:
            raise translate(e, f"list {prefix}") from None
        yield resp
        if max_keys or not resp.get("IsTruncated"):
            return
        args["ContinuationToken"] = resp["NextContinuationToken"]


def any_key(client: Any, bucket: str, prefix: str) -> bool:
    """True if some key starts with ``prefix``."""
    return page_count(next(pages(client, bucket, prefix, max_keys=1))) > 0


def dir_entries(prefix: str, all_pages: Iterable[dict[str, Any]]) -> Iterator[ItemInfo]:
    """The sorted items and subdirectories of a delimited listing of ``prefix``."""
    for page in all_pages:
        files = (
            ItemInfo(o["Key"][len(prefix) :], True, o["Size"], False, 0, o["LastModified"].timestamp())
            for o in page.get("Contents", [])
            if o["Key"] != prefix
        )
        dirs = (ItemInfo(p["Prefix"][len(prefix) :].rstrip("/"), True, 0, True) for p in page.get("CommonPrefixes", []))
        for item in heapq.merge(files, dirs, key=lambda i: i.name):
            if is_listable(item.name):
                yield item


def recursive_entries(prefix: str, all_pages: Iterable[dict[str, Any]]) -> Iterator[ItemInfo]:
    """Every item (no directory markers) of a flat listing of ``prefix``, names relative to it."""
    for page in all_pages:
        for o in page.get("Contents", []):
            rel = o["Key"][len(prefix) :]
            if not rel or rel.endswith("/"):
                continue  # directory markers
            if all(is_listable(part) for part in rel.split("/")):
                yield ItemInfo(rel, True, o["Size"], False, 0, o["LastModified"].timestamp())


def delete_batch(client: Any, bucket: str, batch: list[dict[str, str]], bypass_governance: bool) -> None:
    """One DeleteObjects request (at most 1,000 keys); PermissionDenied if any key was refused."""
    args: dict[str, Any] = {"Bucket": bucket, "Delete": {"Objects": batch, "Quiet": True}}
    if bypass_governance:
        args["BypassGovernanceRetention"] = True
    try:
        resp = client.delete_objects(**args)
    except Exception as e:
        raise translate(e, "delete batch") from None
    errors = resp.get("Errors", [])
    if errors:
        first = errors[0]
        raise PermissionDenied(
            f"{len(errors)} of {len(batch)} deletes failed, e.g. {first.get('Key')}: {first.get('Code')}"
        )


def delete_prefix(client: Any, bucket: str, prefix: str, bypass_governance: bool = False) -> int:
    """Delete every object (and every version) under ``prefix`` in DeleteObjects batches of 1,000."""
    deleted = 0
    batch: list[dict[str, str]] = []

    def flush() -> None:
        nonlocal deleted, batch
        if batch:
            delete_batch(client, bucket, batch, bypass_governance)
            deleted += len(batch)
            batch = []

    try:
        for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                batch.append({"Key": v["Key"], "VersionId": v["VersionId"]})
                if len(batch) >= DELETE_BATCH:
                    flush()
        flush()
        return deleted
    except PermissionDenied:
        raise
    except Exception as e:
        if error_code(e) not in ("NotImplemented", "501"):
            raise translate(e, "list versions") from None
    for page in pages(client, bucket, prefix):
        for obj in page.get("Contents", []):
            batch.append({"Key": obj["Key"]})
            if len(batch) >= DELETE_BATCH:
                flush()
    flush()
    return deleted
