"""The capability half of the backend contract: ``stat``, ``store_with_meta`` and every optional
capability, on every contract backend, bare and stacked (the ``backend`` fixture of test_contract).

A capability a backend claims is exercised for real (a presigned URL is fetched, tags are merged
and searched, a multipart upload is assembled, metadata and checksums come back from ``stat``); a
capability it lacks raises CapabilityNotSupported naming the backend and the capability.
"""

from __future__ import annotations

import hashlib
import io
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from unistore.backends.base import Backend
from unistore.backends.capabilities import (
    CAPABILITIES,
    CHECKSUMS,
    METADATA,
    MULTIPART,
    OBJECT_LOCK,
    PRESIGN,
    SERVER_SIDE_COPY,
    SSE_C,
    STORAGE_CLASS,
    TAGS,
    StoreMeta,
)
from unistore.errors import CapabilityNotSupported, ObjectNotFound
from unistore.layers.base import Layer

from .test_contract import backend, backend_kind, backend_posixfs_walk  # noqa: F401 - the fixtures

DATA = b"capability check " * 64


def innermost(be: Backend) -> Backend:
    while isinstance(be, Layer):
        be = be.unwrap()
    return be


def test_stat(backend: Backend) -> None:  # noqa: F811
    backend.store("st/a", DATA)
    meta = backend.stat("st/a")
    assert meta.size == len(DATA)
    assert meta.name.endswith("a")
    if backend.supports(CHECKSUMS):
        assert meta.checksums.get("md5") == hashlib.md5(DATA).hexdigest()
        assert meta.etag
    with pytest.raises(ObjectNotFound):
        backend.stat("st/missing")
    with pytest.raises(ObjectNotFound):
        backend.stat("st")  # a directory


def test_store_with_meta_without_meta_is_a_store(backend: Backend) -> None:  # noqa: F811
    backend.store_with_meta("swm/bytes", DATA)
    backend.store_with_meta("swm/file", io.BytesIO(DATA), StoreMeta())
    backend.store_with_meta("swm/part", io.BytesIO(DATA), None, size=5)
    assert backend.load("swm/bytes") == DATA == backend.load("swm/file")
    assert backend.load("swm/part") == DATA[:5]


def test_store_with_meta(backend: Backend) -> None:  # noqa: F811
    meta = StoreMeta(
        content_type="text/plain", content_disposition='attachment; filename="a.txt"', metadata={"owner": "ann"}
    )
    if not backend.supports(METADATA):
        with pytest.raises(CapabilityNotSupported) as e:
            backend.store_with_meta("swm/m", DATA, meta)
        assert e.value.capability == METADATA
        assert type(innermost(backend)).__name__ in e.value.backend
        assert backend.info("swm/m").exists is False  # nothing stored
        return
    backend.store_with_meta("swm/m", DATA, meta)
    got = backend.stat("swm/m")
    assert (got.content_type, got.content_disposition, dict(got.metadata)) == (
        meta.content_type,
        meta.content_disposition,
        {"owner": "ann"},
    )
    assert backend.load("swm/m") == DATA


def _presign(be: Backend) -> None:
    be.store("cap/p", DATA)
    url = be.presign("cap/p", content_type="application/x-test")
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - a test server on 127.0.0.1
        assert resp.read() == DATA
        assert resp.headers["Content-Type"] == "application/x-test"


def _tags(be: Backend) -> None:
    be.store("cap/t1", DATA)
    be.store("cap/t2", DATA)
    be.put_tags("cap/t1", {"a": "1", "b": "2"})
    assert be.update_tags("cap/t1", {"a": None, "c": "3"}) == {"b": "2", "c": "3"}
    assert be.get_tags("cap/t1") == {"b": "2", "c": "3"}
    be.put_tags("cap/t2", {"c": "4"})
    assert sorted(be.find_by_tag("c", prefix="cap")) == ["cap/t1", "cap/t2"]
    assert list(be.find_by_tag("c", "3", prefix="cap")) == ["cap/t1"]
    be.delete_tags("cap/t1")
    assert be.get_tags("cap/t1") == {}


def _multipart(be: Backend) -> None:
    upload_id = be.create_multipart("cap/mp")
    first, last = b"a" * (5 * 1024 * 1024), b"tail"
    be.upload_part("cap/mp", upload_id, 1, first)
    be.upload_part("cap/mp", upload_id, 2, io.BytesIO(last), size=len(last))
    assert [p["part_number"] for p in be.list_parts("cap/mp", upload_id)] == [1, 2]
    etag = be.complete_multipart("cap/mp", upload_id)
    assert etag and "-" in etag  # a multipart ETag
    assert be.load("cap/mp", offset=-4) == last and be.info("cap/mp").size == len(first) + len(last)
    aborted = be.create_multipart("cap/mp2")
    be.abort_multipart("cap/mp2", aborted)
    assert all(u["upload_id"] != aborted for u in be.list_multipart_uploads("cap"))


