"""cp/sync/check, presign, tags and multipart cleanup through the real CLI against SeaweedFS, moto
and OpenSSH; progress bars and Ctrl-C in a pseudo-terminal.

Ctrl-C is a real ``\\x03`` typed into the terminal the CLI runs in. The tests check that the process
ends by itself with exit 130 (no timed assertion: the bound is the runner's grace period) and what
is left: no object, no pending multipart upload, no ``.part`` or temp file, on S3, posixfs, SFTP
and rclone.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import one_line_error, run

BIG = 160 * 1024 * 1024  # large enough that a transfer is still running when Ctrl-C arrives


@pytest.fixture(autouse=True)
def _private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("UNISTORE_URL", raising=False)


def run_pty(
    argv: list[str], env: dict[str, str], interrupt_when: Callable[[bytes], bool] | None = None, timeout: float = 120
) -> tuple[int, bytes, bool]:
    """Run the CLI with a pseudo-terminal as its controlling terminal; type Ctrl-C when asked.

    Returns (exit code, everything it wrote, whether Ctrl-C was typed).
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen(
        [sys.executable, "-m", "unistore.cli", *argv],
        stdin=slave, stdout=slave, stderr=slave, env={**os.environ, **env}, preexec_fn=controlling_terminal,
    )
    os.close(slave)
    out = b""
    typed = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                out += data
            if interrupt_when is not None and not typed and interrupt_when(out):
                os.write(master, b"\x03")
                typed = True
            if not ready and p.poll() is not None:
                break
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    return rc, out, typed


def percentages(out: bytes) -> list[int]:
    return [int(m) for m in re.findall(rb"(\d+)%\|", out)]


