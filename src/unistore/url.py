"""URL -> backend.

Schemes are registered through the entry-point group ``unistore.backends``: each entry point maps a
scheme name to a callable ``from_url(url, **options) -> Backend``. unistore registers its own
backends that way in its pyproject.toml, and a third-party package can add a scheme by declaring::

    [project.entry-points."unistore.backends"]
    myscheme = "mypackage.backend:from_url"

The built-in table below is used when the package metadata is not available (running from a source
tree without installing).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from .backends.base import Backend
from .errors import BackendURLInvalid, NoBackendGiven

ENTRY_POINT_GROUP = "unistore.backends"

_BUILTIN = {
    "memory": "unistore.backends.memory:MemoryBackend.from_url",
    "file": "unistore.backends.posixfs:PosixFS.from_url",
    "sftp": "unistore.backends.sftp:SFTPBackend.from_url",
    "s3": "unistore.backends.s3:S3Backend.from_url",
    "b2": "unistore.backends.s3:S3Backend.from_url",
    "rclone": "unistore.backends.rclone:RcloneBackend.from_url",
}

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def _load(target: str) -> Callable[..., Backend]:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def schemes() -> dict[str, str]:
    """All known schemes: scheme -> ``module:attr`` of its factory."""
    table = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        table[ep.name] = ep.value
    return table


def redact(url: str) -> str:
    """The URL with any password/secret replaced by ``***``, for logs and error messages."""
    # greedy up to the last "@": a secret may hold "/" or "@" when the user did not URL-quote it
    m = re.match(r"^([a-z0-9+.-]+:(?://)?)(.*)@(.*)$", url, re.IGNORECASE | re.DOTALL)
    if not m:
        return url
    userinfo = m.group(2)
    user = userinfo.split(":", 1)[0]
    return f"{m.group(1)}{user}:***@{m.group(3)}" if ":" in userinfo else url


def open_backend(url: str | None, **options: Any) -> Backend:
    """Create (not open) the backend a URL names, e.g. ``file:///srv/store`` or ``s3:/bucket/prefix``."""
    if not url:
        raise NoBackendGiven("no backend URL given")
    m = _SCHEME.match(url)
    if not m:
        raise BackendURLInvalid(f"not a backend URL (no scheme): {redact(url)!r}")
    scheme = m.group(1).lower()
    target = schemes().get(scheme)
    if target is None:
        known = ", ".join(sorted(schemes()))
        raise BackendURLInvalid(f"unknown backend scheme {scheme!r} in {redact(url)!r} (known: {known})")
    try:
        factory = _load(target)
    except ImportError as e:
        raise BackendURLInvalid(
            f"backend for {scheme!r} cannot be imported ({e}); install the matching extra, e.g. unistore[{scheme}]"
        ) from None
    return factory(url, **options)
