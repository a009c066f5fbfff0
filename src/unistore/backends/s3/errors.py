"""botocore and obstore exceptions -> :mod:`unistore.errors` (one place, both engines).

The contract (docs/s3.md, "Errors"): ObjectNotFound for a missing item, BackendDoesNotExist for a
missing bucket, CredentialsError for bad or missing credentials and wrong signatures,
PermissionDenied for policies, holds and retention, IntegrityError for a missing or wrong SSE-C
key, UploadNotFound for an unknown multipart upload id, BackendConnectionError for what retrying
may cure (connection failures, timeouts, 5xx except 501), BackendError for everything else.
botocore sets ``response`` to None on ReadTimeoutError, ConnectionClosedError and
ResponseStreamingError: every helper here copes with a missing or None ``response``.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import (
    BackendConnectionError,
    BackendDoesNotExist,
    BackendError,
    CredentialsError,
    IntegrityError,
    ObjectNotFound,
    PermissionDenied,
    UploadNotFound,
)
from .redact import scrub


class RangeNotSatisfiable(Exception):
    """Internal: the service answered 416 to a ranged GET."""


NO_OBJECT_LOCK = ("NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError")

_SSE_HINTS = ("sse-c", "sse_c", "customer key", "customer-key", "customer provided", "customer-provided", "encrypt")
_CONNECTION_NAMES = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "SSLError",
    "ResponseStreamingError",
    "IncompleteReadError",
    "HTTPClientError",
)
_CONNECTION_HINTS = (
    "connect",
    "connection",
    "timed out",
    "timeout",
    "error sending request",
    "broken pipe",
    "reset by peer",
    "dns error",
    "network",
    "incomplete",
    "body error",
    "eof",
)
_CREDENTIAL_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
)


def _response(e: BaseException) -> dict[str, Any]:
    resp = getattr(e, "response", None)
    return resp if isinstance(resp, dict) else {}


def error_code(e: BaseException) -> str:
    """The S3 error code of a botocore ClientError ("" for any other exception)."""
    return str(_response(e).get("Error", {}).get("Code", "") or "")


def http_status(e: BaseException) -> int:
    """The HTTP status of a botocore ClientError, or found in an obstore message (0 if unknown)."""
    status = int(_response(e).get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if not status and not isinstance(e, BackendError):
        m = re.search(r"status(?: code)?: (\d{3})", str(e))
        if m:
            status = int(m.group(1))
    return status


def is_not_found(e: BaseException) -> bool:
    """True for obstore's NotFoundError (a FileNotFoundError) and botocore's 404/NoSuchKey."""
    if isinstance(e, FileNotFoundError) or type(e).__name__ == "NotFoundError":
        return True
    return error_code(e) in ("NoSuchKey", "404", "NotFound")


def is_precondition_failed(e: BaseException) -> bool:
    """True when a conditional request (If-Match, copy-source If-Match) did not hold."""
    if error_code(e) == "PreconditionFailed" or http_status(e) == 412:
        return True
    return type(e).__name__ == "PreconditionError"


def translate(e: BaseException, what: str) -> BaseException:
    """The unistore error for an exception of boto3, botocore or obstore (secrets scrubbed)."""
    if isinstance(e, BackendError):
        return e
    name = type(e).__name__
    first_line = str(e).strip().split("\n", 1)[0]
    msg = scrub(f"{what}: {first_line[:400]}")
    code = error_code(e)
    status = http_status(e)
    if name in _CONNECTION_NAMES or isinstance(e, ConnectionError | TimeoutError):
        return BackendConnectionError(msg)
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return CredentialsError(msg)
    if code == "NoSuchUpload":
        return UploadNotFound(msg)
    if is_not_found(e):
        return ObjectNotFound(msg)
    if code == "NoSuchBucket":
        return BackendDoesNotExist(msg)
    full = str(e)
    text = full.split("\nDebug source:", 1)[0].lower()  # obstore appends a debug dump (with "retry_timeout")
    if code in _CREDENTIAL_CODES or name == "UnauthenticatedError" or any(c.lower() in text for c in _CREDENTIAL_CODES):
        return CredentialsError(msg)
    if code.startswith("InvalidEncryption") or any(h in text for h in _SSE_HINTS):
        return IntegrityError(msg)
    if (
        name == "PermissionDeniedError"
        or isinstance(e, PermissionError)
        or code in ("AccessDenied", "403", "Forbidden")
        or status == 403
    ):
        return PermissionDenied(msg)
    if status == 501 or code in ("NotImplemented", "501"):
        return BackendError(msg)  # the service lacks the feature: retrying cannot help
    if name in ("GenericError", "BaseError") and not 400 <= status < 500 and any(h in text for h in _CONNECTION_HINTS):
        return BackendConnectionError(msg)
    if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"):
        return BackendConnectionError(msg)
    return BackendError(msg)
