"""URL -> backend.

Schemes are registered through the entry-point group ``unistore.backends``: each entry point maps a
scheme name to a callable ``from_url(url, **options) -> Backend``. unistore registers its own
backends that way in its pyproject.toml, and a third-party package can add a scheme by declaring::

    [project.entry-points."unistore.backends"]
    myscheme = "mypackage.backend:from_url"

The built-in table below is used when the package metadata is not available (running from a source
tree without installing).

Options in a URL
----------------
A query string is the documented way to give backend options inside a URL, and never part of a
path: ``file:///srv/store?do_fsync=1&quota=10000000`` is ``PosixFS("/srv/store", do_fsync=True,
quota=10000000)``. The query starts at the first ``?`` after the last ``@`` (so a secret in the
userinfo may hold a ``?``); a literal ``?`` in a path is written ``%3F``. Each option must be one
the backend's constructor accepts as a keyword; an unknown, repeated or empty option, or the same
option given in the URL and as a keyword with another value, is a :class:`~unistore.errors.ConfigError`.
Values are strings converted by the constructor's annotation: ``bool`` (``1/0, true/false,
yes/no, on/off``), ``int``, ``float``, ``None`` (``none``) where the option allows it, JSON for
mappings and lists; anything else stays a string.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import typing
from collections.abc import Callable
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import unquote

from .backends.base import Backend
from .errors import BackendURLInvalid, ConfigError, NoBackendGiven

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
_OPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


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


def url_scheme(url: str) -> str | None:
    """The lower-cased scheme of ``url`` if it names a known backend scheme, else None."""
    m = _SCHEME.match(url)
    if not m or m.group(1).lower() not in schemes():
        return None
    return m.group(1).lower()


def redact(url: str) -> str:
    """The URL with any password/secret replaced by ``***``, for logs and error messages."""
    # greedy up to the last "@": a secret may hold "/" or "@" when the user did not URL-quote it
    m = re.match(r"^([a-z0-9+.-]+:(?://)?)(.*)@(.*)$", url, re.IGNORECASE | re.DOTALL)
    if not m:
        return url
    userinfo = m.group(2)
    user = userinfo.split(":", 1)[0]
    return f"{m.group(1)}{user}:***@{m.group(3)}" if ":" in userinfo else url


def split_query(url: str) -> tuple[str, dict[str, str]]:
    """``(url without its query string, {option: raw string value})``; see the module docstring."""
    start = url.rfind("@") + 1
    q = url.find("?", start)
    if q < 0:
        return url, {}
    base, query = url[:q], url[q + 1 :]
    options: dict[str, str] = {}
    if not query:
        raise BackendURLInvalid(f"empty query string in {redact(url)!r}: write a literal '?' in a path as %3F")
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        key = unquote(key)
        if not eq or not _OPTION_NAME.match(key):
            raise BackendURLInvalid(
                f"bad option {part!r} in {redact(base)!r}: URL options are ?name=value&name=value "
                "(write a literal '?' in a path as %3F)"
            )
        if key in options:
            raise ConfigError(f"option {key!r} given twice in {redact(base)!r}")
        options[key] = unquote(value)
    return base, options


def _backend_class(factory: Callable[..., Backend]) -> type | None:
    owner = getattr(factory, "__self__", None)
    return owner if isinstance(owner, type) else None


def _accepted_options(cls: type) -> tuple[dict[str, Any], bool]:
    """``({keyword-only option: annotation}, accepts **kwargs)`` of the backend's constructor."""
    init = cls.__init__  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # a forward reference that cannot be resolved: fall back to the raw strings
        hints = {}
    names: dict[str, Any] = {}
    var_kw = False
    for p in inspect.signature(init).parameters.values():
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            names[p.name] = hints.get(p.name, p.annotation)
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = True
    names.update(getattr(cls, "url_options", {}))  # options only from_url understands
    return names, var_kw


def _coerce(name: str, value: str, annotation: Any) -> Any:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    low = value.strip().lower()
    if low == "none" and ("None" in text or "Optional" in text):
        return None
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    if "bool" in text:
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        if "str" not in text:
            raise ConfigError(f"option {name!r} takes a boolean (1/0, true/false, yes/no, on/off), not {value!r}")
    if re.search(r"\bint\b", text):
        try:
            return int(value)
        except ValueError:
            if "float" not in text and "str" not in text:
                raise ConfigError(f"option {name!r} takes an integer, not {value!r}") from None
    if "float" in text:
        try:
            return float(value)
        except ValueError:
            if "str" not in text:
                raise ConfigError(f"option {name!r} takes a number, not {value!r}") from None
    if any(word in text for word in ("Mapping", "dict", "list", "List", "Dict")) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            raise ConfigError(f"option {name!r} takes JSON here, not {value!r}") from None
    return value


def backend_options(url: str) -> dict[str, Any] | None:
    """The options the backend of ``url`` accepts (name -> annotation), or None when it cannot tell."""
    m = _SCHEME.match(url)
    target = schemes().get(m.group(1).lower()) if m else None
    if target is None:
        return None
    try:
        cls = _backend_class(_load(target))
    except ImportError:
        return None
    if cls is None:
        return None
    names, var_kw = _accepted_options(cls)
    return None if var_kw else names


def open_backend(url: str | None, **options: Any) -> Backend:
    """Create (not open) the backend a URL names, e.g. ``file:///srv/store`` or ``s3:/bucket/prefix``.

    Options come from the URL's query string and from ``options``; string values are converted by
    the constructor's annotations, unknown options are a ConfigError (see the module docstring).
    """
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
    base, query = split_query(url)
    for key, value in query.items():
        if key in options and options[key] != value:
            raise ConfigError(f"option {key!r} is given in the URL and as an option with another value")
    merged: dict[str, Any] = {**query, **options}
    try:
        factory = _load(target)
    except ImportError as e:
        raise BackendURLInvalid(
            f"backend for {scheme!r} cannot be imported ({e}); install the matching extra, e.g. unistore[{scheme}]"
        ) from None
    cls = _backend_class(factory)
    if cls is not None and merged:
        accepted, var_kw = _accepted_options(cls)
        unknown = sorted(k for k in merged if k not in accepted)
        if unknown and not var_kw:
            known = ", ".join(sorted(accepted)) or "none"
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for a {scheme}: backend (accepted: {known})")
        merged = {
            k: _coerce(k, v, accepted.get(k, inspect.Parameter.empty)) if isinstance(v, str) else v
            for k, v in merged.items()
        }
    return factory(base, **merged)


__all__ = ["ENTRY_POINT_GROUP", "backend_options", "open_backend", "redact", "schemes", "split_query", "url_scheme"]

