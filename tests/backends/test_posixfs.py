"""posixfs specifics: root containment, links, permissions, quota, durability options, URLs, errors."""

from __future__ import annotations

import os
import shutil
import threading
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
    InvalidName,
    NameConflict,
    ObjectNotFound,
    PermissionDenied,
    QuotaExceeded,
)

from .seccomp import run_filtered


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def opened(root: Path, **kw: object) -> PosixFS:
    be = PosixFS(root, **kw)  # type: ignore[arg-type]
    if not root.exists():
        be.create()
    be.open()
    return be


@pytest.fixture(params=[True, False], ids=["openat2", "walk"])
def use_openat2(request: pytest.FixtureRequest) -> bool:
    """Both ways of resolving names: openat2 (where Linux offers it) and the segment-by-segment walk."""
    return request.param  # type: ignore[no-any-return]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


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


def test_symlink_to_outside_is_never_followed(root: Path, tmp_path: Path, use_openat2: bool) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"TOP SECRET")
    be = opened(root, openat2=use_openat2)
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


def test_nested_link_inside_path_is_refused(root: Path, tmp_path: Path, use_openat2: bool) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "sub").mkdir(parents=True)
    be = opened(root, openat2=use_openat2)
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


def test_fsync_is_made_on_the_file_before_the_rename_and_on_the_directory_after(root: Path) -> None:
    """Observed in the kernel, not in Python: a seccomp filter in a child process makes fsync of one
    chosen descriptor fail with EIO. The child predicts the descriptors a store opens (the lowest
    free numbers: first the directory, then the temp file). A failing file fsync must keep the old
    value (so it ran before the rename) and leave no temp file; a failing directory fsync must come
    after the new value is in place; without do_fsync no fsync reaches the kernel at all."""
    PosixFS(root).create()
    script = f"""
import os
from unistore.backends.posixfs import PosixFS
from unistore.errors import BackendError
be = PosixFS({str(root)!r}, do_fsync=DO_FSYNC)
be.open()
be.store("d/k", b"old")
free = os.open("/dev/null", os.O_RDONLY)
os.close(free)
install(FSYNC_RULES(free))
try:
    be.store("d/k", b"new")
    outcome = "stored"
except BackendError as e:
    outcome = type(e).__name__ + ": " + str(e)
temps = [n for n in os.listdir({str(root / "d")!r}) if n.endswith(".tmp")]
report(outcome=outcome, value=be.load("d/k").decode(), temps=temps)
"""
    def run(do_fsync: bool, rules: str) -> dict[str, object]:
        code = script.replace("DO_FSYNC", str(do_fsync)).replace("FSYNC_RULES", f"({rules})")
        return run_filtered(code)

    file_fails = run(True, "lambda fd: [('fsync', 0, 'eq', fd + 1, 'EIO'), ('fdatasync', 0, 'eq', fd + 1, 'EIO')]")
    assert str(file_fails["outcome"]).startswith("BackendError") and file_fails["value"] == "old"
    assert file_fails["temps"] == []
    dir_fails = run(True, "lambda fd: [('fsync', 0, 'eq', fd, 'EIO'), ('fdatasync', 0, 'eq', fd, 'EIO')]")
    assert str(dir_fails["outcome"]).startswith("BackendError") and dir_fails["value"] == "new"
    assert dir_fails["temps"] == []
    no_fsync = run(False, "lambda fd: [('fsync', None, None, None, 'EIO'), ('fdatasync', None, None, None, 'EIO')]")
    assert no_fsync == {"outcome": "stored", "value": "new", "temps": []}


@pytest.mark.parametrize(
    "rules,expected",
    [
        ("[('write', 0, 'ge', 3, 'ENOSPC')]", "QuotaExceeded"),
        ("[('write', 0, 'ge', 3, 'EDQUOT')]", "QuotaExceeded"),
        ("[('openat', 2, 'set', os.O_CREAT, 'EACCES'), ('mkdirat', None, None, None, 'EACCES')]", "PermissionDenied"),
        ("[('rename', None, None, None, 'EROFS'), ('renameat', None, None, None, 'EROFS'),"
         " ('renameat2', None, None, None, 'EROFS')]", "PermissionDenied"),
        ("[('write', 0, 'ge', 3, 'EIO')]", "BackendError"),
    ],
    ids=["ENOSPC", "EDQUOT", "EACCES", "EROFS", "EIO"],
)
def test_oserrors_of_writes_become_typed_errors_and_leave_nothing(root: Path, rules: str, expected: str) -> None:
    """Real errnos from the kernel (a seccomp filter in a child process), not raw OSErrors."""
    PosixFS(root).create()
    script = f"""
import os
from unistore.backends.posixfs import PosixFS
be = PosixFS({str(root)!r})
be.open()
be.store("d/k", b"old")
install({rules})
outcome = {{}}
for name in ("d/k", "d/new", "newdir/k"):
    try:
        be.store(name, b"new" * 1000)
        outcome[name] = "stored"
    except Exception as e:
        outcome[name] = type(e).__name__
report(outcome=outcome, value=be.load("d/k").decode()[:3],
       temps=[str(p) for p in __import__("pathlib").Path({str(root)!r}).rglob("*.tmp")])
"""
    result = run_filtered(script)
    assert result["outcome"] == {"d/k": expected, "d/new": expected, "newdir/k": expected}
    assert result["value"] == "old" and result["temps"] == []


