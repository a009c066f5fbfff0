"""Where a command works: ``--url``/``$UNISTORE_URL``, a URL, a named remote (``NAME:path``), a local path.

A :class:`Target` is an opened backend plus a name prefix inside it; a :class:`Session` opens the
targets of one command (with the ``-o key=value`` options), remembers their secrets for the log
scrubber, and closes them at the end.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from ..backends.base import Backend
from ..errors import BackendDoesNotExist, BackendURLInvalid
from ..layers.stack import wrap_data_layers
from ..names import DEL_SUFFIX, HID_SUFFIX, TMP_SUFFIX, check_name, join
from ..url import open_backend, redact, split_query, url_scheme
from . import logs
from .config import Remote, is_secret, iter_secret_values, load_remotes, split_remote
from .output import Output, UsageError


def parse_options(pairs: list[str] | None) -> dict[str, str]:
    """``-o key=value`` pairs as a dict (a repeated key with another value is an error)."""
    options: dict[str, str] = {}
    for pair in pairs or ():
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UsageError(f"-o takes key=value, not {pair!r}")
        if key in options and options[key] != value:
            raise UsageError(f"option {key!r} given twice with different values")
        options[key] = value
    return options


def check_user_name(name: str, *, writing: bool = False, what: str = "name") -> str:
    """Refuse names the Store would refuse or hide: ``.tmp``/``.hid`` segments; ``.del`` when writing."""
    check_name(name)
    for segment in name.split("/"):
        if segment.endswith((TMP_SUFFIX, HID_SUFFIX)):
            raise UsageError(
                f"{what} {name!r}: segments ending in {TMP_SUFFIX} or {HID_SUFFIX} are hidden by every backend; "
                "such an item would be stored and then invisible"
            )
    if writing and name.endswith(DEL_SUFFIX):
        raise UsageError(f"{what} {name!r}: names ending in {DEL_SUFFIX} mark soft-deleted items (see rm --soft)")
    return name


@dataclass
class Target:
    """An opened backend and a prefix; :meth:`name` maps a relative name to the backend's name."""

    backend: Backend
    prefix: str
    label: str
    scheme: str = ""
    url: str = field(default="", repr=False)

    def name(self, rel: str) -> str:
        return join(self.prefix, rel.strip("/"))

    def rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full


class Session:
    """The backends one command opened, closed together."""

    def __init__(self, args: argparse.Namespace, out: Output) -> None:
        self.args = args
        self.out = out
        self.options = parse_options(getattr(args, "option", None))
        for value in iter_secret_values(self.options):
            logs.add_secret(value)
        self._remotes: dict[str, Remote] | None = None
        self._open: list[Backend] = []
        self._warned_memory = False

    @property
    def remotes(self) -> dict[str, Remote]:
        if self._remotes is None:
            self._remotes = load_remotes()
            for remote in self._remotes.values():
                for value in remote.secrets.values():
                    logs.add_secret(value)
        return self._remotes

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._open:
            be = self._open.pop()
            try:
                be.close()
            except Exception as e:  # closing must not hide the command's own outcome
                logs.log.debug("closing %r failed: %s", be, e)

    # ----------------------------------------------------------------- resolving
    def store_spec(self) -> str:
        spec = getattr(self.args, "url", None) or os.environ.get("UNISTORE_URL")
        if not spec:
            raise UsageError("no backend URL: pass --url URL (or a named remote) or set UNISTORE_URL")
        return str(spec)

    def is_remote_or_url(self, spec: str) -> bool:
        return split_remote(spec, self.remotes) is not None or url_scheme(spec) is not None

    def is_named_remote(self, spec: str) -> bool:
        return split_remote(spec, self.remotes) is not None

    def resolve(self, spec: str) -> tuple[str, dict[str, Any], str]:
        """``(backend URL, options, path inside it)`` for a URL or ``NAME:path``."""
        found = split_remote(spec, self.remotes)
        if found is None and spec in self.remotes:
            found = self.remotes[spec], ""
        if found is not None:
            remote, path = found
            return remote.url, {**remote.all_options(), **self.options}, path
        if url_scheme(spec) is not None:
            return spec, dict(self.options), ""
        if ":" in spec.split("/", 1)[0]:
            name = spec.split(":", 1)[0]
            raise UsageError(
                f"{name!r} is neither a named remote (see unistore remote ls) nor a backend scheme; "
                f"for a local path write ./{redact(spec)}"
            )
        raise UsageError(f"{redact(spec)!r} is not a backend URL or a named remote")

    def open_unopened(self, url: str, options: dict[str, Any]) -> Backend:
        """The backend of ``url`` with ``options``, created but not opened (for create/destroy)."""
        base, query = split_query(url)
        userinfo = re.match(r"^[a-z0-9+.-]+:(?://)?(.*)@", base, re.IGNORECASE | re.DOTALL)
        if userinfo and ":" in userinfo.group(1):
            logs.add_secret(unquote(userinfo.group(1).split(":", 1)[1]))
        for key, value in {**query, **options}.items():
            if is_secret(key) and isinstance(value, str):
                logs.add_secret(value)
        if url_scheme(url) == "memory" and not self._warned_memory:
            self._warned_memory = True
            self.out.note("memory:// keeps data only inside this process: nothing persists after the command")
        be = open_backend(url, **options)
        if url_scheme(url) in ("s3", "b2"):
            _check_bucket(getattr(be, "bucket", None))
        key_file = getattr(self.args, "encrypt_key_file", None) or os.environ.get("UNISTORE_ENCRYPT_KEY_FILE")
        compression = getattr(self.args, "compress", None)
        if key_file or compression:
            be = wrap_data_layers(be, encryption_key_file=key_file, compression=compression)
        return be

    def open(self, url: str, options: dict[str, Any], path: str = "", *, create: bool = False) -> Target:
        be = self.open_unopened(url, options)
        try:
            be.open()
        except BackendDoesNotExist:
            if not create and url_scheme(url) != "memory":  # a memory store never outlives a command
                raise
            be.create()
            be.open()
        self._open.append(be)
        if path:
            check_name(path)
        label = redact(split_query(url)[0]) + (f" {path}" if path else "")
        return Target(be, path, label, url_scheme(url) or "", url)

    def target(self, spec: str | None = None, *, create: bool = False) -> Target:
        """The store of ``--url`` (or ``spec``), opened."""
        url, options, path = self.resolve(spec or self.store_spec())
        return self.open(url, options, path, create=create)


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _check_bucket(bucket: object) -> None:
    """S3's bucket naming rules, so that a typo is a usage error, not a failed request."""
    if not isinstance(bucket, str):
        return
    if not _BUCKET.match(bucket) or ".." in bucket or re.match(r"^\d+\.\d+\.\d+\.\d+$", bucket):
        raise UsageError(
            f"invalid bucket name {bucket!r}: 3-63 characters of lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )


def parent_url(url: str) -> tuple[str, str] | None:
    """``(URL of the parent, last segment)`` of a backend URL, or None when it has no parent to split."""
    base, query = split_query(url)
    head, slash, last = base.rstrip("/").rpartition("/")
    if not slash or not last or head.endswith((":", ":/", "//")) or "@" in last:
        return None
    try:
        check_name(last)
    except Exception:
        return None
    rebuilt = head + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    if url_scheme(rebuilt) is None:
        raise BackendURLInvalid(f"cannot split {redact(url)!r} into a store and an item")
    return rebuilt, last

