"""A small real invenio-files-rest application for the tests and the benchmark.

``create_app(config)`` builds a Flask app with invenio-db, invenio-files-rest (REST API under
``/files``), Flask-CeleryExt and either unistore's storage (``storage="unistore"``, with the
direct multipart blueprint under ``/multipart``) or invenio-s3's (``storage="invenio-s3"``, in the
separate venv of tests/servers/invenio_s3_venv.py). Config is a plain dict (also read from the JSON
file named by ``$UNISTORE_INVENIO_TEST_CONFIG``, which is how the Celery worker and a served app in
another process get the same settings).

Celery: the ``filesystem://`` broker (queues are directories) and a ``file://`` result backend, so
a real worker runs without Redis or RabbitMQ. ``python -m tests.servers.invenio_app serve PORT``
serves the app (threaded werkzeug) for the browser test and the benchmark; ``serve`` prints
``READY`` once it listens.

Permissions: everything is allowed, except an action named in the request header
``X-Test-Deny`` (or all actions for ``X-Test-Deny: *``), so tests can check the permission checks.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CONFIG_ENV = "UNISTORE_INVENIO_TEST_CONFIG"


def base_config(workdir: Path, db_uri: str | None = None) -> dict[str, Any]:
    """Settings for an app whose database, broker queues and task results live in ``workdir``."""
    queue = workdir / "broker"
    for sub in ("in", "processed"):
        (queue / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "results").mkdir(parents=True, exist_ok=True)
    return {
        "SECRET_KEY": "unistore-test",
        "SQLALCHEMY_DATABASE_URI": db_uri or f"sqlite:///{workdir / 'invenio.db'}",
        "SQLALCHEMY_TRACK_MODIFICATIONS": False,
        "DB_VERSIONING": False,
        "SERVER_NAME": None,
        "FILES_REST_STORAGE_FACTORY": "unistore.adapters.invenio.storage_factory",
        "FILES_REST_PERMISSION_FACTORY": "tests.servers.invenio_app:permission_factory",
        "FILES_REST_ALLOW_RANGE_REQUESTS": True,
        "FILES_REST_TASK_WAIT_INTERVAL": 0.2,
        "FILES_REST_TASK_WAIT_MAX_SECONDS": 120,
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_TRANSPORT_OPTIONS": {
            "data_folder_in": str(queue / "in"),
            "data_folder_out": str(queue / "in"),
            "data_folder_processed": str(queue / "processed"),
            "control_folder": str(queue / "control"),  # the worker's mailbox (else ./control)
            "polling_interval": 0.1,
        },
        "CELERY_RESULT_BACKEND": f"file://{workdir / 'results'}",
        "CELERY_TASK_ALWAYS_EAGER": False,
        "CELERY_IMPORTS": ["invenio_files_rest.tasks", "unistore.adapters.invenio.tasks"],
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
        "STORAGE": "unistore",
    }


class _Permission:
    def __init__(self, action: str) -> None:
        self.action = action

    def can(self) -> bool:
        from flask import has_request_context, request

        if not has_request_context():
            return True
        deny = request.headers.get("X-Test-Deny", "")
        return not (deny == "*" or self.action in deny.split(","))


def permission_factory(obj: Any, action: str) -> _Permission:
    return _Permission(action)


def _own_celery(flask_app: Any) -> Any:
    """A Celery app of this Flask app's own, made the default of every thread.

    Flask-CeleryExt reconfigures the one global Celery app for each Flask app, but that app keeps
    the result backend and broker pool it made first: with several test apps in one process, tasks
    would go to the first app's queues and results. The shared tasks bind to the newest app.
    """
    from celery import Celery
    from flask_celeryext._mapping import FLASK_TO_CELERY_MAPPING
    from flask_celeryext.app import AppContextTask, map_invenio_to_celery

    celery = Celery(flask_app.import_name, set_as_current=True)
    celery.config_from_object(map_invenio_to_celery(flask_app.config, FLASK_TO_CELERY_MAPPING))
    celery.Task = AppContextTask
    celery.flask_app = flask_app
    celery.set_default()
    return celery


def create_app(config: dict[str, Any]) -> Any:
    from flask import Flask
    from flask_babel import Babel
    from flask_celeryext import FlaskCeleryExt
    from flask_login import LoginManager
    from invenio_db import InvenioDB
    from invenio_files_rest import InvenioFilesREST
    from invenio_files_rest.views import blueprint as files_blueprint

    app = Flask("unistore_invenio_test")
    app.config.update(config)
    Babel(app)
    InvenioDB(app, entry_point_group=False)
    InvenioFilesREST(app)
    FlaskCeleryExt(app, create_celery_app=_own_celery)
    LoginManager(app).user_loader(lambda user_id: None)  # anonymous users only
    if config.get("STORAGE") == "invenio-s3":
        from invenio_s3 import InvenioS3

        InvenioS3(app)
    else:
        from unistore.adapters.invenio.ext import UnistoreInvenio
        from unistore.adapters.invenio.views import create_blueprint

        UnistoreInvenio(app)
        app.register_blueprint(create_blueprint(app))
    app.register_blueprint(files_blueprint)
    return app


def init_db(app: Any, locations: dict[str, str], default: str) -> None:
    """Create the tables and the locations (name -> URI)."""
    from invenio_db import db
    from invenio_files_rest import models  # noqa: F401 (the tables)
    from invenio_files_rest.models import Location

    with app.app_context():
        db.create_all()
        for name, uri in locations.items():
            if Location.get_by_name(name) is None:
                db.session.add(Location(name=name, uri=uri, default=(name == default)))
        db.session.commit()


def config_from_env() -> dict[str, Any]:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"${CONFIG_ENV} names no config file")
    return dict(json.loads(Path(path).read_text()))


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(config))
    return path


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free 127.0.0.1 port in a thread; yields the base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


class ByteCounter:
    """WSGI middleware counting the request and response body bytes the app process handles."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0
        self.sent = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        counter = self
        stream = environ["wsgi.input"]

        class Input:
            def read(self, *a: Any) -> bytes:
                data: bytes = stream.read(*a)
                with counter._lock:
                    counter.received += len(data)
                return data

            def readline(self, *a: Any) -> bytes:
                data: bytes = stream.readline(*a)
                with counter._lock:
                    counter.received += len(data)
                return data

            def __iter__(self) -> Any:
                return iter(self.readline, b"")

        environ["wsgi.input"] = Input()
        for chunk in self.app(environ, start_response):
            with self._lock:
                self.sent += len(chunk)
            yield chunk


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "serve":
        from werkzeug.serving import make_server

        app = create_app(config_from_env())
        counter = ByteCounter(app.wsgi_app)
        app.wsgi_app = counter  # type: ignore[method-assign]

        @app.route("/_bytes")
        def _bytes() -> Any:
            return {"received": counter.received, "sent": counter.sent}

        server = make_server("127.0.0.1", int(argv[1]), app, threaded=True)
        print("READY", flush=True)
        server.serve_forever()
        return 0
    print("usage: python -m tests.servers.invenio_app serve PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
