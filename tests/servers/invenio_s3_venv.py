"""A separate virtualenv holding invenio-s3 6.1 (for the cross-compatibility tests and the benchmark).

invenio-s3 pulls s3fs and aiobotocore, and aiobotocore pins botocore to a narrow range that the
boto3 of unistore's own test venv is past; installing both into one venv either breaks one of them
or makes pip backtrack for many minutes. So invenio-s3 lives in its own venv: first invenio-s3 (pip
resolves botocore for aiobotocore), then boto3 of exactly the botocore release it got. unistore is
not installed there: the peer scripts run from this tree's root and import only ``tests.servers``.
The venv is built once (about 75 s) and reused by every checkout (a marker file records what it
holds); ``UNISTORE_INVENIO_S3_VENV`` moves it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

INVENIO_S3 = "invenio-s3==6.1.0"
REPO = Path(__file__).resolve().parents[2]


def venv_dir() -> Path:
    default = Path.home() / ".cache" / "unistore" / f"invenio-s3-6.1-py{sys.version_info[0]}{sys.version_info[1]}"
    return Path(os.environ.get("UNISTORE_INVENIO_S3_VENV", default))


def _pip(python: Path, *args: str, timeout: float = 900) -> str:
    out = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *args],
        check=True,
        timeout=timeout,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return out.stdout


def ensure_invenio_s3_venv() -> Path:
    """The interpreter of a venv with invenio-s3 6.1, a matching boto3 and this tree (built if missing)."""
    root = venv_dir()
    python = root / "bin" / "python"
    marker = root / "unistore-invenio-s3.txt"
    want = f"{INVENIO_S3}\n"
    if python.exists() and marker.exists() and marker.read_text() == want:
        return python
    t0 = time.monotonic()
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, timeout=300)
    _pip(python, INVENIO_S3)
    botocore = subprocess.run(
        [str(python), "-c", "import botocore; print(botocore.__version__)"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=60,
    ).stdout.strip()
    # boto3 X.Y.Z depends on botocore X.Y.Z: pin it, so pip keeps aiobotocore's botocore
    _pip(python, f"boto3=={botocore}", f"botocore=={botocore}")
    marker.write_text(want)
    print(f"built {root} in {time.monotonic() - t0:.0f}s (botocore {botocore})", file=sys.stderr)
    return python


if __name__ == "__main__":
    print(ensure_invenio_s3_venv())