def mid_transfer(out: bytes) -> bool:
    return any(5 <= p <= 60 for p in percentages(out))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(BIG // len(block)):
            f.write(block)
    return path


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(300_000),
        "sub/deeper/c.bin": os.urandom(9_000_000),  # multipart on S3
        "sub/skip.log": b"log\n",
        "empty": b"",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def tree_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def s3_url(server: Any, prefix: str = "p") -> str:
    url: str = server.url(server.new_bucket(), prefix)
    assert run("--url", url, "create").returncode == 0
    return url


def bucket_of(url: str) -> str:
    return url.rsplit("@", 1)[1].split("/")[3]


def keys(server: Any, url: str) -> list[str]:
    """Item names below the URL's prefix, as the server lists them."""
    prefix = url.rsplit("@", 1)[1].split("/", 4)[4] + "/"
    listed = server.client().list_objects_v2(Bucket=bucket_of(url), Prefix=prefix).get("Contents", [])
    names = (o["Key"][len(prefix) :] for o in listed)
    return sorted(n for n in names if n and not n.endswith("/"))  # directory markers left out


@pytest.fixture(scope="module")
def s3_big(seaweedfs: Any, big_file: Path) -> str:
    """A created store on SeaweedFS that holds big.bin (uploaded with boto3, not through the CLI)."""
    url = s3_url(seaweedfs)
    seaweedfs.client().upload_file(str(big_file), bucket_of(url), "p/big.bin")
    return url


def sftp_args(sshd: Any) -> list[str]:
    opts = sshd.options()
    return [
        "-o", f"key_filename={opts['key_filename']}", "-o", f"known_hosts={opts['known_hosts']}",
        "-o", "allow_agent=0", "-o", "look_for_keys=0", "-o", "ssh_config=none",
    ]


# ----------------------------------------------------------------- cp / sync / check
def _round_trip(tmp_path: Path, url: str, opts: list[str]) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    r = run(*opts, "--json", "cp", "-r", str(src), url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == len(files)
    again = json.loads(run(*opts, "--json", "cp", "-r", str(src), url).stdout)  # resumable: nothing to do
    assert again["files"] == 0 and again["unchanged"] == len(files)
    back = tmp_path / "back"
    assert run(*opts, "cp", "-r", url, str(back)).returncode == 0
    assert tree_of(back) == files
    assert not list(back.rglob("*.part"))
    assert run(*opts, "check", str(src), url).returncode == 0
    # change one file, add one, remove one: check sees it, sync fixes it
    (src / "a.txt").write_bytes(b"ALPHA, changed\n")
    (src / "new.txt").write_bytes(b"new\n")
    (src / "sub" / "b.bin").unlink()
    r = run(*opts, "--json", "check", str(src), url)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert report["differ"] == ["a.txt"] and report["missing"] == ["new.txt"] and report["extra"] == ["sub/b.bin"]
    dry = json.loads(run(*opts, "--json", "sync", "--delete", "--dry-run", str(src), url).stdout)
    assert {c["name"] for c in dry["copy"]} == {"a.txt", "new.txt"} and dry["delete"] == ["sub/b.bin"]
    synced = json.loads(run(*opts, "--json", "sync", "--delete", str(src), url).stdout)
    assert synced["files"] == 2 and synced["deleted"] == 1 and synced["unchanged"] == len(files) - 2
    assert run(*opts, "check", str(src), url).returncode == 0


def test_cp_sync_check_local_and_seaweedfs(tmp_path: Path, seaweedfs: Any) -> None:
    url = s3_url(seaweedfs)
    _round_trip(tmp_path, url, [])
    info = json.loads(run("--url", url, "--json", "info", "a.txt").stdout)
    assert info["size"] == len(b"ALPHA, changed\n") and info["mtime"] > 0


def test_cp_sync_check_local_and_sftp(tmp_path: Path, sshd: Any) -> None:
    url = sshd.url()
    opts = sftp_args(sshd)
    assert run(*opts, "--url", url, "create").returncode == 0
    src = tmp_path / "src"
    files = make_tree(src)
    assert run(*opts, "cp", "-r", str(src), url).returncode == 0
    back = tmp_path / "back"
    assert run(*opts, "cp", "-r", url, str(back)).returncode == 0
    assert tree_of(back) == files
    (src / "a.txt").write_bytes(b"changed")
    (src / "empty").unlink()
    assert run(*opts, "check", str(src), url).returncode == 1
    synced = json.loads(run(*opts, "--json", "sync", "--checksum", "--delete", str(src), url).stdout)
    assert synced["files"] == 1 and synced["deleted"] == 1 and synced["unchanged"] == len(files) - 2
    assert run(*opts, "check", str(src), url).returncode == 0
    assert not [p for p in Path(sshd.abs_path(url.rsplit("/", 1)[-1])).rglob("*") if ".tmp" in p.name]


def test_cp_between_backends_filters_and_no_clobber(tmp_path: Path, seaweedfs: Any, moto_s3: Any) -> None:
    src = tmp_path / "src"
    files = make_tree(src)
    a = s3_url(seaweedfs)
    b = s3_url(moto_s3)
    r = run("--json", "cp", "-r", "--exclude", "*.log", str(src), a)
    assert json.loads(r.stdout)["files"] == len(files) - 1
    r = run("--json", "cp", "-r", a, b)  # S3 -> S3, streamed through the CLI
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"] == len(files) - 1
    only = json.loads(run("--json", "cp", "-r", "--ignore-times", "--include", "sub/*", str(src), b).stdout)
    assert only["files"] == 3
    (src / "a.txt").write_bytes(b"local change")
    kept = json.loads(run("--json", "cp", "-r", "--no-clobber", str(src), b).stdout)
    assert kept["files"] == 0 and kept["kept"] == len(files)  # a.txt differs, but is kept
    assert run("--url", b, "get", "a.txt").stdout == b"alpha\n"
    one = tmp_path / "one.txt"
    assert run("cp", f"{b}/sub/b.bin", str(one)).returncode == 0
    assert one.read_bytes() == files["sub/b.bin"]


def test_tree_with_names_the_store_would_hide_is_refused(tmp_path: Path, seaweedfs: Any) -> None:
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    (src / "ok").write_bytes(b"1")
    (src / "x" / "y.tmp").write_bytes(b"2")
    (src / "z.hid").write_bytes(b"3")
    url = s3_url(seaweedfs)
    one_line_error(run("cp", "-r", str(src), url), 2, "refusing 2 name(s)", "x/y.tmp", "z.hid")
    assert keys(seaweedfs, url) == []
    assert run("cp", "-r", "--exclude", "*.tmp", "--exclude", "*.hid", str(src), url).returncode == 0
    assert keys(seaweedfs, url) == ["ok"]
    one_line_error(run("--url", f"s3:k:s@{seaweedfs.endpoint}/Bad_Bucket", "create"), 2, "invalid bucket name")
    one_line_error(run("--url", "sftp://u@no-such-host.invalid/x", "ls"), 2, "cannot resolve the host")
    one_line_error(run("--url", f"s3:wrong:key@{seaweedfs.endpoint}/{seaweedfs.new_bucket()}", "ls"), 2)


# ----------------------------------------------------------------- presign, tags, multipart
def test_presign_tags_and_multipart_cleanup(seaweedfs: Any) -> None:
    url = s3_url(seaweedfs, "obj")
    env = {"UNISTORE_URL": url}
    assert run("put", "docs/a.txt", "-", stdin=b"hello presigned", env=env).returncode == 0
    assert run("put", "docs/b.txt", "-", stdin=b"b", env=env).returncode == 0
    signed = run("presign", "docs/a.txt", "--expires", "300", env=env)
    assert signed.returncode == 0, signed.stderr
    with urllib.request.urlopen(signed.stdout.decode().strip(), timeout=30) as resp:
        assert resp.read() == b"hello presigned"
    assert run("tag", "set", "docs/a.txt", "color=red", "size=big", env=env).returncode == 0
    assert run("tag", "set", "docs/b.txt", "color=blue", env=env).returncode == 0
    assert json.loads(run("--json", "tag", "get", "docs/a.txt", env=env).stdout) == {"color": "red", "size": "big"}
    assert json.loads(run("--json", "tag", "rm", "docs/a.txt", "size", env=env).stdout) == {"color": "red"}
    assert run("tag", "find", "color=red", env=env).stdout.decode().split() == ["docs/a.txt"]
    # a stale multipart upload, as a killed process leaves it
    bucket = bucket_of(url)
    client = seaweedfs.client()
    upload = client.create_multipart_upload(Bucket=bucket, Key="obj/stale.bin")["UploadId"]
    listed = json.loads(run("--json", "multipart", "ls", env=env).stdout)
    assert [u["upload_id"] for u in listed] == [upload]
    done = json.loads(run("--json", "multipart", "cleanup", "--older-than", "0", env=env).stdout)
    assert done["aborted"] == 1
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


# ----------------------------------------------------------------- progress and Ctrl-C in a terminal
def test_progress_moves_on_s3_upload_and_download(s3_big: str, big_file: Path, tmp_path: Path) -> None:
    rc, out, _ = run_pty(["--url", s3_big, "put", "up.bin", str(big_file)], {})
    assert rc == 0, out[-500:]
    assert len({p for p in percentages(out) if 0 < p < 100}) >= 2, out[-2000:]
    assert b"stored up.bin" in out
    rc, out, _ = run_pty(["--url", s3_big, "get", "big.bin", str(tmp_path / "got")], {})
    assert rc == 0, out[-500:]
    assert len({p for p in percentages(out) if 0 < p < 100}) >= 2, out[-2000:]
    assert (tmp_path / "got").stat().st_size == BIG
    small = tmp_path / "small"
    small.write_bytes(b"x" * 100_000)
    rc, out, _ = run_pty(["--json", "--url", s3_big, "put", "small", str(small)], {})
    assert rc == 0 and percentages(out) == [] and b'"size": 100000' in out  # never a bar with --json


def test_ctrl_c_during_put_to_s3_leaves_nothing(seaweedfs: Any, big_file: Path) -> None:
    url = s3_url(seaweedfs)
    rc, out, typed = run_pty(["--url", url, "put", "big.bin", str(big_file)], {}, interrupt_when=mid_transfer)
    assert typed, out[-500:]
    assert rc == 130, out[-1000:]
    assert b"interrupted" in out
    assert keys(seaweedfs, url) == []
    assert not seaweedfs.client().list_multipart_uploads(Bucket=bucket_of(url)).get("Uploads")


def test_ctrl_c_during_get_and_cp_leaves_no_part_file(s3_big: str, tmp_path: Path) -> None:
    url = s3_big
    dest = tmp_path / "dest"
    dest.mkdir()
    rc, out, typed = run_pty(["--url", url, "get", "big.bin", str(dest / "big.bin")], {}, interrupt_when=mid_transfer)
    assert typed and rc == 130, out[-1000:]
    assert os.listdir(dest) == []
    rc, out, typed = run_pty(["cp", "-r", url, str(dest)], {}, interrupt_when=mid_transfer)
    assert typed and rc == 130, out[-1000:]
    complete = {"big.bin": BIG, "up.bin": BIG, "small": 100_000}  # what the store may hold by now
    for p in dest.rglob("*"):
        assert p.stat().st_size == complete[p.name], p  # whole files only, no .part
    assert len(list(dest.rglob("*"))) < len(complete)


def test_ctrl_c_during_cp_to_posixfs_sftp_and_rclone_leaves_nothing(
    sshd: Any, big_file: Path, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.link(big_file, src / "big.bin")
    store = tmp_path / "store"
    assert run("--url", f"file://{store}", "create").returncode == 0
    rc, out, typed = run_pty(["cp", "-r", str(src), f"file://{store}"], {}, interrupt_when=mid_transfer)
    assert typed and rc == 130, out[-1000:]
    assert [p.name for p in store.rglob("*") if ".hid" not in str(p)] == []  # posixfs's own bookkeeping aside
    url = sshd.url()
    opts = sftp_args(sshd)
    assert run(*opts, "--url", url, "create").returncode == 0
    rc, out, typed = run_pty([*opts, "cp", str(big_file), url + "/"], {}, interrupt_when=mid_transfer)
    assert typed and rc == 130, out[-1000:]
    assert [p.name for p in Path(sshd.abs_path(url.rsplit("/", 1)[-1])).rglob("*")] == []
    rdir = tmp_path / "rclone"
    rdir.mkdir()
    assert run("--url", f"rclone:{rdir}", "create").returncode == 0
    argv = ["--url", f"rclone:{rdir}", "put", "big.bin", str(big_file)]
    rc, out, typed = run_pty(argv, {}, interrupt_when=mid_transfer)
    assert typed and rc == 130, out[-1000:]
    assert [p.name for p in rdir.rglob("*")] == []
