"""Runs in the invenio-s3 venv (tests/servers/invenio_s3_venv.py): does what invenio-s3 6.1's
storage does with a list of operations read as JSON, prints the results as JSON.

``python -m tests.servers.invenio_s3_peer OPS.json`` with ``{"config": {S3_* keys}, "ops": [...]}``;
each op is ``{"op": "save"|"read"|"multipart"|"send_file", "uri": ..., "size": n, "seed": s,
"part_size": p}``. Data are ``random.Random(seed).randbytes(size)``, so both sides can compare
without moving files through the test.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
import urllib.request
from math import ceil
from typing import Any


def data_of(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def run(op: dict[str, Any]) -> dict[str, Any]:
    from invenio_s3 import S3FSFileStorage

    kind, uri = op["op"], op["uri"]
    if kind == "save":
        got = S3FSFileStorage(uri).save(io.BytesIO(data_of(op["seed"], op["size"])))
        return {"uri": got[0], "size": got[1], "checksum": got[2]}
    if kind == "read":
        storage = S3FSFileStorage(uri, size=op["size"])
        with storage.open("rb") as fp:
            data = fp.read()
        return {"md5": hashlib.md5(data).hexdigest(), "size": len(data), "checksum": storage.checksum()}
    if kind == "multipart":
        storage = S3FSFileStorage(uri, size=op["size"])
        data = data_of(op["seed"], op["size"])
        part = op["part_size"]
        parts = ceil(len(data) / part)
        md = storage.multipart_initialize_upload(parts, len(data), part)
        client = storage.multipart_file(md["uploadId"])
        for n in range(parts):
            client.upload_part(n + 1, data[n * part : (n + 1) * part])
        etag = storage.multipart_commit_upload(**md, parts=parts, part_size=part, size=len(data))
        return {"etag": etag}
    if kind == "send_file":
        from flask import current_app

        storage = S3FSFileStorage(uri, size=op["size"])
        with current_app.test_request_context():
            res = storage.send_file("file.bin", mimetype="application/octet-stream")
        with urllib.request.urlopen(res.headers["Location"], timeout=60) as r:
            data = r.read()
        return {"status": res.status_code, "md5": hashlib.md5(data).hexdigest()}
    raise ValueError(f"unknown op {kind!r}")


def main(path: str) -> int:
    from flask import Flask
    from invenio_s3 import InvenioS3

    spec = json.loads(open(path).read())
    app = Flask("invenio_s3_peer")
    app.config.update(spec["config"])
    InvenioS3(app)
    with app.app_context():
        print(json.dumps([run(op) for op in spec["ops"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
