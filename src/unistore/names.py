"""Name and key validation, and nesting math. Pure functions, no I/O.

Two sets of rules apply:

* backend names (:func:`check_name`): relative ``/``-separated paths, case-sensitive, without empty,
  ``.`` or ``..`` segments, backslashes or NUL, and no segment ending in ``.tmp`` or ``.hid`` (the
  names backends use for temp and hidden files, and hide from listings). Every backend checks these,
  so no name can address anything outside the backend's root or a backend's own files.
* store keys (:func:`check_key`): borgstore's stricter rules on top (ASCII, lowercase, no blanks,
  at most 100 characters, no ``.tmp``/``.hid`` suffix).
"""

from __future__ import annotations

from .errors import InvalidName

MAX_KEY_LENGTH = 100
TMP_SUFFIX = ".tmp"
DEL_SUFFIX = ".del"
HID_SUFFIX = ".hid"
ROOTNS = ""
_HIDDEN = (TMP_SUFFIX, HID_SUFFIX)


def check_name(name: object, *, allow_root: bool = False) -> str:
    """Return ``name`` if it is a valid backend name, else raise :class:`InvalidName`.

    ``allow_root`` admits the empty name, which stands for the backend's root (for list, mkdir).
    """
    if not isinstance(name, str):
        raise InvalidName(f"name must be a str, not {type(name).__name__}: {name!r}")
    if name == "":
        if allow_root:
            return name
        raise InvalidName("name must not be empty")
    if "\\" in name or "\x00" in name:
        raise InvalidName(f"name must not contain a backslash or NUL: {name!r}")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidName(f"name must be a relative path without empty, '.' or '..' segments: {name!r}")
        if segment.endswith(_HIDDEN):
            raise InvalidName(
                f"no name segment may end with {TMP_SUFFIX} or {HID_SUFFIX} (backends keep such names hidden): {name!r}"
            )
    return name


def check_key(name: object) -> str:
    """Return ``name`` if it is a valid store key (borgstore's rules), else raise :class:`InvalidName`."""
    check_name(name)
    assert isinstance(name, str)
    if len(name) > MAX_KEY_LENGTH:
        raise InvalidName(f"name is too long (max {MAX_KEY_LENGTH}): {name!r}")
    if not name.isascii():
        raise InvalidName(f"name must be plain ASCII: {name!r}")
    if " " in name:
        raise InvalidName(f"name must not contain blanks: {name!r}")
    if name != name.lower():
        raise InvalidName(f"name must be lowercase: {name!r}")
    if name.endswith(TMP_SUFFIX) or name.endswith(HID_SUFFIX):
        raise InvalidName(f"name must not end with {TMP_SUFFIX} or {HID_SUFFIX}: {name!r}")
    return name


def is_listable(name: str) -> bool:
    """True if a listed entry name may be shown to users (not a temp or hidden file, a valid name)."""
    if not name or name in (".", "..") or "\\" in name or "\x00" in name or "/" in name:
        return False
    return not (name.endswith(TMP_SUFFIX) or name.endswith(HID_SUFFIX))


def join(*parts: str) -> str:
    """Join name parts with ``/``, skipping empty ones."""
    return "/".join(p for p in parts if p)


def split_key(name: str) -> tuple[str, str]:
    """``"ns/sub/key"`` -> ``("ns/sub", "key")``; ``"key"`` -> ``("", "key")``."""
    namespace, _, key = name.rpartition("/")
    return namespace, key


def nest(name: str, levels: int, *, suffix: str = "") -> str:
    """``nest("data/0123ab", 2)`` -> ``"data/01/23/0123ab"`` (borgstore's layout)."""
    if levels < 0:
        raise InvalidName(f"levels must be >= 0, not {levels}")
    if levels and name:
        namespace, key = split_key(name)
        if len(key) < 2 * levels:
            raise InvalidName(f"key {key!r} is too short for {levels} nesting levels")
        parts = [key[2 * i : 2 * i + 2] for i in range(levels)]
        name = join(namespace, *parts, key)
    return name + suffix


def unnest(name: str, namespace: str, *, suffix: str = "") -> str:
    """``unnest("data/01/23/0123ab", "data")`` -> ``"data/0123ab"``."""
    namespace = namespace.rstrip("/")
    if namespace:
        if not name.startswith(namespace + "/"):
            raise InvalidName(f"name {name!r} is not in namespace {namespace!r}")
    key = name.rsplit("/", 1)[-1]
    if suffix:
        key = key.removesuffix(suffix)
    return join(namespace, key)
