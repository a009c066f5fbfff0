"""posixfs specifics: root containment, links, permissions, quota, durability options, URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unistore import open_backend
from unistore.backends.posixfs import QUOTA_FILE, PosixFS
from unistore.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    BackendMustNotBeOpen,
    ConfigError,
    DirectoryNotEmpty,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def opened(root: Path, **kw: object) -> PosixFS:
    be = PosixFS(root, **kw)  # type: ignore[arg-type]
    if not root.exists():
        be.create()
    be.open()
    return be


def test_url_and_relative_path(root: Path) -> None:
    be = open_backend(f"file://{root}")
    assert isinstance(be, PosixFS) and be.base_path == root  # a pathlib.Path, as in borgstore
    with pytest.raises(ConfigError):
        open_backend("file://relative/path")
    with pytest.raises(ConfigError):
        PosixFS("relative")


def test_url_is_unquoted(tmp_path: Path) -> None:
    be = open_backend(f"file://{tmp_path}/with%20space")
    assert isinstance(be, PosixFS) and be.base_path.name == "with space"


def test_lifecycle_errors(root: Path) -> None:
    be = PosixFS(root)
    with pytest.raises(BackendDoesNotExist):
        be.open()
    with pytest.raises(BackendDoesNotExist):
        be.destroy()
    be.create()
    be.open()
    with pytest.raises(BackendMustNotBeOpen):
        be.create()
    be.store("x", b"1")
    be.close()
    with pytest.raises(BackendAlreadyExists):
        be.create()
    be.destroy()
    assert not root.exists()


def test_writes_leave_no_temp_files_and_list_hides_them(root: Path) -> None:
    be = opened(root)
    for i in range(20):
        be.store(f"d/{i}", b"v" * i)
    assert sorted(os.listdir(root / "d")) == sorted(str(i) for i in range(20))
    (root / "d" / "stale.abc.tmp").write_bytes(b"partial upload")
    (root / "d" / "secret.hid").write_bytes(b"x")
    assert len(list(be.list("d"))) == 20


def test_symlink_to_outside_is_never_followed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"TOP SECRET")
    be = opened(root)
    os.symlink(outside / "secret", root / "link")
    os.symlink(outside, root / "dirlink")
    assert be.info("link").exists is False
    with pytest.raises(PermissionDenied):
        be.load("link")
    with pytest.raises(PermissionDenied):
        be.load("dirlink/secret")
    with pytest.raises(PermissionDenied):
        be.store("dirlink/new", b"escape")
    with pytest.raises(PermissionDenied):
        list(be.list("dirlink"))
    assert "link" not in [i.name for i in be.list("")]
    assert [i.name for i in be.list_recursive("")] == []
    assert sorted(os.listdir(outside)) == ["secret"]
    # storing over the link replaces the link, not its target
    be.store("link", b"mine")
    assert (outside / "secret").read_bytes() == b"TOP SECRET"
    assert be.load("link") == b"mine"


def test_nested_link_inside_path_is_refused(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "sub").mkdir(parents=True)
    be = opened(root)
    be.mkdir("ns")
    os.symlink(outside, root / "ns" / "ab")
    with pytest.raises(PermissionDenied):
        be.store("ns/ab/sub/x", b"1")
    be.store("ns/y", b"y")
    with pytest.raises(PermissionDenied):
        be.move("ns/y", "ns/ab/y")
    assert be.load("ns/y") == b"y"
    assert list(outside.rglob("*")) == [outside / "sub"]


def test_permissions_borgstore_semantics(root: Path) -> None:
    PosixFS(root).create()
    full = opened(root)
    full.store("data/existing", b"1")
    full.store("config/c", b"c")
    full.close()
    be = opened(root, permissions={"": "lr", "data": "lrw", "config": ""})
    assert be.load("data/existing") == b"1"
    be.store("data/new", b"2")  # w: new object allowed
    with pytest.raises(PermissionDenied):
        be.store("data/existing", b"overwrite")  # needs W
    with pytest.raises(PermissionDenied):
        be.delete("data/existing")  # needs D
    with pytest.raises(PermissionDenied):
        be.load("config/c")  # most specific entry denies even though "" grants r
    with pytest.raises(PermissionDenied):
        be.store("toplevel", b"x")  # "" grants only lr
    with pytest.raises(PermissionDenied):
        be.move("data/existing", "data/moved")  # needs D on the source
    assert [i.name for i in be.list("data")] == ["existing", "new"]


def test_permissions_unmatched_path_denied(root: Path) -> None:
    PosixFS(root).create()
    be = opened(root, permissions={"only": "lrwWD"})
    be.store("only/x", b"1")
    with pytest.raises(PermissionDenied):
        be.store("other/x", b"1")
    with pytest.raises(PermissionDenied):
        list(be.list(""))


def test_permissions_validated() -> None:
    with pytest.raises(ConfigError):
        PosixFS("/tmp/x", permissions={"a": "rx"})


def test_quota(root: Path) -> None:
    PosixFS(root).create()
    be = opened(root, quota=1000)
    assert be.quota() == {"limit": 1000, "usage": 0}
    be.store("a", b"x" * 600)
    with pytest.raises(QuotaExceeded):
        be.store("b", b"x" * 500)
    assert not be.info("b").exists
    be.store("a", b"x" * 900)  # overwrite counts the difference
    assert be.quota()["usage"] == 900
    be.delete("a")
    assert be.quota()["usage"] == 0
    be.store("c", b"y" * 100)
    be.close()
    assert int((root / QUOTA_FILE).read_text()) == 100  # borgstore reads it with int()
    again = opened(root, quota=1000)
    assert again.quota()["usage"] == 100
    assert QUOTA_FILE not in [i.name for i in again.list("")]


def test_quota_rescans_when_file_is_missing(root: Path) -> None:
    be = opened(root)
    be.store("a", b"1" * 50)
    be.store("d/b", b"2" * 70)
    be.close()
    q = opened(root, quota=10_000)
    assert q.quota()["usage"] == 120


def test_quota_store_file(root: Path) -> None:
    import io

    PosixFS(root).create()
    be = opened(root, quota=100)
    with pytest.raises(QuotaExceeded):
        be.store_file("big", io.BytesIO(b"z" * 200))
    assert not be.info("big").exists
    assert [n for n in os.listdir(root) if n.endswith(".tmp")] == []


def test_fsync_mode_works(root: Path) -> None:
    be = opened(root, do_fsync=True)
    be.store("a/b", b"durable")
    assert be.load("a/b") == b"durable"


def test_load_of_directory_is_not_found(root: Path) -> None:
    be = opened(root)
    be.mkdir("dir")
    with pytest.raises(ObjectNotFound):
        be.load("dir")
    with pytest.raises(ObjectNotFound):
        be.delete("dir")


def test_rmdir_non_empty_keeps_data(root: Path) -> None:
    be = opened(root)
    be.store("d/x", b"1")
    with pytest.raises(DirectoryNotEmpty):
        be.rmdir("d")
    assert be.load("d/x") == b"1"
