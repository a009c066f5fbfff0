"""A private PostgreSQL for the test session (RelStorage tests).

``initdb`` + ``pg_ctl start`` in a temp dir (in RAM, /dev/shm, when there is room), listening on
127.0.0.1 on a free port, with fsync off. PostgreSQL refuses to run as root, so as root the
programs run as the ``postgres`` user (via ``runuser``) in a directory owned by that user. Stopped
at once (client connections terminated, then an immediate shutdown) and, if that fails, by the
postmaster's PID; the data directory is removed afterwards, also on failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def pg_bindir() -> str:
    """The directory holding initdb/pg_ctl (Debian keeps them off PATH)."""
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(found)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if not candidates:
        raise RuntimeError("PostgreSQL server programs not found (apt-get install postgresql)")
    return os.path.dirname(candidates[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgreSQL:
    """One running server; ``dsn(dbname)`` and ``new_database()`` for tests."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.datadir = os.path.join(workdir, "data")
        self.port = _free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.bindir = pg_bindir()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(workdir, pw.pw_uid, pw.pw_gid)
        self.pid: int | None = None

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [*self._as_user, *args],
            check=True,
            timeout=timeout,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )

    def start(self) -> None:
        self._run(
            os.path.join(self.bindir, "initdb"),
            "-D",
            self.datadir,
            "-A",
            "trust",
            "-U",
            self.user,
            "--no-sync",
            "-E",
            "UTF8",
        )
        opts = f"-c listen_addresses={self.host} -p {self.port} -k {self.workdir} -c fsync=off "
        opts += "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        self._run(
            os.path.join(self.bindir, "pg_ctl"),
            "-D",
            self.datadir,
            "-o",
            opts,
            "-l",
            os.path.join(self.workdir, "log"),
            "-w",
            "-t",
            "60",
            "start",
        )
        with open(os.path.join(self.datadir, "postmaster.pid")) as f:
            self.pid = int(f.readline().strip())

    def stop(self) -> None:
        """Stop at once: end every client connection, then an immediate shutdown (SIGQUIT to the
        postmaster, as ``pg_ctl stop -m immediate``: no checkpoint).

        The data directory is thrown away afterwards, so nothing needs to reach the disk; a fast
        shutdown waited for clients and for its checkpoint (63 s at the end of a session).
        """
        if self.pid is None:
            return
        self._terminate_clients()
        try:
            os.kill(self.pid, signal.SIGQUIT)  # what pg_ctl stop -m immediate sends, without its polling
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(self.pid):
            time.sleep(0.02)
        if _alive(self.pid):
            os.kill(self.pid, signal.SIGKILL)
        self.pid = None

    def _terminate_clients(self) -> None:
        """Close every other connection to the server (those leaked by tests included)."""
        try:
            import psycopg2

            conn = psycopg2.connect(self.dsn(), connect_timeout=5)
        except Exception:
            return  # the server is not answering: the shutdown below does not need it to
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
        except Exception:
            pass
        finally:
            conn.close()

    def dsn(self, dbname: str = "postgres") -> str:
        return f"dbname={dbname} user={self.user} host={self.host} port={self.port}"

    def new_database(self) -> str:
        """Create an empty database with a unique name and return that name."""
        import psycopg2

        name = f"t_{uuid.uuid4().hex[:16]}"
        conn = psycopg2.connect(self.dsn())
        try:
            conn.autocommit = True
            # PostgreSQL 15 copies the template through the WAL by default: a file copy is faster
            strategy = " STRATEGY FILE_COPY" if conn.server_version >= 150000 else ""
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}{strategy}")
        finally:
            conn.close()
        return name


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (an exited postmaster not yet reaped by its adoptive parent is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _fast_dir() -> str | None:
    """A RAM file system for the data directory when there is room (/dev/shm), else the temp dir.

    Every test database is a copy of the template (some 8 MB): on disk under a loaded CI machine
    that took 0.7-1 s per database and 21 s to delete a session's data directory, in RAM 0.05 s.
    """
    shm = "/dev/shm"
    try:
        if os.access(shm, os.W_OK | os.X_OK) and shutil.disk_usage(shm).free > 4 * 1024**3:
            return shm
    except OSError:
        pass
    return None


@contextmanager
def start_postgres() -> Iterator[PostgreSQL]:
    workdir = tempfile.mkdtemp(prefix="unistore-pg-", dir=_fast_dir())
    server = PostgreSQL(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgreSQL]:
    """One PostgreSQL for the whole test session."""
    with start_postgres() as server:
        yield server
