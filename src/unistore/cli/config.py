"""Named remotes: ``~/.config/unistore/config.toml`` plus secrets from a credentials file or the environment.

``config.toml`` (``$UNISTORE_CONFIG``, else ``$XDG_CONFIG_HOME/unistore/config.toml``) holds no secret::

    [remotes.backup]
    url = "s3:http://127.0.0.1:8333/bucket/prefix"
    options = { region = "us-east-1", addressing_style = "path" }

Secrets live in ``credentials.toml`` next to it (mode 0600, ``$UNISTORE_CREDENTIALS`` overrides)::

    [backup]
    access_key = "AKIA..."
    secret_key = "..."

or in the environment as ``UNISTORE_REMOTE_<NAME>_<OPTION>`` (``UNISTORE_REMOTE_BACKUP_SECRET_KEY``);
the environment wins over the file. Secrets are never printed (``remote ls`` shows ``***``).
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

REMOTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
#: options whose values are secrets: kept in the credentials file, never printed
SECRET_OPTIONS = frozenset(
    {"access_key", "secret_key", "session_token", "password", "passphrase", "sse_customer_key", "token"}
)


def config_path() -> Path:
    env = os.environ.get("UNISTORE_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "unistore" / "config.toml"


def credentials_path() -> Path:
    env = os.environ.get("UNISTORE_CREDENTIALS")
    return Path(env).expanduser() if env else config_path().with_name("credentials.toml")


def is_secret(option: str) -> bool:
    return option in SECRET_OPTIONS or "secret" in option or "password" in option


@dataclass
class Remote:
    """A named remote: its URL (no secret), plain options, and secrets with where each came from."""

    name: str
    url: str
    options: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    secret_sources: dict[str, str] = field(default_factory=dict)

    def all_options(self) -> dict[str, str]:
        return {**self.options, **self.secrets}


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None


def _env_prefix(name: str) -> str:
    return "UNISTORE_REMOTE_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper() + "_"


def load_remotes() -> dict[str, Remote]:
    """Every configured remote, with its secrets resolved (environment over credentials file)."""
    path = config_path()
    raw = _read_toml(path).get("remotes", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: [remotes] must be a table")
    creds = _read_toml(credentials_path())
    remotes: dict[str, Remote] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise ConfigError(f"{path}: remote {name!r} needs url = \"...\"")
        options = {str(k): str(v) for k, v in (entry.get("options") or {}).items()}
        remote = Remote(name, entry["url"], options)
        for key, value in (creds.get(name) or {}).items():
            remote.secrets[key] = str(value)
            remote.secret_sources[key] = "credentials file"
        prefix = _env_prefix(name)
        for var, value in os.environ.items():
            if var.startswith(prefix) and len(var) > len(prefix):
                key = var[len(prefix) :].lower()
                remote.secrets[key] = value
                remote.secret_sources[key] = f"${var}"
        remotes[name] = remote
    return remotes


def _toml_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _toml_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else json.dumps(key)


def _write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _raw_config() -> tuple[dict[str, Any], dict[str, Any]]:
    return _read_toml(config_path()), _read_toml(credentials_path())


def _save(config: dict[str, Any], creds: dict[str, Any]) -> None:
    lines = ["# unistore named remotes (secrets live in credentials.toml)", ""]
    for name, entry in sorted((config.get("remotes") or {}).items()):
        lines.append(f"[remotes.{_toml_key(name)}]")
        lines.append(f"url = {_toml_value(entry['url'])}")
        if entry.get("options"):
            lines.append(f"options = {_toml_value(entry['options'])}")
        lines.append("")
    _write(config_path(), "\n".join(lines), 0o644)
    clines = ["# unistore secrets for named remotes: keep this file private (mode 0600)", ""]
    for name, entry in sorted(creds.items()):
        if not entry:
            continue
        clines.append(f"[{_toml_key(name)}]")
        clines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items())
        clines.append("")
    _write(credentials_path(), "\n".join(clines), 0o600)


def add_remote(name: str, url: str, options: Mapping[str, str], secrets: Mapping[str, str]) -> None:
    config, creds = _raw_config()
    remotes = config.setdefault("remotes", {})
    if name in remotes:
        raise ConfigError(f"a remote named {name!r} exists already (unistore remote rm {name} first)")
    remotes[name] = {"url": url, "options": dict(options)}
    if secrets:
        creds[name] = dict(secrets)
    _save(config, creds)


def remove_remote(name: str) -> None:
    config, creds = _raw_config()
    remotes = config.get("remotes") or {}
    if name not in remotes:
        raise ConfigError(f"no remote named {name!r} (see unistore remote ls)")
    del remotes[name]
    creds.pop(name, None)
    _save(config, creds)


def split_remote(spec: str, remotes: Mapping[str, Remote]) -> tuple[Remote, str] | None:
    """``(remote, path)`` if ``spec`` is ``NAME:path`` (or ``NAME:``) of a configured remote."""
    name, colon, path = spec.partition(":")
    if colon and name in remotes:
        return remotes[name], path.strip("/")
    return None


def iter_secret_values(values: Mapping[str, Any]) -> Iterator[str]:
    for key, value in values.items():
        if is_secret(key) and isinstance(value, str) and value:
            yield value