def test_oserrors_of_reads_become_typed_errors(root: Path) -> None:
    PosixFS(root).create()
    script = f"""
import io, os
from unistore.backends.posixfs import PosixFS
be = PosixFS({str(root)!r})
be.open()
be.store("d/k", b"value" * 1000)
install([('read', 0, 'ge', 3, 'EIO'), ('pread64', 0, 'ge', 3, 'EIO'), ('readv', 0, 'ge', 3, 'EIO')])
outcome = {{}}
for op, call in [("load", lambda: be.load("d/k")), ("range", lambda: be.load("d/k", offset=3, size=5)),
                 ("load_file", lambda: be.load_file("d/k", io.BytesIO())), ("hash", lambda: be.hash("d/k"))]:
    try:
        call()
        outcome[op] = "read"
    except Exception as e:
        outcome[op] = type(e).__name__
report(outcome=outcome)
"""
    result = run_filtered(script)
    assert result["outcome"] == {"load": "BackendError", "range": "BackendError", "load_file": "BackendError",
                                 "hash": "BackendError"}


def test_long_names_are_invalid_names(root: Path, use_openat2: bool) -> None:
    be = opened(root, openat2=use_openat2)
    with pytest.raises(InvalidName):
        be.store("x" * 300, b"1")  # longer than NAME_MAX
    with pytest.raises(InvalidName):
        be.store("ns/" + "y" * 240, b"1")  # fits NAME_MAX, its temp name does not
    with pytest.raises(InvalidName):
        be.store("/".join(["a"] * 2100), b"1")  # 4,199 bytes: not a RecursionError
    with pytest.raises(InvalidName):
        be.store("/".join(["z" * 200] * 21), b"1")
    deep = "/".join(["d"] * 2000)  # 3,999 bytes, 2,000 levels: fine, and no recursion anywhere
    be.store(deep, b"deep")
    assert be.load(deep) == b"deep"
    assert [i.name for i in be.list_recursive("d/d")] == ["/".join(["d"] * 1998)]
    be.close()
    be.destroy()
    assert not root.exists()


def test_namespace_swapped_for_a_symlink_is_not_followed(root: Path, tmp_path: Path, use_openat2: bool) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    be = opened(root, openat2=use_openat2)
    be.store("ns/a", b"a")  # today's main remembers "ns" as checked from here on
    os.rename(root / "ns", root / "ns.old")
    os.symlink(outside, root / "ns")
    with pytest.raises(PermissionDenied):
        be.store("ns/b", b"escape")
    with pytest.raises(PermissionDenied):
        be.load("ns/a")
    be.store("top", b"t")
    with pytest.raises(PermissionDenied):
        be.move("top", "ns/c")
    assert be.load("top") == b"t"
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (root / "ns.old").iterdir()) == ["a"]


def test_racing_symlink_swaps_never_let_a_write_out(root: Path, tmp_path: Path, use_openat2: bool) -> None:
    """A thread keeps replacing a namespace directory by a link to outside and back while stores run."""
    outside = tmp_path / "outside"
    outside.mkdir()
    be = opened(root, openat2=use_openat2)
    be.store("ns/sub/a", b"a")
    sub, real = root / "ns" / "sub", root / "ns" / "real"
    stop = threading.Event()
    swaps = 0

    def swapper() -> None:
        nonlocal swaps
        while not stop.is_set():
            try:
                os.rename(sub, real)
            except OSError:
                continue
            try:
                os.symlink(outside, sub)
                swaps += 1
                os.unlink(sub)
            except OSError:
                pass
            try:
                os.rename(real, sub)
            except OSError:  # a store re-created "sub" meanwhile
                shutil.rmtree(real)

    t = threading.Thread(target=swapper)
    t.start()
    try:
        for i in range(600):
            try:
                be.store(f"ns/sub/{i}", b"v")
            except (PermissionDenied, ObjectNotFound, NameConflict):
                pass  # the link (or its removal) was seen: refused
    finally:
        stop.set()
        t.join()
    assert swaps > 0
    assert list(outside.iterdir()) == []


def test_base_path_is_a_path(root: Path) -> None:
    be = PosixFS(str(root))
    assert isinstance(be.base_path, Path) and be.base_path == root
    be.create()
    assert be.base_path.is_dir()


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
