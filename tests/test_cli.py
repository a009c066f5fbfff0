"""The unistore command, run as a real subprocess and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unistore.cli import main


def run(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "unistore.cli", *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_demo_runs_in_a_fresh_folder(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "unistore.cli", "demo"], cwd=tmp_path, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "soft-deleted one: 2 live" in out and "undeleted it: 3 live again" in out
    assert "bytes 5..15 = b'alphaalpha'" in out
    assert (tmp_path / "unistore-demo" / "config").read_bytes() == b"demo configuration"
    again = run("demo", "--json", "--dir", str(tmp_path / "unistore-demo"))
    report = json.loads(again.stdout)
    assert len(report["items"]) == 3 and report["stats"]["store_calls"] == 4


def test_put_get_ls_info_mv_rm_undelete(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s"
    env = {"UNISTORE_URL": url}
    assert run("create", env=env).returncode == 0
    src = tmp_path / "src.bin"
    payload = os.urandom(6 * 1024 * 1024)  # above the progress-bar threshold
    src.write_bytes(payload)
    r = run("put", "docs/big.bin", str(src), "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["size"] == len(payload)
    assert run("put", "docs/small", "-", stdin=b"from stdin", env=env).returncode == 0
    out = tmp_path / "out.bin"
    assert run("get", "docs/big.bin", str(out), env=env).returncode == 0
    assert out.read_bytes() == payload
    assert run("get", "docs/small", env=env).stdout == b"from stdin"
    assert run("get", "docs/small", "--offset", "-5", env=env).stdout == b"stdin"
    listing = json.loads(run("ls", "docs", "--json", env=env).stdout)
    assert [(e["name"], e["size"]) for e in listing] == [("big.bin", len(payload)), ("small", 10)]
    info = json.loads(run("info", "docs/small", "--hash", "--json", env=env).stdout)
    assert info["size"] == 10 and len(info["sha256"]) == 64
    assert run("mv", "docs/small", "docs/renamed", env=env).returncode == 0
    assert run("rm", "--soft", "docs/renamed", env=env).returncode == 0
    deleted = json.loads(run("ls", "docs", "--deleted", "--json", env=env).stdout)
    assert [e["name"] for e in deleted] == ["renamed"]
    assert run("undelete", "docs/renamed", env=env).returncode == 0
    assert run("get", "docs/renamed", env=env).stdout == b"from stdin"
    stats = json.loads(run("stats", "--json", env=env).stdout)
    assert stats["total"]["items"] == 2 and stats["total"]["bytes"] == len(payload) + 10
    assert run("rm", "docs/renamed", "docs/big.bin", env=env).returncode == 0
    assert json.loads(run("ls", "docs", "--json", env=env).stdout) == []
    assert run("destroy", env=env).returncode == 2
    assert run("destroy", "--yes", env=env).returncode == 0
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "argv,code,message",
    [
        (["ls"], 2, "no backend URL"),
        (["--url", "nosuch:x", "ls"], 2, "unknown backend scheme"),
        (["--url", "file://relative", "ls"], 2, "absolute path"),
        (["--url", "file:///tmp", "get", "../etc/passwd"], 2, "'../etc/passwd'"),
        (["--url", "file:///tmp", "put", "x", "/nonexistent/file"], 2, "/nonexistent/file"),
        (["--url", "file:///nonexistent-store-dir", "ls"], 1, "BackendDoesNotExist"),
    ],
)
def test_user_errors_are_one_line_without_traceback(argv: list[str], code: int, message: str) -> None:
    r = run(*argv)
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_item_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"file://{tmp_path}/s"
    assert main(["--url", url, "create"]) == 0
    assert main(["--url", url, "get", "missing", str(tmp_path / "o")]) == 1
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.part").exists()


def test_secrets_are_redacted_in_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "nosuch:user:TOPSECRET@host/x", "ls"]) == 2
    err = capsys.readouterr().err
    assert "TOPSECRET" not in err and "***" in err


def test_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"file://{tmp_path}/s"
    assert main(["--url", url, "create"]) == 0
    capsys.readouterr()
    assert main(["--url", url, "--json", "bench", "--count", "50", "--size", "100"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["ops_per_second"]) == {
        "store", "load", "info", "list", "delete", "store_many", "load_many", "delete_many"
    }
    assert all(v > 0 for v in data["ops_per_second"].values())
