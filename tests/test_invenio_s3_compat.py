"""A site's bucket written by invenio-s3 6.1 is read by unistore's storage, and the reverse.

invenio-s3 runs in its own venv (aiobotocore pins botocore; see tests/servers/invenio_s3_venv.py),
built on first use and reused. Both sides use the same ``s3://bucket/files/ab/cd/<id>/data`` URIs
and the same ``S3_*`` config, as a site switching factories would.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("invenio_files_rest")

from tests.servers.invenio_s3_venv import REPO, ensure_invenio_s3_venv  # noqa: E402
from tests.servers.invenio_site import Site, make_site, s3_config  # noqa: E402
from unistore.adapters.invenio import storage_factory  # noqa: E402

MiB = 1024 * 1024
# the first run builds invenio-s3's venv (75 s on a quiet machine, nearly 4 min on a loaded one)
pytestmark = pytest.mark.timeout(900)


def data_of(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, seaweedfs: Any) -> Iterator[Site]:
    s = make_site(tmp_path_factory.mktemp("invenio-compat"), seaweedfs)
    with s.app.test_request_context():
        yield s


@pytest.fixture(scope="module")
def peer(site: Site, seaweedfs: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    python = ensure_invenio_s3_venv()
    workdir = tmp_path_factory.mktemp("peer")

    def run(ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        spec = workdir / f"{uuid.uuid4().hex}.json"
        spec.write_text(json.dumps({"config": s3_config(seaweedfs), "ops": ops}))
        out = subprocess.run(
            [str(python), "-m", "tests.servers.invenio_s3_peer", str(spec)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    return run


def new_uri(site: Site) -> str:
    u = uuid.uuid4().hex
    return f"{site.locations['s3']}/{u[:2]}/{u[2:4]}/{u[4:]}/data"


def test_invenio_s3_files_read_by_unistore(site: Site, peer: Any) -> None:
    small, big, multi = new_uri(site), new_uri(site), new_uri(site)
    sizes = {small: 1000, big: 12 * MiB + 5, multi: 11 * MiB}
    results = peer(
        [
            {"op": "save", "uri": small, "size": sizes[small], "seed": 1},
            {"op": "save", "uri": big, "size": sizes[big], "seed": 2},  # s3fs writes this in 5 MiB blocks
            {"op": "multipart", "uri": multi, "size": sizes[multi], "seed": 3, "part_size": 5 * MiB},
        ]
    )
    for (uri, seed), res in zip([(small, 1), (big, 2), (multi, 3)], results, strict=True):
        data = data_of(seed, sizes[uri])
        storage = storage_factory(fileurl=uri, size=sizes[uri])
        with storage.open("rb") as fp:
            assert fp.read() == data
        assert storage.checksum() == "md5:" + hashlib.md5(data).hexdigest()
        if "checksum" in res:
            assert res["checksum"] == storage.checksum()
        res302 = storage.send_file("f.bin")
        assert res302.status_code == 302
        storage.delete()  # and unistore deletes what invenio-s3 wrote
        assert not storage.backend.list_multipart_uploads(storage.name)
    assert results[2]["etag"].endswith("-3")


def test_unistore_files_read_by_invenio_s3(site: Site, peer: Any) -> None:
    small, big, multi = new_uri(site), new_uri(site), new_uri(site)
    sizes = {small: 777, big: 20 * MiB + 1, multi: 11 * MiB + 9}
    storage_factory(fileurl=small, size=None).save(io.BytesIO(data_of(4, sizes[small])))
    storage_factory(fileurl=big, size=None).save(io.BytesIO(data_of(5, sizes[big])))  # multipart upload
    s = storage_factory(fileurl=multi, size=sizes[multi])
    data = data_of(6, sizes[multi])
    md = s.multipart_initialize_upload(3, len(data), 5 * MiB)
    for n in range(3):
        s.multipart_set_content(
            n + 1,
            io.BytesIO(data[n * 5 * MiB : (n + 1) * 5 * MiB]),
            len(data[n * 5 * MiB : (n + 1) * 5 * MiB]),
            parts=3,
            part_size=5 * MiB,
            **md,
        )
    s.multipart_commit_upload(**md, parts=3, part_size=5 * MiB, size=len(data))
    ops = [{"op": "read", "uri": u, "size": sizes[u]} for u in (small, big, multi)]
    ops.append({"op": "send_file", "uri": big, "size": sizes[big]})
    results = peer(ops)
    for (uri, seed), res in zip([(small, 4), (big, 5), (multi, 6)], results[:3], strict=True):
        expected = hashlib.md5(data_of(seed, sizes[uri])).hexdigest()
        assert res["md5"] == expected and res["size"] == sizes[uri]
        assert res["checksum"] == f"md5:{expected}"
    assert results[3] == {"status": 302, "md5": hashlib.md5(data_of(5, sizes[big])).hexdigest()}
    for uri in (small, big, multi):
        storage_factory(fileurl=uri, size=None).delete()


def test_peer_venv_is_separate() -> None:
    import sys

    python = ensure_invenio_s3_venv()
    code = "import sys, botocore, invenio_s3, aiobotocore; print(sys.prefix, botocore.__version__)"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    prefix, botocore = out.stdout.split()
    assert Path(prefix) != Path(sys.prefix)
    import botocore as ours

    assert botocore != ours.__version__  # aiobotocore's pin: why invenio-s3 cannot share this venv
