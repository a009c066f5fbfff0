"""Contract-suite fixtures for the rclone backend: a local-folder remote and an s3 remote on SeaweedFS.

The backend starts and stops its own ``rclone rcd`` child; these fixtures only provide remotes.
The s3 remote points at the session SeaweedFS server of tests/servers/seaweedfs.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from unistore.backends.rclone import RcloneBackend


def s3_remote(seaweedfs: Any) -> dict[str, str]:
    """An rclone s3 remote definition for a SeaweedFS test server."""
    return {
        "type": "s3",
        "provider": "SeaweedFS",
        "access_key_id": seaweedfs.access_key,
        "secret_access_key": seaweedfs.secret_key,
        "endpoint": seaweedfs.endpoint,
        "region": "us-east-1",
        # keep empty directories visible (mkdir + list of an empty directory)
        "directory_markers": "true",
    }


def _run(be: RcloneBackend) -> Iterator[RcloneBackend]:
    be.create()
    with be:
        yield be
    be.destroy()


@pytest.fixture
def backend_rclone_local(tmp_path: Path) -> Iterator[RcloneBackend]:
    # an empty private config: the user's rclone config is never read by the tests
    conf = tmp_path / "rclone.conf"
    conf.write_text("")
    yield from _run(RcloneBackend.from_url(f"rclone:{tmp_path / 'store'}", config_file=str(conf)))


@pytest.fixture
def backend_rclone_s3(seaweedfs: Any) -> Iterator[RcloneBackend]:
    bucket = seaweedfs.new_bucket()
    be = RcloneBackend.from_url(
        f"rclone:weed:{bucket}/t-{uuid.uuid4().hex[:8]}", remotes={"weed": s3_remote(seaweedfs)}
    )
    yield from _run(be)
