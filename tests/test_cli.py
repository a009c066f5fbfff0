"""The unistore command on local stores, run as a real subprocess: every command and error case.

Transfers against SeaweedFS, moto and OpenSSH, progress bars and Ctrl-C live in test_cli_transfer.py.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from unistore.cli import main


def run(
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    user: str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``unistore ARGS`` in a subprocess (as ``user`` through setpriv when given)."""
    argv = [sys.executable, "-m", "unistore.cli", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(
        argv, input=stdin, capture_output=True, env={**os.environ, **(env or {})}, timeout=timeout, cwd=cwd
    )


def one_line_error(r: subprocess.CompletedProcess[bytes], code: int, *words: str) -> str:
    err = r.stderr.decode()
    assert r.returncode == code, (r.returncode, err, r.stdout)
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for w in words:
        assert w in err, err
    return err


@pytest.fixture(autouse=True)
def _private_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has its own ~/.config/unistore (the subprocesses inherit the environment)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("UNISTORE_URL", raising=False)
    monkeypatch.delenv("UNISTORE_CONFIG", raising=False)
    monkeypatch.delenv("UNISTORE_CREDENTIALS", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> dict[str, str]:
    url = f"file://{tmp_path}/s"
    assert run("--url", url, "create").returncode == 0
    return {"UNISTORE_URL": url}


# ----------------------------------------------------------------- demo (issue 8: no data loss)
def test_demo_runs_in_a_fresh_folder(tmp_path: Path) -> None:
    r = run("demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "soft-deleted one: 2 live" in out and "undeleted it: 3 live again" in out
    assert "bytes 5..15 = b'alphaalpha'" in out
    assert (tmp_path / "unistore-demo" / "config").read_bytes() == b"demo configuration"
    report = json.loads(run("demo", "--json", "--dir", str(tmp_path / "d2")).stdout)
    assert len(report["items"]) == 3 and report["stats"]["store_calls"] == 4


def test_demo_refuses_a_folder_with_data_and_leaves_it_alone(tmp_path: Path) -> None:
    thesis = tmp_path / "h" / "p" / "thesis.txt"
    thesis.parent.mkdir(parents=True)
    thesis.write_text("t\n")
    one_line_error(run("demo", "--dir", str(tmp_path / "h")), 2, "not empty")
    assert thesis.read_text() == "t\n"
    # the same for a store given by URL: the check looks at that store, not at ./unistore-demo
    other = tmp_path / "other"
    assert run("--url", f"file://{other}", "create").returncode == 0
    assert run("--url", f"file://{other}", "put", "keep", "-", stdin=b"precious").returncode == 0
    one_line_error(run("demo", "--url", f"file://{other}", cwd=tmp_path), 2, "not empty")
    assert (other / "keep").read_bytes() == b"precious"
    assert not (tmp_path / "unistore-demo").exists()


# ----------------------------------------------------------------- item commands
def test_put_get_ls_info_mv_rm_undelete_stats(tmp_path: Path, store: dict[str, str]) -> None:
    env = store
    src = tmp_path / "src.bin"
    payload = os.urandom(6 * 1024 * 1024)
    src.write_bytes(payload)
    r = run("put", "docs/big.bin", str(src), "--json", env=env)  # a pipe: no progress bar
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["size"] == len(payload)
    assert r.stderr == b""  # no progress bar on a pipe
    assert run("put", "docs/small", "-", stdin=b"from stdin", env=env).returncode == 0
    out = tmp_path / "out.bin"
    assert run("get", "docs/big.bin", str(out), env=env).returncode == 0
    assert out.read_bytes() == payload
    assert not list(tmp_path.glob(".out.bin*"))
    assert run("get", "docs/small", env=env).stdout == b"from stdin"
    assert run("get", "docs/small", "--offset", "-5", env=env).stdout == b"stdin"
    assert run("get", "docs/small", "--offset", "2", "--size", "3", env=env).stdout == b"om "
    listing = json.loads(run("ls", "docs", "--json", env=env).stdout)
    assert [(e["name"], e["size"]) for e in listing] == [("big.bin", len(payload)), ("small", 10)]
    assert run("ls", "docs", env=env).stdout.decode().split() == ["big.bin", "small"]
    long = run("ls", "-l", "-h", "docs", env=env).stdout.decode()
    assert "6.0 MiB" in long and "big.bin" in long and "20" in long  # human size and a date
    assert run("ls", "-r", env=env).stdout.decode().split() == ["docs/big.bin", "docs/small"]
    info = json.loads(run("info", "docs/small", "--hash", "--json", env=env).stdout)
    assert info["size"] == 10 and len(info["sha256"]) == 64 and info["mtime"] > 0
    assert run("mv", "docs/small", "docs/renamed", env=env).returncode == 0
    assert run("rm", "--soft", "docs/renamed", env=env).returncode == 0
    deleted = json.loads(run("ls", "docs", "--deleted", "--json", env=env).stdout)
    assert [e["name"] for e in deleted] == ["renamed"]
    assert run("ls", "docs", env=env).stdout.decode().split() == ["big.bin"]
    assert run("undelete", "docs/renamed", env=env).returncode == 0
    assert run("get", "docs/renamed", env=env).stdout == b"from stdin"
    stats = json.loads(run("stats", "--json", env=env).stdout)
    assert stats["total"]["items"] == 2 and stats["total"]["bytes"] == len(payload) + 10
    assert run("rm", "docs/renamed", "docs/big.bin", env=env).returncode == 0
    assert json.loads(run("ls", "docs", "--json", env=env).stdout) == []
    one_line_error(run("destroy", env=env), 2, "--yes")
    assert run("destroy", "--yes", env=env).returncode == 0
    assert not (tmp_path / "s").exists()


def test_du_and_rm_recursive_with_dry_run(store: dict[str, str]) -> None:
    env = store
    for name, size in (("a/x", 100), ("a/b/y", 200), ("c/z", 50), ("top", 1)):
        assert run("put", name, "-", stdin=b"." * size, env=env).returncode == 0
    du = json.loads(run("du", "--json", env=env).stdout)
    assert du["total"] == {"items": 4, "bytes": 351, "deleted_items": 0, "deleted_bytes": 0}
    assert du["entries"]["a/"]["bytes"] == 300 and du["entries"]["."]["items"] == 1
    text = run("du", "-h", "-s", "a", env=env).stdout.decode()
    assert "300 B" in text and "2 items" in text
    one_line_error(run("rm", "a", env=env), 2, "is a directory", "rm -r")
    dry = run("rm", "-r", "--dry-run", "a", env=env).stdout.decode()
    assert "would remove a/b/y" in dry and "would remove a/x" in dry
    assert json.loads(run("du", "--json", "a", env=env).stdout)["total"]["items"] == 2
    assert run("rm", "-r", "a", env=env).returncode == 0
    one_line_error(run("ls", "a", env=env), 1, "not found")
    assert run("ls", env=env).stdout.decode().split() == ["c/", "top"]


def test_mv_no_clobber_and_replacing(store: dict[str, str]) -> None:
    env = store
    run("put", "a", "-", stdin=b"A", env=env)
    run("put", "b", "-", stdin=b"B", env=env)
    r = run("mv", "--no-clobber", "a", "b", env=env)
    assert r.returncode == 1 and b"exists" in r.stdout
    assert run("get", "a", env=env).stdout == b"A" and run("get", "b", env=env).stdout == b"B"
    r = run("mv", "a", "b", env=env)
    assert r.returncode == 0 and b"replaced" in r.stdout
    assert run("get", "b", env=env).stdout == b"A"
    one_line_error(run("mv", "a", "c", env=env), 1, "not found")


def test_info_of_a_missing_item_is_not_found(store: dict[str, str]) -> None:
    err = one_line_error(run("info", "nope", env=store), 1, "not found: nope")
    assert "size" not in err
    r = run("info", "nope", "--json", env=store)
    assert json.loads(r.stdout)["error"] == {"type": "ObjectNotFound", "message": "not found: nope", "exit_code": 1}


# ----------------------------------------------------------------- user errors: one line, exit 2
@pytest.fixture(scope="module")
def error_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("errors") / "s"
    url = f"file://{root}"
    assert run("--url", url, "create").returncode == 0
    run("--url", url, "put", "k", "-", stdin=b"0123456789")
    run("--url", url, "put", "d/inside", "-", stdin=b"x")
    return {"UNISTORE_URL": url}


@pytest.mark.parametrize(
    "argv,words",
    [
        (["ls"], ["no backend URL"]),
        (["--url", "nosuch:x", "ls"], ["neither a named remote"]),
        (["--url", "file://relative", "ls"], ["absolute path"]),
        (["get", "../etc/passwd"], ["'../etc/passwd'"]),
        (["put", "x", "/nonexistent/file"], ["/nonexistent/file"]),
        (["put", "x", "/tmp"], ["/tmp", "is a directory"]),
        (["put", "x.tmp", "-"], ["x.tmp", "hidden"]),
        (["put", "dir.hid/y", "-"], ["dir.hid/y", "hidden"]),
        (["put", "z.del", "-"], ["z.del", "soft-deleted"]),
        (["rm", "--soft", "x.del"], ["x.del", "soft-deleted"]),
        (["mv", "k", "k.tmp"], ["k.tmp"]),
        (["get", "k", "--offset", "-100"], ["--offset -100", "before the start"]),
        (["get", "k", "--offset", "100"], ["beyond the end"]),
        (["get", "k", "--size", "-1"], ["--size must be >= 0"]),
        (["ls", "k"], ["is an item, not a directory"]),
        (["rm", "d"], ["is a directory", "rm -r"]),
        (["presign", "k"], ["does not support", "presign"]),
        (["tag", "get", "k"], ["does not support", "tags"]),
        (["multipart", "cleanup", "--older-than", "1h"], ["does not support", "multipart"]),
        (["-o", "nosuch=1", "ls"], ["unknown option", "nosuch", "do_fsync"]),
        (["-o", "do_fsync=maybe", "ls"], ["do_fsync", "boolean"]),
        (["-o", "novalue", "ls"], ["key=value"]),
        (["cp", "nosuchremote:x", "/tmp/y"], ["nosuchremote", "named remote"]),
        (["cp", "onlyone"], ["required", "dst"]),
        (["multipart", "cleanup", "--older-than", "soon"], ["not a duration"]),
        (["tag", "set", "k", "novalue"], ["key=value"]),
        (["--url", "s3:k:s@http://127.0.0.1:9/Bad_Bucket", "create"], ["invalid bucket name"]),
    ],
)
def test_user_errors_are_one_line_and_exit_2(
    argv: list[str], words: list[str], error_store: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    env = dict(error_store)
    if argv[0] == "ls" and len(argv) == 1:
        env["UNISTORE_URL"] = ""
    r = run(*argv, stdin=b"data", env=env)
    one_line_error(r, 2, *words)
    root = error_store["UNISTORE_URL"][len("file://") :]
    # (posixfs keeps its own bookkeeping in .hid names, which the store never shows)
    found = sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if ".hid" not in str(p.relative_to(root)))
    assert found == ["d", "d/inside", "k"]
    # the same case with --json, in-process: a JSON error object on stdout
    os.environ["UNISTORE_URL"] = env["UNISTORE_URL"]
    try:
        assert main(["--json", *argv]) == 2
    finally:
        del os.environ["UNISTORE_URL"]
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out)["error"]["exit_code"] == 2


def test_query_string_is_an_option_never_part_of_a_path(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/q?do_fsync=1&quota=100"
    assert run("--url", url, "create").returncode == 0
    assert (tmp_path / "q").is_dir() and not list(tmp_path.glob("q?*"))
    assert run("--url", url, "put", "a", "-", stdin=b"x" * 60).returncode == 0
    one_line_error(run("--url", url, "put", "b", "-", stdin=b"x" * 60), 1, "QuotaExceeded")
    one_line_error(run("--url", f"file://{tmp_path}/q?bogus=1", "ls"), 2, "unknown option", "bogus")
    one_line_error(run("--url", f"file://{tmp_path}/q?", "ls"), 2, "%3F")
    one_line_error(run("--url", f"file://{tmp_path}/q?quota=10", "-o", "quota=20", "ls"), 2, "another value")
    assert not list(tmp_path.glob("q?*"))


def test_read_only_store_refuses_put(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/ro"
    assert run("--url", url, "create").returncode == 0
    ro = ["--url", url, "-o", 'permissions={"": "lr"}']
    one_line_error(run(*ro, "put", "x", "-", stdin=b"data"), 2, "permission")
    assert run(*ro, "ls").stdout == b""


def test_unreadable_source_and_unwritable_target_as_an_unprivileged_user() -> None:
    # root ignores file modes: as root the CLI runs as nobody (setpriv), as anyone else as itself
    with tempfile.TemporaryDirectory(prefix="unistore-cli-") as d:
        _unprivileged(Path(d), "65534" if os.geteuid() == 0 else None)


def _unprivileged(tmp_path: Path, nobody: str | None) -> None:
    tmp_path.chmod(0o777)
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    url = f"file://{tmp_path}/s"
    assert run("--url", url, "create").returncode == 0
    os.chmod(tmp_path / "s", 0o777)
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    secret.chmod(0o600)
    one_line_error(run("--url", url, "put", "x", str(secret), user=nobody), 2, "secret.txt", "Permission denied")
    assert run("--url", url, "put", "x", "-", stdin=b"data", user=nobody).returncode == 0
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    one_line_error(run("--url", url, "get", "x", str(locked / "out"), user=nobody), 2, "Permission denied")
    assert os.listdir(locked) == []


# ----------------------------------------------------------------- logging, memory, plugins
def test_verbose_shows_operations_and_log_file_without_secrets(tmp_path: Path, store: dict[str, str]) -> None:
    log = tmp_path / "log.txt"
    r = run("-v", "--log-file", str(log), "put", "a", "-", stdin=b"x" * 1234, env=store)
    assert r.returncode == 0
    assert b"transfer" in r.stderr and b"1234 bytes in" in r.stderr
    assert "1234 bytes in" in log.read_text()
    quiet = run("put", "b", "-", stdin=b"x", env=store)
    assert quiet.stderr == b""
    r = run("-vv", "--url", "s3:AKIDUSER:TOPSECRET9876@http://127.0.0.1:9/bucket", "ls")
    assert r.returncode == 1 and b"botocore" in r.stderr  # -vv: the engines' own logs too
    assert b"TOPSECRET9876" not in r.stderr + r.stdout


def test_memory_says_it_does_not_persist() -> None:
    r = run("--url", "memory://demo", "put", "a", "-", stdin=b"x")
    assert r.returncode == 0
    assert b"nothing persists" in r.stderr
    r = run("--url", "memory://demo", "ls")
    assert r.returncode == 0 and r.stdout == b"" and b"nothing persists" in r.stderr


def test_secrets_are_redacted_in_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "nosuch:user:TOPSECRET@host/x", "ls"]) == 2
    err = capsys.readouterr().err
    assert "TOPSECRET" not in err


def test_plugin_command_groups_come_from_entry_points() -> None:
    r = run("--help")
    assert r.returncode == 0
    assert b"zodb" in r.stdout and b"reencrypt" in r.stdout
    r = run("zodb", "gc", "--help")
    assert r.returncode == 0 and b"--url" in r.stdout  # global options after a plugin's command too


def test_zodb_gc_config_errors_are_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "z.conf"
    conf.write_text(
        "%import unistore.adapters.zodb\n<zodb>\n  <s3blobstorage>\n    bucket-name $UNSET_VARIABLE_X\n"
        "  </s3blobstorage>\n</zodb>\n"
    )
    one_line_error(run("zodb", "gc", "--config", str(conf)), 2, "UNSET_VARIABLE_X")
    conf.write_text("<zodb>\n  <nosuchsection>\n  </nosuchsection>\n</zodb>\n")
    one_line_error(run("zodb", "gc", "--config", str(conf)), 2, "configuration")


def test_bench(store: dict[str, str]) -> None:
    r = run("--json", "bench", "--count", "20", "--size", "100", env=store)
    data = json.loads(r.stdout)
    assert set(data["ops_per_second"]) == {
        "store", "load", "info", "list", "delete", "store_many", "load_many", "delete_many"
    }
    assert all(v > 0 for v in data["ops_per_second"].values())


# ----------------------------------------------------------------- named remotes
def test_remote_add_ls_rm_keeps_secrets_apart(tmp_path: Path) -> None:
    r = run("remote", "add", "backup", "s3:AKIDEXAMPLE:SUPERSECRET@http://127.0.0.1:9/bucket/pre", "-o", "region=eu-1")
    assert r.returncode == 0, r.stderr
    assert b"SUPERSECRET" not in r.stdout + r.stderr
    cfg = tmp_path / "xdg" / "unistore" / "config.toml"
    creds = cfg.with_name("credentials.toml")
    assert "SUPERSECRET" not in cfg.read_text() and "region" in cfg.read_text()
    assert "SUPERSECRET" in creds.read_text() and stat.S_IMODE(creds.stat().st_mode) == 0o600
    listing = run("remote", "ls", "--json")
    assert b"SUPERSECRET" not in listing.stdout
    (row,) = json.loads(listing.stdout)
    assert row["name"] == "backup" and row["options"]["secret_key"] == "***" and row["options"]["region"] == "eu-1"
    env = {"UNISTORE_REMOTE_BACKUP_SECRET_KEY": "FROMENV"}
    (row,) = json.loads(run("remote", "ls", "--json", env=env).stdout)
    assert row["secrets_from"]["secret_key"] == "$UNISTORE_REMOTE_BACKUP_SECRET_KEY"
    one_line_error(run("remote", "add", "backup", "memory://x"), 2, "exists")
    one_line_error(run("remote", "add", "file", "memory://x"), 2, "scheme")
    one_line_error(run("remote", "add", "bad", "file:///x?nosuch=1"), 2, "nosuch")
    assert run("remote", "rm", "backup").returncode == 0
    assert json.loads(run("remote", "ls", "--json").stdout) == []
    assert "SUPERSECRET" not in creds.read_text()


def test_named_remote_as_url_and_as_location(tmp_path: Path) -> None:
    store_dir = tmp_path / "st"
    assert run("--url", f"file://{store_dir}", "create").returncode == 0
    assert run("remote", "add", "home", f"file://{store_dir}", "-o", "do_fsync=1").returncode == 0
    assert run("--url", "home", "put", "a/b", "-", stdin=b"via remote").returncode == 0
    assert run("--url", "home:a", "ls").stdout.decode().split() == ["b"]
    local = tmp_path / "f.txt"
    local.write_text("local")
    assert run("cp", str(local), "home:docs/").returncode == 0
    assert (store_dir / "docs" / "f.txt").read_text() == "local"
    assert run("cp", "home:a/b", str(tmp_path / "got")).returncode == 0
    assert (tmp_path / "got").read_bytes() == b"via remote"
    one_line_error(run("cp", "home:a/missing", str(tmp_path / "x")), 1, "not found")


# ----------------------------------------------------------------- completion
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    r = run("completion", shell)
    assert r.returncode == 0 and b"unistore" in r.stdout and len(r.stdout) > 200


def test_completion_completes_commands_and_remotes(tmp_path: Path) -> None:
    assert run("remote", "add", "myremote", "memory://x").returncode == 0
    out = tmp_path / "completions"

    def complete(line: str) -> list[str]:
        env = {
            "_ARGCOMPLETE": "1",
            "_ARGCOMPLETE_IFS": "\n",
            "COMP_LINE": line,
            "COMP_POINT": str(len(line)),
            "_ARGCOMPLETE_STDOUT_FILENAME": str(out),
        }
        run(*[], env=env)
        return [word.strip() for word in out.read_text().split("\n")]

    assert {"cp", "check"} <= set(complete("unistore c"))
    assert "myremote:" in complete("unistore cp my")
    assert "--no-clobber" in complete("unistore cp --no-")

