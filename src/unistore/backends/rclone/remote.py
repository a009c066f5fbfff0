"""rclone remotes as unistore sees them: inline remotes, secrets kept out of sight, and rc errors.

An inline (on-the-fly) remote ``:s3,provider=AWS,secret_access_key=X:bucket`` is turned into a
remote defined in the rcd child's environment (``RCLONE_CONFIG_<NAME>_<OPTION>``), so the fs string
the backend sends, every message rclone answers with, and ``repr()`` carry no parameter at all. A
named remote with overrides (``remote,opt=value:path``) keeps them in its fs string: the values of
options whose names look secret are shown as ``***`` and scrubbed from every message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...errors import (
    BackendError,
    ConfigError,
    CredentialsError,
    DirectoryNotEmpty,
    InvalidName,
    NameConflict,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
)

INLINE_REMOTE = "unistoreinline"
_SECRET_KEY = re.compile(r"secret|pass|token|key|auth|credential|sas|signature|private|cookie", re.IGNORECASE)


def is_secret(option: str) -> bool:
    """True for rclone option names that look like they hold a secret."""
    return bool(_SECRET_KEY.search(option))


@dataclass
class Remote:
    """``rclone:`` path, split into what goes to rclone and what may be shown."""

    fs: str  #: the fs string sent to rclone
    shown: str  #: the path as repr() and messages show it
    env: dict[str, str] = field(default_factory=dict)  #: environment for the rcd child
    secrets: list[str] = field(default_factory=list)  #: values never to show

    def scrub(self, text: str) -> str:
        for value in self.secrets:
            text = text.replace(value, "***")
        return text


def _parse_params(spec: str, start: int) -> tuple[list[tuple[str, str, str]], int]:
    """Parse ``,k=v,k2="v,2"`` from ``spec[start]`` up to the ``:`` that ends them.

    Returns ``[(key, value, raw text)]`` and the index of that ``:``.
    """
    params = []
    i = start
    while i < len(spec) and spec[i] == ",":
        j = i + 1
        while j < len(spec) and spec[j] not in "=,:":
            j += 1
        key = spec[i + 1 : j]
        if j < len(spec) and spec[j] == "=":
            j += 1
            if j < len(spec) and spec[j] in "'\"":
                quote, value, j = spec[j], "", j + 1
                while j < len(spec):
                    if spec[j] == quote:
                        if spec[j + 1 : j + 2] == quote:  # a doubled quote is a literal one
                            value += quote
                            j += 2
                            continue
                        j += 1
                        break
                    value += spec[j]
                    j += 1
            else:
                k = j
                while j < len(spec) and spec[j] not in ",:":
                    j += 1
                value = spec[k:j]
        else:
            value = "true"  # a bare flag
        params.append((key, value, spec[i + 1 : j]))
        i = j
    return params, i


def parse_remote(path: str) -> Remote:
    """Split an ``rclone:`` path into the fs string for rclone, what may be shown, and secrets."""
    m = re.match(r"^(:?)([A-Za-z0-9_][\w.+@ -]*|)(?=[,:])", path)
    if path.startswith("/") or not m:
        return Remote(fs=path, shown=path)  # a local path or a plain remote:path
    inline = bool(m.group(1))
    name = m.group(2)
    params, end = _parse_params(path, m.end())
    if end >= len(path) or path[end] != ":":
        if inline or params:
            raise ConfigError(f"rclone remote {_shown(inline, name, params)!r}... lacks the ':' before its path")
        return Remote(fs=path, shown=path)
    rest = path[end + 1 :]
    if inline:
        if not name:
            raise ConfigError("an inline rclone remote needs a backend type: rclone::s3,opt=value:path")
        prefix = f"RCLONE_CONFIG_{INLINE_REMOTE.upper()}_"
        env = {prefix + "TYPE": name}
        for key, value, _ in params:
            env[prefix + key.upper().replace("-", "_")] = value
        secrets = [v for k, v, _ in params if len(v) >= 4 and _SECRET_KEY.search(k)]
        shown = f"{_shown(True, name, params)}:{rest}"
        return Remote(fs=f"{INLINE_REMOTE}:{rest}", shown=shown, env=env, secrets=secrets)
    secrets = [v for k, v, _ in params if len(v) >= 4 and _SECRET_KEY.search(k)]
    return Remote(fs=path, shown=f"{_shown(False, name, params)}:{rest}", secrets=secrets)


def _shown(inline: bool, name: str, params: list[tuple[str, str, str]]) -> str:
    parts = [(":" if inline else "") + name]
    for key, _, raw in params:
        parts.append(f"{key}=***" if _SECRET_KEY.search(key) else raw)
    return ",".join(parts)


def rc_error(what: str, status: int, message: str) -> Exception:
    """The typed error for an rc answer ``status`` with ``message`` (already scrubbed)."""
    low = message.lower()
    if "didn't find section in config file" in low or "config file not found" in low:
        return ConfigError(f"rclone: {what}: the remote is not configured ({message})")
    if any(
        w in low
        for w in (
            "signaturedoesnotmatch",
            "invalidaccesskeyid",
            "unable to authenticate",
            "authentication failed",
            "invalid credentials",
            "invalidclienttokenid",
            "unauthorized",
        )
    ):
        return CredentialsError(f"rclone: {what}: the remote refused the credentials ({message})")
    if "directory not empty" in low:
        return DirectoryNotEmpty(f"{what}: {message}")
    if "name too long" in low:
        return InvalidName(f"{what}: name too long for this storage ({message})")
    if "no space left" in low or "quota" in low:
        return QuotaExceeded(f"{what}: {message}")
    if "permission denied" in low or "access denied" in low or "accessdenied" in low or status == 403:
        return PermissionDenied(f"{what}: {message}")
    writing = "movefile" in what or "uploadfile" in what
    if writing and "is a directory not a file" in low:
        return NameConflict(f"{what}: a directory is in the way ({message})")
    if writing and ("not a directory" in low or "existingobjectisfile" in low or "file exists" in low):
        return NameConflict(f"{what}: an item is in the way ({message})")
    if (
        status == 404
        or "not found" in low
        or "no such file" in low
        or "not a directory" in low
        or "is a file not a directory" in low
        or "is a directory not a file" in low
    ):
        return ObjectNotFound(f"{what}: {message}")
    return BackendError(f"rclone: {what} failed (HTTP {status}): {message}")
