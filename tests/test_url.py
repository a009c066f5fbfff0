"""URL -> backend: built-in schemes, entry-point registration by a third-party package, redaction."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from unistore import open_backend
from unistore.backends.memory import MemoryBackend
from unistore.errors import BackendURLInvalid, NoBackendGiven
from unistore.url import redact, schemes


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
