"""Synapse's media store layout, as synapse-s3-storage-provider keeps it in the bucket (after the prefix).

``local_content/ab/cd/rest``, ``local_thumbnails/ab/cd/rest/<w>-<h>-<type>-<subtype>-<method>``,
``remote_content/<origin>/ab/cd/rest`` and ``remote_thumbnail/<origin>/ab/cd/rest/...``; the URL
preview cache (``url_cache*``) is never offloaded.
"""

from __future__ import annotations

import posixpath

MEDIA_DIRS = ("local_content", "local_thumbnails", "remote_content", "remote_thumbnail")


def _split(file_id: str) -> tuple[str, str, str]:
    return file_id[:2], file_id[2:4], file_id[4:]


def content_path(origin: str, filesystem_id: str, media_type: str) -> str:
    """The relative path of a media file (``media_type`` is ``local`` or ``remote``)."""
    if media_type == "local":
        return posixpath.join("local_content", *_split(filesystem_id))
    if media_type == "remote":
        return posixpath.join("remote_content", origin, *_split(filesystem_id))
    raise ValueError(f"unexpected media type {media_type!r}")


def thumbnail_dir(origin: str, filesystem_id: str, media_type: str) -> str:
    """The relative path of the directory holding a media file's thumbnails."""
    if media_type == "local":
        return posixpath.join("local_thumbnails", *_split(filesystem_id))
    if media_type == "remote":
        return posixpath.join("remote_thumbnail", origin, *_split(filesystem_id))
    raise ValueError(f"unexpected media type {media_type!r}")


def is_media_path(path: str) -> bool:
    """True for a path inside one of the four offloaded media directories (and nothing odd in it)."""
    parts = path.split("/")
    return len(parts) >= 2 and parts[0] in MEDIA_DIRS and all(p not in ("", ".", "..") for p in parts)
