"""Differential test: the same operation sequences on borgstore 0.7's Store and on unistore's Store
(both on posixfs) give the same results and raise exceptions of the same names."""

from __future__ import annotations

import hashlib
import tempfile
from typing import Any

import borgstore.store
from hypothesis import given, settings
from hypothesis import strategies as st

import unistore

CONFIG = {"": {"levels": [0]}, "data/": {"levels": [1]}, "multi/": {"levels": [0, 1]}}
KEYS = [f"data/{hashlib.sha256(bytes([i])).hexdigest()[:16]}" for i in range(4)] + [
    f"multi/{hashlib.sha256(bytes([i])).hexdigest()[:8]}" for i in range(2)
] + ["config"]

ops = st.one_of(
    st.tuples(st.just("store"), st.sampled_from(KEYS), st.binary(max_size=40)),
    st.tuples(st.just("load"), st.sampled_from(KEYS), st.integers(-50, 50), st.one_of(st.none(), st.integers(0, 30))),
    st.tuples(st.just("info"), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("soft_delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("undelete"), st.sampled_from(KEYS)),
    st.tuples(st.just("change_level"), st.sampled_from(KEYS)),
    st.tuples(st.just("list"), st.sampled_from(["data", "multi"]), st.booleans()),
    st.tuples(st.just("find"), st.sampled_from(KEYS), st.booleans()),
)


def apply(store: Any, op: tuple[Any, ...]) -> Any:
    kind, name, *rest = op
    try:
        if kind == "store":
            store.store(name, rest[0])
            return None
        if kind == "load":
            offset, size = rest
            return store.load(name, offset=offset, size=size)
        if kind == "info":
            i = store.info(name, deleted=rest[0])
            return (i.name, i.exists, i.size, i.directory)
        if kind == "delete":
            store.delete(name, deleted=rest[0])
            return None
        if kind == "soft_delete":
            store.move(name, delete=True)
            return None
        if kind == "undelete":
            store.move(name, undelete=True)
            return None
        if kind == "change_level":
            store.move(name, change_level=True)
            return None
        if kind == "list":
            return sorted((i.name, i.size) for i in store.list(name, deleted=rest[0]))
        if kind == "find":
            return store.find(name, deleted=rest[0])
    except Exception as e:  # noqa: BLE001 - the exception's name is the result
        return ("raised", type(e).__name__)
    raise AssertionError(kind)


@settings(max_examples=200, deadline=None)
@given(st.lists(ops, min_size=1, max_size=25))
def test_same_results_as_borgstore(sequence: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        b = borgstore.store.Store(f"file://{tmp}/b", config=CONFIG)
        u = unistore.Store(f"file://{tmp}/u", config=CONFIG)
        b.create()
        u.create()
        with b, u:
            # borgstore's failed move leaves the target's directories behind (unistore's does not):
            # create the namespaces up front, so a listing does not tell the two apart by that
            for store in (b, u):
                store.backend.mkdir("data")
                store.backend.mkdir("multi")
            for op in sequence:
                # a partial load whose negative offset reaches before the start is an error in both,
                # but borgstore lets the OS decide (EINVAL); compare only that both fail
                rb, ru = apply(b, op), apply(u, op)
                if op[0] == "load" and isinstance(rb, tuple) and isinstance(ru, tuple):
                    continue
                assert rb == ru, (op, rb, ru)
