"""One exception hierarchy for all of unistore.

The names of borgstore's exceptions are kept, so code written against borgstore can catch the same
names from here. Everything unistore raises on purpose derives from :class:`UnistoreError`.
"""

from __future__ import annotations


class UnistoreError(Exception):
    """Base class of every error unistore raises on purpose."""


class BackendError(UnistoreError):
    """A backend operation failed (borgstore's base name)."""


class BackendConnectionError(BackendError):
    """The connection to the storage engine failed or was lost; retrying may help."""


class BackendURLInvalid(BackendError, ValueError):
    """A backend URL could not be parsed or names an unknown scheme."""


class NoBackendGiven(BackendError, ValueError):
    """Neither a backend nor a URL was given."""


class BackendAlreadyExists(BackendError):
    """create() found an existing, non-empty storage."""


class BackendDoesNotExist(BackendError):
    """The storage does not exist (create it first)."""


class BackendMustNotBeOpen(BackendError):
    """The operation needs a closed backend."""


class BackendMustBeOpen(BackendError):
    """The operation needs an open backend."""


class ObjectNotFound(BackendError):
    """The named item (or directory) does not exist."""


class NameConflict(BackendError):
    """The name is taken by the other kind: a directory where an item is needed, or an item where a
    directory is needed (store onto a directory, ``store("item/child")``, move onto a directory)."""


class UploadNotFound(BackendError):
    """The multipart upload id is unknown (completed, aborted or never started)."""


class DirectoryNotEmpty(BackendError):
    """rmdir() of a directory that still holds items."""


class PermissionDenied(BackendError):
    """The operation is not permitted (permissions mapping, file modes, server policy, links)."""


class QuotaExceeded(BackendError):
    """Storing the value would exceed the configured quota."""


class ReadRangeError(BackendError):
    """A ranged read could not return what was asked for."""


class InvalidName(BackendError, ValueError):
    """A name or key breaks the naming rules; the message names the bad input."""


class CapabilityNotSupported(BackendError):
    """The backend lacks an optional capability (presign, tags, object lock, ...)."""

    def __init__(self, backend: str, capability: str):
        super().__init__(f"backend {backend!r} does not support the capability {capability!r}")
        self.backend = backend
        self.capability = capability


class ConfigError(UnistoreError, ValueError):
    """Invalid configuration or options."""


class UnknownNamespace(UnistoreError, KeyError):
    """No configured namespace matches the name (borgstore raised KeyError here)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class CredentialsError(BackendError):
    """Credentials are missing, invalid or refused by the server."""


class IntegrityError(BackendError):
    """Data read back does not match what was expected (size, checksum, SSE-C key)."""


__all__ = [name for name in dir() if name[0].isupper()]
