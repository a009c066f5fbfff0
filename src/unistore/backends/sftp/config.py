"""SFTP configuration: the URL, keyword options, ``~/.ssh/config``, secrets and host-key policies."""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import paramiko

from ...errors import BackendURLInvalid, ConfigError, CredentialsError

log = logging.getLogger("unistore.backends.sftp")

DEFAULT_CONNECT_TIMEOUT = 30.0
DEFAULT_TIMEOUT = 120.0
DEFAULT_KEEPALIVE = 30
DEFAULT_CHANNELS = 8
DEFAULT_CONNECTIONS = 1

#: every keyword option SFTPBackend takes (the URL gives host, port, user and path)
OPTIONS = frozenset(
    {
        "port",
        "user",
        "password",
        "key_filename",
        "passphrase",
        "allow_agent",
        "look_for_keys",
        "host_key",
        "known_hosts",
        "accept_unknown_host_key",
        "ssh_config",
        "connect_timeout",
        "timeout",
        "keepalive",
        "channels",
        "connections",
        "pipeline",
    }
)
_MOVED = {
    "retries": "retries are RetryLayer's (unistore.layers.retry.RetryLayer(backend, attempts=N))",
    "retry_wait": "retries are RetryLayer's (unistore.layers.retry.RetryLayer(backend, base_delay=S))",
}

_URL = re.compile(
    r"^sftp://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:/\[\]]+)(?::(?P<port>\d+))?/(?P<path>.*)$", re.IGNORECASE
)


def check_options(options: dict[str, Any]) -> None:
    """Raise ConfigError naming every option SFTPBackend does not know."""
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        hints = "; ".join(_MOVED[k] for k in unknown if k in _MOVED)
        raise ConfigError(
            f"unknown sftp option(s): {', '.join(unknown)}"
            + (f" ({hints})" if hints else "")
            + f"; known: {', '.join(sorted(OPTIONS))}"
        )


def parse_url(url: str) -> tuple[str, str, dict[str, Any]]:
    """``sftp://[user@]host[:port]/rel`` or ``...//abs`` -> ``(host, path, {user, port})``."""
    m = _URL.match(url)
    if not m:
        raise BackendURLInvalid(
            "sftp URL must look like sftp://[user@]host[:port]/relative/path or sftp://[user@]host[:port]//abs/path"
        )
    user = unquote(m["user"]) if m["user"] else None
    if user is not None and ":" in user:
        raise BackendURLInvalid("do not put a password into an sftp URL; pass password=... as an option")
    path = unquote(m["path"])
    if not path.strip("/"):
        raise BackendURLInvalid("an sftp URL needs a path below the host, e.g. sftp://host/store")
    parts: dict[str, Any] = {}
    if user is not None:
        parts["user"] = user
    if m["port"]:
        parts["port"] = int(m["port"])
    return m["host"].strip("[]"), path.rstrip("/") or "/", parts


def read_ssh_config(host: str, path: str | None) -> dict[str, Any]:
    """What ``/etc/ssh/ssh_config`` and ``path`` say about ``host`` (later files win)."""
    cfg: dict[str, Any] = {}
    for f in ("/etc/ssh/ssh_config", path):
        if not f:
            continue
        f = os.path.expanduser(f)
        if not os.path.isfile(f):
            continue
        try:
            looked = paramiko.SSHConfig.from_path(f).lookup(host)
        except Exception as e:  # a broken config file must not stop us
            log.warning("ignoring unreadable ssh config %s: %s", f, e)
            continue
        for k, v in looked.items():
            if k == "hostname" and v == host and "hostname" in cfg:
                continue
            cfg[k] = v
    return cfg


