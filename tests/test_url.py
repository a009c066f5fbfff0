"""URL -> backend: built-in schemes, entry-point registration by a third-party package, redaction."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from unistore import open_backend
from unistore.backends.memory import MemoryBackend
from unistore.errors import BackendURLInvalid, ConfigError, NoBackendGiven
from unistore.url import redact, schemes, split_query


def test_builtin_schemes_come_from_entry_points() -> None:
    table = schemes()
    for scheme in ("memory", "file", "sftp", "s3", "b2", "rclone"):
        assert scheme in table
    assert isinstance(open_backend("memory://x"), MemoryBackend)


def test_bad_urls() -> None:
    with pytest.raises(NoBackendGiven):
        open_backend("")
    with pytest.raises(BackendURLInvalid, match="no scheme"):
        open_backend("/just/a/path")
    with pytest.raises(BackendURLInvalid, match="unknown backend scheme 'gopher'"):
        open_backend("gopher://host/x")


def test_third_party_scheme_via_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that declares the entry point adds a scheme without touching unistore."""
    pkg = tmp_path / "unistore_demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from unistore.backends.memory import MemoryBackend

            class PluginBackend(MemoryBackend):
                pass

            def from_url(url, **options):
                return PluginBackend(url.partition("://")[2], **options)
            """
        )
    )
    dist = tmp_path / "unistore_demo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: unistore-demo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[unistore.backends]\nplugin = unistore_demo_plugin:from_url\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    schemes.cache_clear()
    try:
        be = open_backend("plugin://space")
        assert type(be).__name__ == "PluginBackend" and be.space_name == "space"  # type: ignore[attr-defined]
        be.create()
        with be:
            be.store("k", b"v")
            assert be.load("k") == b"v"
    finally:
        schemes.cache_clear()
        sys.modules.pop("unistore_demo_plugin", None)


@pytest.mark.parametrize(
    "url,expected",
    [
        ("s3:AKIA:SECRET@http://host:9000/b/p", "s3:AKIA:***@http://host:9000/b/p"),
        ("sftp://user:pw@host/x", "sftp://user:***@host/x"),
        ("sftp://user@host/x", "sftp://user@host/x"),
        ("file:///srv/x", "file:///srv/x"),
        ("s3:AK:se/cr@et@http://h/b", "s3:AK:***@http://h/b"),
        ("b2:profile@https://s3.example.com/bucket", "b2:profile@https://s3.example.com/bucket"),
    ],
)
def test_redact(url: str, expected: str) -> None:
    assert redact(url) == expected


# ----------------------------------------------------------------- query strings: options, never a path
def test_query_string_gives_typed_options(tmp_path: Path) -> None:
    from unistore.backends.posixfs import PosixFS

    be = open_backend(f"file://{tmp_path}/q?do_fsync=1&quota=100")
    assert isinstance(be, PosixFS)
    assert str(be.base_path) == f"{tmp_path}/q" and be.do_fsync is True and be.quota_limit == 100
    be = open_backend(f"file://{tmp_path}/q?do_fsync=off&quota=none")
    assert be.do_fsync is False and be.quota_limit is None
    be = open_backend(f"file://{tmp_path}/q?permissions=%7B%22%22%3A%20%22lr%22%7D")  # JSON, URL-quoted
    assert be.permissions == {"": "lr"}
    assert str(open_backend(f"file://{tmp_path}/a%3Fb").base_path) == f"{tmp_path}/a?b"  # a literal ? in a path


def test_query_string_keeps_a_question_mark_in_a_secret() -> None:
    be = open_backend("s3:AKID:se?cret@http://127.0.0.1:9/bucket/prefix?region=eu-1")
    assert be.bucket == "bucket" and be.prefix.strip("/") == "prefix"  # type: ignore[attr-defined]
    assert be.region == "eu-1"  # type: ignore[attr-defined]
    assert split_query("s3:AKID:se?cr@et@http://h/b") == ("s3:AKID:se?cr@et@http://h/b", {})


@pytest.mark.parametrize(
    "url,error,words",
    [
        ("file:///tmp/q?bogus=1", ConfigError, ["bogus", "do_fsync"]),
        ("file:///tmp/q?do_fsync=maybe", ConfigError, ["boolean"]),
        ("file:///tmp/q?quota=lots", ConfigError, ["integer"]),
        ("file:///tmp/q?", BackendURLInvalid, ["%3F"]),
        ("file:///tmp/q?novalue", BackendURLInvalid, ["name=value"]),
        ("file:///tmp/q?quota=1&quota=2", ConfigError, ["twice"]),
        ("memory://x?a=1", ConfigError, ["accepted: none"]),
    ],
)
def test_bad_query_strings(url: str, error: type[Exception], words: list[str]) -> None:
    with pytest.raises(error) as info:
        open_backend(url)
    for w in words:
        assert w in str(info.value)


def test_query_and_keyword_options_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="another value"):
        open_backend(f"file://{tmp_path}/q?quota=10", quota=20)
    assert open_backend(f"file://{tmp_path}/q?quota=10", quota="10").quota_limit == 10  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="unknown option"):
        open_backend(f"file://{tmp_path}/q", nosuch=1)