def _server_side_copy(be: Backend) -> None:
    be.store("cap/src", DATA)
    be.copy("cap/src", "cap/dst")
    assert be.load("cap/dst") == DATA


def _object_lock(be: Backend) -> None:
    be.store("cap/lock", DATA)
    be.set_legal_hold("cap/lock", True)
    assert be.get_legal_hold("cap/lock") is True
    be.set_legal_hold("cap/lock", False)
    assert be.get_legal_hold("cap/lock") is False


def _storage_class(be: Backend) -> None:
    be.store_with_meta("cap/sc", DATA, StoreMeta(storage_class="STANDARD"))
    assert be.stat("cap/sc").storage_class in (None, "STANDARD")
    assert be.load("cap/sc") == DATA


def _sse_c(be: Backend) -> None:
    be.store("cap/enc", DATA)
    assert be.load("cap/enc") == DATA
    with pytest.raises(CapabilityNotSupported):
        be.presign("cap/enc")  # a presigned URL cannot carry the customer key


def _checksums(be: Backend) -> None:
    be.store("cap/sum", DATA)
    assert be.stat("cap/sum").checksums["md5"] == hashlib.md5(DATA).hexdigest()


EXERCISE: dict[str, Callable[[Backend], None]] = {
    PRESIGN: _presign,
    TAGS: _tags,
    MULTIPART: _multipart,
    SERVER_SIDE_COPY: _server_side_copy,
    OBJECT_LOCK: _object_lock,
    STORAGE_CLASS: _storage_class,
    SSE_C: _sse_c,
    CHECKSUMS: _checksums,
    METADATA: lambda be: test_store_with_meta(be),
}

REFUSE: dict[str, Callable[[Backend], Any]] = {
    PRESIGN: lambda be: be.presign("cap/x"),
    TAGS: lambda be: be.get_tags("cap/x"),
    MULTIPART: lambda be: be.create_multipart("cap/x"),
    OBJECT_LOCK: lambda be: be.get_legal_hold("cap/x"),
    STORAGE_CLASS: lambda be: be.store_with_meta("cap/x", DATA, StoreMeta(storage_class="GLACIER")),
    METADATA: lambda be: be.store_with_meta("cap/x", DATA, StoreMeta(content_type="text/plain")),
}


@pytest.mark.parametrize("capability", sorted(CAPABILITIES))
def test_capability(backend: Backend, capability: str) -> None:  # noqa: F811
    assert backend.capabilities <= CAPABILITIES
    if backend.supports(capability):
        backend.require(capability)
        EXERCISE[capability](backend)
        return
    with pytest.raises(CapabilityNotSupported) as e:
        backend.require(capability)
    assert e.value.capability == capability and e.value.backend == backend.backend_name
    assert type(innermost(backend)).__name__ in str(e.value) and capability in str(e.value)
    if capability in REFUSE:
        with pytest.raises(CapabilityNotSupported) as e:
            REFUSE[capability](backend)
        assert e.value.capability == capability
        assert type(innermost(backend)).__name__ in e.value.backend
        assert backend.info("cap/x").exists is False


#: what each contract backend must at least claim, so that the exercises above really run there
MINIMUM: dict[str, frozenset[str]] = {
    "memory": frozenset(),
    "posixfs": frozenset(),
    "posixfs_walk": frozenset(),
    "s3_moto": frozenset({PRESIGN, TAGS, MULTIPART, SERVER_SIDE_COPY, METADATA, CHECKSUMS, STORAGE_CLASS}),
    "s3_seaweedfs": frozenset({PRESIGN, TAGS, MULTIPART, SERVER_SIDE_COPY, METADATA, CHECKSUMS}),
    # the data layers pass on only what cannot bypass them: no presign, multipart or checksums
    "encrypt_memory": frozenset(),
    "compress_posixfs": frozenset(),
    "encrypt_compress_s3": frozenset({TAGS, METADATA}),
}
#: what the data layers must never claim, whatever the backend below has
NEVER_THROUGH_DATA_LAYERS = frozenset({PRESIGN, MULTIPART, CHECKSUMS})


def test_claimed_capabilities(backend: Backend, backend_kind: str) -> None:  # noqa: F811
    assert backend.capabilities <= CAPABILITIES
    if backend_kind.startswith(("encrypt", "compress")):
        assert not backend.capabilities & NEVER_THROUGH_DATA_LAYERS
    if backend_kind not in MINIMUM:
        return  # sftp, rclone, rest: whatever they claim is exercised by the tests above
    assert MINIMUM[backend_kind] <= backend.capabilities
    if not MINIMUM[backend_kind]:
        assert backend.capabilities == frozenset()  # the reference backends claim nothing
