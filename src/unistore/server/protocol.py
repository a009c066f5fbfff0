"""borgstore 0.7's REST wire protocol: the parts the client (backends/rest.py) and the server share.

Requests carry ``Accept: application/vnd.x.borgstore.rest.v1`` (else 406) and, when the server has
credentials, HTTP basic auth (else 401). Item names are URL paths relative to the served store.

| request | meaning |
|---|---|
| ``HEAD /name`` | info: 200 with ``Content-Length`` (the size), ``X-BorgStore-Is-Directory``, |
| | ``X-BorgStore-Atime``, ``X-BorgStore-Mtime``; 404 when missing |
| ``GET /name`` (+ ``Range``) | load (206 for a range) |
| ``GET /name/`` | list: JSON ``[{"name", "size", "directory", "atime", "mtime"}]`` |
| ``POST /name`` (+ ``X-Content-hash-sha256``) | store; 422 if the body does not match the hash |
| ``DELETE /name`` | delete |
| ``POST /name?cmd=mkdir``, ``DELETE /name?cmd=rmdir`` | directories |
| ``POST /?cmd=move&current=A&new=B`` | move |
| ``POST /name?cmd=hash&algorithm=A`` | hex digest as text |
| ``POST /?cmd=quota`` | JSON ``{"limit", "usage"}`` |
| ``POST /?cmd=gather`` (JSON sources) | the ranges, concatenated |
| ``POST /?cmd=defrag&target=&algorithm=&namespace=&levels=`` (JSON sources) | the target name as text |
| ``POST /?cmd=create``, ``DELETE /?cmd=destroy`` | lifecycle |
"""

from __future__ import annotations

from .. import errors

MEDIA_TYPE = "application/vnd.x.borgstore.rest.v1"
HASH_HEADER = "X-Content-hash-sha256"
#: unistore's own addition: the exact error class name (borgstore's client ignores it)
ERROR_HEADER = "X-Unistore-Error"

#: error class -> HTTP status, most specific first (borgstore's mapping)
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (errors.ObjectNotFound, 404),
    (errors.BackendDoesNotExist, 410),
    (errors.BackendAlreadyExists, 409),
    (errors.BackendMustBeOpen, 412),
    (errors.BackendMustNotBeOpen, 412),
    (errors.PermissionDenied, 403),
    (errors.QuotaExceeded, 507),
    (errors.ReadRangeError, 416),
    (ValueError, 400),
    (TypeError, 400),
]


def status_for(exc: Exception) -> int:
    for cls, status in ERROR_STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_for(status: int, text: str, name: str, error_class: str | None = None) -> Exception:
    """The unistore error a client raises for an error status (``text``: the server's message).

    ``error_class`` (the ``X-Unistore-Error`` header of a unistore server) names the exact class.
    """
    text = text.strip()[:500]
    cls = getattr(errors, error_class, None) if error_class else None
    if (
        isinstance(cls, type)
        and issubclass(cls, errors.UnistoreError)
        and cls is not errors.CapabilityNotSupported
        and status >= 400
    ):
        return cls(text or name)
    if status == 404:
        return errors.ObjectNotFound(name)
    if status == 410:
        return errors.BackendDoesNotExist(text or name)
    if status == 409:
        return errors.BackendAlreadyExists(text or name)
    if status == 412:
        if "must not be open" in text:
            return errors.BackendMustNotBeOpen(text)
        return errors.BackendMustBeOpen(text)
    if status in (401, 407):
        return errors.CredentialsError(f"the REST server refused the credentials ({status})")
    if status == 403:
        return errors.PermissionDenied(f"{name}: {text}" if text else name)
    if status == 507:
        return errors.QuotaExceeded(text or name)
    if status == 416:
        return errors.ReadRangeError(text or name)
    if status in (400, 422):
        return errors.InvalidName(text) if "name" in text.lower() else errors.ConfigError(text or "bad request")
    if status in (502, 503, 504):
        return errors.BackendConnectionError(f"REST server unavailable ({status}): {text}")
    return errors.BackendError(f"REST server error {status}: {text}")


def make_range(offset: int, size: int | None, total: int | None = None) -> str | None:
    """An HTTP ``Range`` value for ``(offset, size)``; None when the whole item is wanted."""
    if offset < 0:
        if size is None:
            return f"bytes={offset}"
        if total is None:
            raise ValueError("a negative offset with a size needs the total size")
        start = max(total + offset, 0)
        return f"bytes={start}-{start + size - 1}" if size else f"bytes={start}-{start}"
    if size is None:
        return f"bytes={offset}-" if offset else None
    return f"bytes={offset}-{offset + max(size, 1) - 1}"


def parse_range(value: str | None) -> tuple[int, int | None]:
    """``(offset, size)`` from a ``Range`` value (one range, bytes only); ValueError otherwise."""
    if not value:
        return 0, None
    unit, _, spec = value.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise ValueError(f"unsupported Range: {value[:80]!r}")
    spec = spec.strip()
    if spec.startswith("-"):
        return int(spec), None
    first, _, last = spec.partition("-")
    offset = int(first)
    if offset < 0:
        raise ValueError(f"bad Range: {value[:80]!r}")
    if not last:
        return offset, None
    end = int(last)
    if end < offset:
        raise ValueError(f"bad Range: {value[:80]!r}")
    return offset, end - offset + 1
