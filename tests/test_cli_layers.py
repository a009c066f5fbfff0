"""The CLI's client-side layers: --encrypt-key-file, --compress and `unistore reencrypt`, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "unistore.cli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_encrypted_and_compressed_put_get_and_reencrypt(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_bytes(os.urandom(32))
    new.write_text(os.urandom(32).hex() + "\n")
    src = tmp_path / "doc.txt"
    src.write_text("confidential minutes of the meeting\n" * 50)
    assert cli("--url", store, "create").returncode == 0
    put = cli("--url", store, "--encrypt-key-file", str(old), "--compress", "zstd:9", "put", "docs/m", str(src))
    assert put.returncode == 0, put.stderr
    stored = (tmp_path / "store" / "docs" / "m").read_bytes()
    assert b"confidential" not in stored and len(stored) < src.stat().st_size
    got = cli("--url", store, "--encrypt-key-file", str(old), "--compress", "zstd", "get", "docs/m")
    assert got.stdout == src.read_text()
    # the wrong key: an integrity error, never wrong bytes
    wrong = cli("--url", store, "--encrypt-key-file", str(new), "--compress", "zstd", "get", "docs/m")
    assert wrong.returncode == 1 and "IntegrityError" in wrong.stderr and wrong.stdout == ""
    # rotation: reencrypt under the new key, resumable
    first = cli("--url", store, "--encrypt-key-file", str(new), "--json", "reencrypt", "--old-key-file", str(old))
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1])["rewritten"] == 1
    again = cli("--url", store, "--encrypt-key-file", str(new), "--json", "reencrypt", "--old-key-file", str(old))
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert (summary["rewritten"], summary["kept"]) == (0, 1)
    got = cli("--url", store, "--encrypt-key-file", str(new), "--compress", "zstd", "get", "docs/m")
    assert got.stdout == src.read_text()
    # bad options are one line and exit 2, and the key never shows
    bad = cli("--url", store, "--compress", "gzip", "get", "docs/m")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    short = tmp_path / "short.key"
    short.write_bytes(b"too short")
    err = cli("--url", store, "--encrypt-key-file", str(short), "get", "docs/m")
    assert err.returncode == 2 and "32" in err.stderr
    assert old.read_bytes().hex() not in put.stderr + got.stderr + first.stderr
