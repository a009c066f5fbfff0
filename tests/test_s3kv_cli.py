"""``unistore kv``: get/set/rm/ls on posixfs, tag/find/hold/retain on SeaweedFS, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from unistore.adapters.s3kv import S3KV
from unistore.cli import main


@pytest.fixture(autouse=True)
def _private_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("UNISTORE_URL", raising=False)


def kv(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["kv", "--url", url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(tmp_path: Path) -> str:
    S3KV.from_url(f"file://{tmp_path}/store", create=True).close()
    return f"file://{tmp_path}/store"


def test_set_get_ls_rm(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    assert kv(capsys, url, "set", "cfg", '{"a": [1, 2]}')[0] == 0
    assert kv(capsys, url, "set", "note", "plain words", "--string")[0] == 0
    (tmp_path / "blob.bin").write_bytes(b"\x00\xffraw")
    assert kv(capsys, url, "set", "dir/blob", f"@{tmp_path / 'blob.bin'}", "--bytes")[0] == 0
    code, out, _ = kv(capsys, url, "get", "cfg")
    assert code == 0 and json.loads(out) == {"a": [1, 2]}
    code, out, _ = kv(capsys, url, "--json", "get", "dir/blob")
    assert code == 0 and json.loads(out) == {"key": "dir/blob", "value": {"base64": "AP9yYXc="}}
    code, out, _ = kv(capsys, url, "get", "note")
    assert json.loads(out) == "plain words"
    code, out, _ = kv(capsys, url, "ls")
    assert out.split() == ["cfg", "dir/blob", "note"]
    code, out, _ = kv(capsys, url, "ls", "dir/", "--json")
    assert json.loads(out) == ["dir/blob"]
    with S3KV.from_url(url) as store:  # the CLI wrote what the API reads
        assert store["cfg"] == {"a": [1, 2]} and store["dir/blob"] == b"\x00\xffraw"
    assert kv(capsys, url, "rm", "cfg", "note")[0] == 0
    assert kv(capsys, url, "ls")[1].split() == ["dir/blob"]


def test_encrypt_key_file_option(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "kv.key"
    key.write_text("ab" * 32)
    assert kv(capsys, url, "--encrypt-key-file", str(key), "set", "secret", '{"pw": "hunter2"}')[0] == 0
    stored = (tmp_path / "store" / "s3kv" / "secret.json").read_bytes()
    assert b"hunter2" not in stored  # encrypted at rest
    code, out, _ = kv(capsys, url, "--encrypt-key-file", str(key), "get", "secret")
    assert code == 0 and json.loads(out) == {"pw": "hunter2"}
    assert kv(capsys, url, "get", "secret")[0] != 0  # without the key: no JSON to read


def test_user_errors_exit_2_with_one_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ("set", "k", "not json"),
        ("set", "../escape", "1"),
        ("set", "k", "@/nonexistent/file"),
        ("tag", "k", "novalue"),
        ("retain", "k", "soon"),
    ):
        code, out, err = kv(capsys, url, *argv)
        assert code == 2, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    code, _, err = kv(capsys, url, "get", "missing")
    assert code == 1 and "missing" in err and len(err.strip().splitlines()) == 1
    code, _, err = kv(capsys, url, "tag", "k", "a=b")  # posixfs has no tags
    assert code != 0 and "tags" in err and len(err.strip().splitlines()) == 1


def test_tag_find_hold_retain_on_seaweedfs(seaweedfs: Any, capsys: pytest.CaptureFixture[str]) -> None:
    bucket = seaweedfs.new_bucket(object_lock=True)
    url = seaweedfs.url(bucket)
    with S3KV.from_url(url) as store:
        store.update({"a": 1, "b": 1, "c": 1})
        store.tag_key("c", {"env": "prod"})
    code, out, _ = kv(capsys, url, "tag", "a", "env=prod", "team=ops")
    assert code == 0 and out.split() == ["env=prod", "team=ops"]
    code, out, _ = kv(capsys, url, "--json", "tag", "a", "x=", "--remove", "team")
    assert json.loads(out) == {"key": "a", "tags": {"env": "prod", "x": ""}}
    assert kv(capsys, url, "find", "env=prod")[1].split() == ["a", "c"]
    assert kv(capsys, url, "hold", "b", "on")[0] == 0
    code, _, err = kv(capsys, url, "rm", "b")
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert kv(capsys, url, "hold", "b", "off")[0] == 0
    code, out, _ = kv(capsys, url, "--json", "retain", "c", "2")
    assert code == 0 and json.loads(out)["retain_until"]
    assert kv(capsys, url, "retain", "c", "off")[0] == 0
    assert kv(capsys, url, "rm", "b", "c")[0] == 0
    assert kv(capsys, url, "ls")[1].split() == ["a"]
