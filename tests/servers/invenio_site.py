"""One test Invenio site: app, database, locations on SeaweedFS and on local disk, a config file.

Locations:

- ``s3`` (default): ``s3://<bucket>/files`` — invenio-s3's URI form, configured by ``S3_*`` keys;
- ``archive``: ``s3://<bucket>/archive`` — the same bucket, so copies between them are server-side;
- ``url``: ``s3:http://127.0.0.1:PORT/<bucket2>/inv`` — a unistore URL (credentials from ``S3_*``);
- ``local``: ``file:///<workdir>/local`` — a backend without presign or multipart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers.invenio_app import base_config, create_app, init_db, write_config


@dataclass
class Site:
    app: Any
    workdir: Path
    config: dict[str, Any]
    config_path: Path
    bucket: str
    bucket2: str
    locations: dict[str, str] = field(default_factory=dict)

    def new_bucket(self, location: str = "s3") -> str:
        """A new invenio-files-rest bucket in ``location``; returns its id."""
        from invenio_db import db
        from invenio_files_rest.models import Bucket, Location

        with self.app.app_context():
            b = Bucket.create(location=Location.get_by_name(location))
            db.session.commit()
            return str(b.id)


def s3_config(seaweedfs: Any) -> dict[str, Any]:
    return {
        "S3_ENDPOINT_URL": seaweedfs.endpoint,
        "S3_ACCESS_KEY_ID": seaweedfs.access_key,
        "S3_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "S3_REGION_NAME": "us-east-1",
    }


def make_site(workdir: Path, seaweedfs: Any, *, db_uri: str | None = None, extra: dict[str, Any] | None = None) -> Site:
    workdir.mkdir(parents=True, exist_ok=True)
    bucket, bucket2 = seaweedfs.new_bucket(), seaweedfs.new_bucket()
    config = base_config(workdir, db_uri)
    config.update(s3_config(seaweedfs))
    config.update(extra or {})
    (workdir / "local").mkdir(exist_ok=True)
    locations = {
        "s3": f"s3://{bucket}/files",
        "archive": f"s3://{bucket}/archive",
        "url": f"s3:{seaweedfs.endpoint}/{bucket2}/inv",
        "local": f"file://{workdir / 'local'}",
    }
    path = write_config(config, workdir / "config.json")
    app = create_app(config)
    init_db(app, locations, default="s3")
    return Site(app, workdir, config, path, bucket, bucket2, locations)
