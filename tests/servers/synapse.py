"""A real Synapse homeserver (``matrix-synapse`` from PyPI) on 127.0.0.1 with SQLite.

:func:`start_synapse` writes a homeserver.yaml (signing key, log config, SQLite database, media
store, the given ``media_storage_providers``), starts ``python -m synapse.app.homeserver`` in a new
session, waits for the client API, and stops it by PID on exit. :class:`Synapse` registers users
with the shared-secret admin API and uploads and downloads media through the client-server API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

SHARED_SECRET = "unistore-test-registration-secret"
SERVER_NAME = "test.local"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HTTPResult:
    def __init__(self, status: int, body: bytes, headers: dict[str, str]):
        self.status = status
        self.body = body
        self.headers = headers

    def json(self) -> Any:
        return json.loads(self.body)


class Synapse:
    """A running homeserver as tests see it."""

    def __init__(self, workdir: Path, providers: list[dict[str, Any]], extra: dict[str, Any] | None = None):
        self.workdir = workdir
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.media_store = workdir / "media_store"
        self.config_path = workdir / "homeserver.yaml"
        self.log_path = workdir / "homeserver.log"
        self.database = workdir / "homeserver.db"
        self.providers = providers
        self.extra = extra or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    # ------------------------------------------------------------------ process
    def write_config(self) -> None:
        from signedjson.key import generate_signing_key, write_signing_keys

        self.workdir.mkdir(parents=True, exist_ok=True)
        key_path = self.workdir / "signing.key"
        if not key_path.exists():
            with open(key_path, "w") as f:
                write_signing_keys(f, [generate_signing_key("a_test")])
        log_config = self.workdir / "log.yaml"
        log_config.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(request)s %(message)s"}},
                    "filters": {"context": {"()": "synapse.logging.context.LoggingContextFilter", "request": ""}},
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "filename": str(self.log_path),
                            "formatter": "plain",
                            "filters": ["context"],
                        }
                    },
                    "loggers": {"synapse.storage.SQL": {"level": "WARNING"}, "twisted": {"level": "WARNING"}},
                    "root": {"level": "INFO", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        generous = {"per_second": 10000, "burst_count": 10000}
        config: dict[str, Any] = {
            "server_name": SERVER_NAME,
            "pid_file": str(self.workdir / "homeserver.pid"),
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {"name": "sqlite3", "args": {"database": str(self.database)}},
            "log_config": str(log_config),
            "media_store_path": str(self.media_store),
            "registration_shared_secret": SHARED_SECRET,
            "report_stats": False,
            "macaroon_secret_key": uuid.uuid4().hex,
            "form_secret": uuid.uuid4().hex,
            "signing_key_path": str(key_path),
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_metrics": False,
            "url_preview_enabled": False,
            "max_upload_size": "100M",
            "rc_media_create": generous,
            "rc_login": {"address": generous, "account": generous, "failed_attempts": generous},
            "rc_registration": generous,
            "media_storage_providers": self.providers,
        }
        config.update(self.extra)
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 90.0) -> None:
        self.write_config()
        log = open(self.workdir / "stdout.log", "ab")  # noqa: SIM115 - the child keeps its own copy
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"synapse exited with {self.proc.returncode}: {self.output_tail()}")
            try:
                if self.request("GET", "/_matrix/client/versions", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"synapse did not answer within {timeout}s: {self.output_tail()}")

    def output_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.workdir / "stdout.log", self.log_path):
            try:
                out += path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(out)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None

    # ------------------------------------------------------------------ HTTP
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> HTTPResult:
        req = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HTTPResult(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as e:
            return HTTPResult(e.code, e.read(), dict(e.headers))

    def _json(self, method: str, path: str, payload: dict[str, Any], **kw: Any) -> Any:
        res = self.request(method, path, json.dumps(payload).encode(), {"Content-Type": "application/json"}, **kw)
        if res.status != 200:
            raise RuntimeError(f"{method} {path}: {res.status} {res.body[:300]!r}")
        return res.json()

    def register(self, user: str = "alice", password: str = "secret-password") -> str:
        """Register ``user`` with the shared secret; remember and return its access token."""
        nonce = self.request("GET", "/_synapse/admin/v1/register").json()["nonce"]
        mac = hmac.new(SHARED_SECRET.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), user.encode(), password.encode(), b"notadmin"]))
        payload = {"nonce": nonce, "username": user, "password": password, "admin": False, "mac": mac.hexdigest()}
        self.token = self._json("POST", "/_synapse/admin/v1/register", payload)["access_token"]
        return self.token

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def upload(self, data: bytes, content_type: str = "application/octet-stream", filename: str = "f.bin") -> str:
        """Upload through the client-server API; return the media id."""
        res = self.request(
            "POST",
            "/_matrix/media/v3/upload?filename=" + urllib.parse.quote(filename),
            data,
            {**self._auth(), "Content-Type": content_type},
        )
        if res.status != 200:
            raise RuntimeError(f"upload: {res.status} {res.body[:300]!r}")
        uri = res.json()["content_uri"]
        assert uri.startswith(f"mxc://{SERVER_NAME}/"), uri
        return str(uri.rsplit("/", 1)[1])

    def download(self, media_id: str, timeout: float = 90) -> HTTPResult:
        return self.request(
            "GET", f"/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}", headers=self._auth(), timeout=timeout
        )

    def thumbnail(self, media_id: str, width: int, height: int, method: str = "crop") -> HTTPResult:
        query = urllib.parse.urlencode({"width": width, "height": height, "method": method})
        return self.request(
            "GET", f"/_matrix/client/v1/media/thumbnail/{SERVER_NAME}/{media_id}?{query}", headers=self._auth()
        )

    # ------------------------------------------------------------------ the media store
    def content_rel(self, media_id: str) -> str:
        return f"local_content/{media_id[:2]}/{media_id[2:4]}/{media_id[4:]}"

    def thumbnails_rel(self, media_id: str) -> str:
        return f"local_thumbnails/{media_id[:2]}/{media_id[2:4]}/{media_id[4:]}"

    def local_files(self, media_id: str) -> list[str]:
        """Relative paths of the media file and its thumbnails in the local media store."""
        out = []
        if (self.media_store / self.content_rel(media_id)).exists():
            out.append(self.content_rel(media_id))
        thumbs = self.media_store / self.thumbnails_rel(media_id)
        if thumbs.is_dir():
            out += sorted(f"{self.thumbnails_rel(media_id)}/{p.name}" for p in thumbs.iterdir())
        return out

    def remove_local(self, media_id: str) -> None:
        for rel in self.local_files(media_id):
            os.unlink(self.media_store / rel)


@contextmanager
def start_synapse(
    workdir: str | os.PathLike[str], providers: list[dict[str, Any]], extra: dict[str, Any] | None = None
) -> Iterator[Synapse]:
    """Start a homeserver in ``workdir`` with these ``media_storage_providers``; stop it (by PID) on exit."""
    server = Synapse(Path(os.fspath(workdir)), providers, extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()
