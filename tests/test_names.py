"""Property tests: no name escapes the root; invalid names raise InvalidName naming the input."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unistore.backends.posixfs import PosixFS
from unistore.errors import InvalidName, ObjectNotFound
from unistore.names import check_key, check_name, nest, unnest

segments = st.sampled_from(["..", ".", "", "a", "b", "x.tmp", "\\", "\x00", "/", "ab", "c d"])
any_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
path_like = st.lists(segments, min_size=1, max_size=6).map("/".join)


@given(st.one_of(any_text, path_like))
def test_valid_names_stay_below_root(name: str) -> None:
    root = "/srv/store"
    try:
        check_name(name)
    except InvalidName as e:
        assert repr(name) in str(e) or name == ""
        assert isinstance(e, ValueError)
        return
    joined = os.path.normpath(os.path.join(root, name))
    assert joined.startswith(root + "/")
    assert not name.startswith("/") and ".." not in name.split("/")


@given(st.one_of(any_text, path_like))
def test_keys_are_a_subset_of_names(name: str) -> None:
    try:
        check_key(name)
    except InvalidName as e:
        assert isinstance(e, ValueError)
        return
    check_name(name)
    assert name == name.lower() and name.isascii() and " " not in name and len(name) <= 100


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(any_text, path_like))
def test_posixfs_never_writes_outside(name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        be = PosixFS(root)
        be.create()
        with be:
            try:
                be.store(name, b"x")
            except InvalidName:
                pass
            except (ObjectNotFound, OSError):
                pass  # e.g. a component collides with an item, or a name too long for the filesystem
        outside = [e for e in os.listdir(tmp) if e != "root"]
        assert outside == []


@given(st.text(alphabet="0123456789abcdef", min_size=6, max_size=64), st.integers(0, 3))
def test_nest_unnest_roundtrip(key: str, levels: int) -> None:
    nested = nest(f"data/{key}", levels)
    assert nested.endswith("/" + key)
    assert nested.count("/") == levels + 1
    assert unnest(nested, "data") == f"data/{key}"
    assert unnest(nested + ".del", "data/", suffix=".del") == f"data/{key}"


def test_nest_rejects_short_keys() -> None:
    with pytest.raises(InvalidName):
        nest("data/ab", 2)


def test_error_names_the_input() -> None:
    with pytest.raises(InvalidName, match=r"'\.\./etc/passwd'"):
        check_name("../etc/passwd")
    with pytest.raises(InvalidName, match="Upper"):
        check_key("Upper")
