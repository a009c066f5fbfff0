"""A real Celery worker for the test Invenio app (``filesystem://`` broker, ``file://`` results).

``celery -A tests.servers.invenio_worker:celery worker`` builds the app from the JSON config named
by ``$UNISTORE_INVENIO_TEST_CONFIG``; :func:`start_worker` runs one (``--pool=solo``) and stops it
by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _celery() -> Any:
    from tests.servers.invenio_app import config_from_env, create_app

    app = create_app(config_from_env())
    return app.extensions["flask-celeryext"].celery


def __getattr__(name: str) -> Any:
    if name == "celery":
        value = _celery()
        globals()["celery"] = value
        return value
    raise AttributeError(name)


@contextmanager
def start_worker(config_path: Path, log_path: Path, python: str | None = None, timeout: float = 60) -> Iterator[Any]:
    """Run a worker with the app of ``config_path``; yields the Popen; stopped by PID afterwards."""
    env = dict(os.environ)
    env["UNISTORE_INVENIO_TEST_CONFIG"] = str(config_path)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [
        python or sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.servers.invenio_worker:celery",
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "info",
    ]
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env, start_new_session=True)
    finally:
        log.close()
    try:
        deadline = time.monotonic() + timeout
        while b"ready." not in log_path.read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(f"celery worker exited: {log_path.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker not ready: {log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)