class Secret:
    """A password or passphrase: kept out of ``repr()``, ``vars()`` output and logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return str(object.__getattribute__(self, "_value"))

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not picklable")


def parse_host_key(value: Any) -> paramiko.PKey:
    """``host_key`` option: a paramiko PKey, or an OpenSSH public key line ``type base64 [comment]``."""
    if isinstance(value, paramiko.PKey):
        return value
    if not isinstance(value, str):
        raise ConfigError("host_key must be an OpenSSH public key line ('ssh-ed25519 AAAA...') or a paramiko PKey")
    parts = value.split()
    if parts and not parts[0].startswith(("ssh-", "ecdsa-", "sk-")) and len(parts) >= 3:
        parts = parts[1:]  # a known_hosts line: drop the host pattern
    if len(parts) < 2:
        raise ConfigError("host_key must look like 'ssh-ed25519 AAAA...'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as e:
        raise ConfigError(f"host_key could not be parsed: {e}") from None


def host_key_entry(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


@dataclass
class Settings:
    """Everything needed to reach the server, resolved from options, URL and ssh config."""

    hostname: str
    port: int
    user: str | None
    password: Secret | None
    passphrase: Secret | None
    key_filename: list[str] | None
    allow_agent: bool
    look_for_keys: bool
    host_key: paramiko.PKey | None
    known_hosts: list[str]
    #: "reject" unknown host keys, "accept" them (logged, not saved), or "accept-new" (saved)
    unknown_host_key: str
    connect_timeout: float
    timeout: float
    keepalive: int
    proxy_command: str | None
    channels: int
    connections: int
    pipeline: bool

    @classmethod
    def resolve(
        cls,
        host: str,
        *,
        port: int | None,
        user: str | None,
        password: str | None,
        key_filename: str | list[str] | None,
        passphrase: str | None,
        allow_agent: bool,
        look_for_keys: bool,
        host_key: Any,
        known_hosts: str | None,
        accept_unknown_host_key: bool,
        ssh_config: str | None,
        connect_timeout: float | None,
        timeout: float,
        keepalive: int | None,
        channels: int,
        connections: int,
        pipeline: bool,
    ) -> Settings:
        if channels < 1:
            raise ConfigError("channels must be >= 1")
        if timeout is None or timeout <= 0:
            raise ConfigError("timeout must be > 0 (no call may block forever)")
        cfg = read_ssh_config(host, ssh_config)
        keys: list[str] = []
        if isinstance(key_filename, str):
            keys.append(key_filename)
        elif key_filename:
            keys.extend(key_filename)
        keys.extend(os.path.expanduser(k) for k in cfg.get("identityfile", []) if os.path.exists(os.path.expanduser(k)))
        files = [os.path.expanduser(known_hosts)] if known_hosts is not None else []
        if known_hosts is None:
            files = [os.path.expanduser(f) for f in (cfg.get("userknownhostsfile") or "").split()]
        strict = str(cfg.get("stricthostkeychecking", "")).lower()
        policy = "accept-new" if strict in ("no", "off", "accept-new") else "reject"
        if accept_unknown_host_key:
            policy = "accept"
        return cls(
            hostname=cfg.get("hostname", host),
            port=port or int(cfg.get("port", 22)),
            user=user or cfg.get("user"),
            password=Secret(password) if password is not None else None,
            passphrase=Secret(passphrase) if passphrase is not None else None,
            key_filename=keys or None,
            allow_agent=allow_agent,
            look_for_keys=look_for_keys,
            host_key=parse_host_key(host_key) if host_key is not None else None,
            known_hosts=files,
            unknown_host_key=policy,
            connect_timeout=float(
                connect_timeout if connect_timeout is not None else cfg.get("connecttimeout", DEFAULT_CONNECT_TIMEOUT)
            ),
            timeout=float(timeout),
            keepalive=int(keepalive if keepalive is not None else cfg.get("serveraliveinterval", DEFAULT_KEEPALIVE)),
            proxy_command=cfg.get("proxycommand"),
            channels=channels,
            connections=max(1, min(connections, channels)),
            pipeline=pipeline,
        )

    def missing_host_key_policy(self) -> paramiko.MissingHostKeyPolicy:
        if self.unknown_host_key == "accept":
            return _AcceptUnknownHostKey()
        if self.unknown_host_key == "accept-new":
            target = self.known_hosts[0] if self.known_hosts else os.path.expanduser("~/.ssh/known_hosts")
            return TrustOnFirstUse(target)
        return _RejectUnknownHostKey()


class _RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuse, with a message that says how to proceed."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        raise CredentialsError(
            f"the SSH host key of {hostname} ({key.get_name()} {key.fingerprint}) is not known: add it to "
            "known_hosts, pass host_key=..., or opt in with accept_unknown_host_key=True"
        )


class _AcceptUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """The explicit opt-in ``accept_unknown_host_key=True``: accept, log, do not save."""

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        log.warning("accepting unknown SSH host key of %s: %s %s", hostname, key.get_name(), key.fingerprint)


_known_hosts_lock = threading.Lock()


class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """``StrictHostKeyChecking accept-new``: accept a host never seen before and append its key to
    ``known_hosts``, so every later connection is checked against it (a changed key is refused)."""

    def __init__(self, path: str):
        self.path = path

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        with _known_hosts_lock:
            known = paramiko.HostKeys()
            if os.path.exists(self.path):
                known.load(self.path)
            saved = known.lookup(hostname)
            if saved is not None and key.get_name() in saved:
                if saved[key.get_name()] != key:  # another connection saved a different key meanwhile
                    raise CredentialsError(
                        f"the SSH host key of {hostname} does not match the one just saved to {self.path}"
                    )
            else:
                os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
                line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a+b") as f:
                    end = f.seek(0, os.SEEK_END)
                    if end:
                        f.seek(end - 1)
                        if f.read(1) != b"\n":
                            line = "\n" + line
                    f.write(line.encode())
        client.get_host_keys().add(hostname, key.get_name(), key)
        log.warning(
            "trusting the SSH host key of %s on first use: %s %s (saved to %s)",
            hostname,
            key.get_name(),
            key.fingerprint,
            self.path,
        )
