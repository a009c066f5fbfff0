"""invenio-files-rest storage on unistore backends.

``FILES_REST_STORAGE_FACTORY = "unistore.adapters.invenio.storage_factory"`` serves locations with
invenio-s3's ``s3://bucket[/prefix]`` URIs (configured by invenio-s3's ``S3_*`` keys), local paths
and any unistore URL (see :mod:`.locations`). The factory returns :class:`UnistoreFileStorage`, or
:class:`UnistoreMultipartFileStorage` where the backend has multipart uploads: InvenioRDM looks the
``multipart_*`` methods up with ``hasattr``, and falls back to uploading the parts through the app
(``initialize`` + ``update``) where they are missing.
"""

from __future__ import annotations

import logging
import mimetypes
import tempfile
import unicodedata
from datetime import datetime
from time import time
from typing import Any
from urllib.parse import quote

from flask import current_app
from invenio_files_rest.storage import FileStorage

from ...backends.base import CHECKSUMS, METADATA, MULTIPART, PRESIGN, SERVER_SIDE_COPY, TAGS, Backend, StoreMeta
from ...errors import CapabilityNotSupported, ObjectNotFound, UnistoreError, UploadNotFound
from . import locations
from .streams import AssembledReader, BackendReader, CountingReader

log = logging.getLogger("unistore.adapters.invenio.storage")

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PARTS = 10000
MD5_TAG = "md5"  # where the md5 computed while streaming is kept when the backend's ETag is no md5
PARTS_SUFFIX = ".parts"  # staged parts of update() on backends without multipart uploads


def _storage_error(e: BaseException, what: str) -> Exception:
    from invenio_files_rest.errors import StorageError

    err = StorageError(description=f"{what}: {e}")
    err.__cause__ = e
    return err


class UnistoreFileStorage(FileStorage):  # type: ignore[misc]
    """One file (``fileurl``) on a unistore backend, with invenio-files-rest's FileStorage API."""

    def __init__(
        self,
        fileurl: str,
        size: int | None = None,
        modified: datetime | None = None,
        *,
        backend: Backend | None = None,
        name: str | None = None,
        flat: bool | None = None,
        clean_dir: bool = True,
    ) -> None:
        super().__init__(size=size, modified=modified)
        self.fileurl = fileurl
        self.clean_dir = clean_dir
        self._backend = backend
        self._name = name
        self._flat = flat

    # ------------------------------------------------------------------ where
    def _resolve(self) -> None:
        resolved = locations.resolve(self.fileurl, current_app.config)
        self._backend = locations.backend_for(resolved, current_app.config)
        self._name = resolved.name
        self._flat = resolved.flat

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._resolve()
        assert self._backend is not None
        return self._backend

    @property
    def name(self) -> str:
        if self._name is None:
            self._resolve()
        assert self._name is not None
        return self._name

    @property
    def flat(self) -> bool:
        if self._flat is None:
            self._resolve()
        return bool(self._flat)

    def _config(self, key: str) -> Any:
        return locations.setting(current_app.config, key)

    # ------------------------------------------------------------------ reading
    def _stat(self) -> Any:
        """The item's ObjectMeta, after putting together parts that ``update`` left."""
        if not self._uses_multipart_parts():
            self._finalize_pending()  # staged parts of update() (a listing that finds nothing, usually)
        try:
            return self.backend.stat(self.name)
        except ObjectNotFound:
            if self._uses_multipart_parts() and self._finalize_pending():
                return self.backend.stat(self.name)
            raise

    def open(self, mode: str = "rb") -> Any:
        """``rb``: a seekable reader (ranged loads); ``wb``: a writer stored when it is closed."""
        if mode[0] == "r":
            try:
                size = self._stat().size
            except ObjectNotFound as e:
                raise FileNotFoundError(self.fileurl) from e
            return BackendReader(self.backend, self.name, size)
        if mode[0] == "w":
            return _Writer(self)
        raise ValueError(f"unsupported mode {mode!r}")

    def checksum(self, chunk_size: int | None = None, progress_callback: Any = None, **kwargs: Any) -> str:
        """``md5:<hex>``: the md5 recorded while the file was streamed in (the ETag of a single-part
        upload, or the ``md5`` tag), computed by reading the file only where none was recorded or
        with ``verify=True`` (a fixity check)."""
        try:
            if not kwargs.get("verify"):
                recorded = self._recorded_md5()
                if recorded:
                    if progress_callback and self._size:
                        progress_callback(self._size, self._size)
                    return f"md5:{recorded}"
            fp = self.open("rb")
        except Exception as e:
            raise _storage_error(e, "Could not compute checksum of file") from e
        from invenio_files_rest.helpers import compute_checksum

        try:
            import hashlib
            from functools import partial

            callback = partial(progress_callback, self._size) if progress_callback and self._size else None
            value: str = compute_checksum(fp, "md5", hashlib.md5(), chunk_size=chunk_size, progress_callback=callback)
        except Exception as e:
            raise _storage_error(e, "Could not compute checksum of file") from e
        finally:
            fp.close()
        self._record_md5(value[len("md5:") :])
        return value

    def _recorded_md5(self) -> str | None:
        backend = self.backend
        meta = self._stat()
        md5 = meta.checksums.get("md5") if backend.supports(CHECKSUMS) else None
        if md5:
            return str(md5)
        if backend.supports(TAGS):
            return backend.get_tags(self.name).get(MD5_TAG) or None
        return None

    def _record_md5(self, md5: str) -> None:
        backend = self.backend
        if not backend.supports(TAGS):
            return
        if backend.supports(CHECKSUMS) and backend.stat(self.name).checksums.get("md5") == md5:
            return
        backend.update_tags(self.name, {MD5_TAG: md5})

    def send_file(
        self,
        filename: str,
        mimetype: str | None = None,
        restricted: bool = True,
        checksum: str | None = None,
        trusted: bool = False,
        chunk_size: int | None = None,
        as_attachment: bool = False,
    ) -> Any:
        """A redirect to a presigned URL where the backend presigns (and the site allows it), else
        the file streamed with ranges and conditional requests; headers as invenio-files-rest's."""
        from invenio_files_rest.helpers import send_stream
        from werkzeug.exceptions import HTTPException

        if self._config("UNISTORE_INVENIO_REDIRECT_DOWNLOADS") and self.backend.supports(PRESIGN):
            try:
                return self._redirect(filename, mimetype, restricted, trusted, as_attachment)
            except Exception as e:
                raise _storage_error(e, "Could not send file") from e
        try:
            fp = self.open("rb")
        except Exception as e:
            raise _storage_error(e, "Could not send file") from e
        md5 = checksum.split(":", 1)[1] if checksum and checksum.startswith("md5:") else None
        try:
            return send_stream(
                fp,
                filename,
                fp.size,
                self._modified,
                mimetype=mimetype,
                restricted=restricted,
                etag=checksum,
                content_md5=md5,
                chunk_size=chunk_size,
                trusted=trusted,
                as_attachment=as_attachment,
            )
        except HTTPException:
            fp.close()
            raise
        except Exception as e:
            fp.close()
            raise _storage_error(e, "Could not send file") from e

    def _redirect(self, filename: str, mimetype: str | None, restricted: bool, trusted: bool, attach: bool) -> Any:
        headers, mimetype, disposition = download_headers(filename, mimetype, trusted, attach)
        expires = int(self._config("S3_URL_EXPIRATION"))
        url = self.backend.presign(self.name, expires=expires, content_type=mimetype, content_disposition=disposition)
        headers["Location"] = url
        rv = current_app.response_class(url, status=302, headers=headers, mimetype=mimetype)
        if not restricted:
            rv.cache_control.public = True
            rv.cache_control.max_age = expires
            rv.expires = int(time() + expires)  # type: ignore[assignment]
        else:
            rv.cache_control.no_cache = True
        return rv

    # ------------------------------------------------------------------ writing
    def initialize(self, size: int = 0) -> tuple[str, int, None]:
        """Prepare a file of ``size`` bytes to be filled by ``update``; writes no zeros (on
        multipart backends it starts the upload that the parts go to)."""
        size = int(size or 0)
        self._size = size
        if size and self._uses_multipart_parts():
            self._pending_upload(create=True)
        return self.fileurl, size, None

    def save(
        self,
        incoming_stream: Any,
        size_limit: Any = None,
        size: int | None = None,
        chunk_size: int | None = None,
        progress_callback: Any = None,
    ) -> tuple[str, int | None, str | None]:
        """Stream ``incoming_stream`` into the backend, computing the md5 on the way."""
        from .multipart import MultipartUpload

        if isinstance(incoming_stream, MultipartUpload):
            return self._start_direct_upload(incoming_stream, size_limit)
        reader = CountingReader(
            incoming_stream,
            size=size,
            size_limit=size_limit,
            progress_callback=progress_callback,
            chunk_size=chunk_size,
        )
        try:
            self.backend.store_file(self.name, reader, size=size)  # type: ignore[arg-type]
            reader.drain()
            md5 = reader.md5.hexdigest()
            self._record_md5(md5)
        except Exception:
            self._delete_quietly()
            raise
        self._size = reader.bytes_read
        return self.fileurl, reader.bytes_read, f"md5:{md5}"

    def _start_direct_upload(self, mu: Any, size_limit: Any) -> tuple[str, int | None, None]:
        from invenio_files_rest.errors import FileSizeError

        backend = self.backend
        if not backend.supports(MULTIPART) or not backend.supports(PRESIGN):
            raise CapabilityNotSupported(repr(backend), "multipart uploads through presigned URLs")
        if size_limit is not None and mu.size is not None and mu.size > size_limit:
            reason = getattr(size_limit, "reason", None) or "File size limit exceeded."
            raise FileSizeError(description=reason)
        meta = StoreMeta(content_type=mu.content_type) if backend.supports(METADATA) and mu.content_type else None
        mu.upload_id = backend.create_multipart(self.name, meta=meta)
        mu.name = self.name
        mu.fileurl = self.fileurl
        self._size = mu.size
        return self.fileurl, mu.size, None

    def update(
        self,
        incoming_stream: Any,
        seek: int = 0,
        size: int | None = None,
        chunk_size: int | None = None,
        progress_callback: Any = None,
    ) -> tuple[int, str]:
        """Write ``incoming_stream`` at ``seek``: as a part of the file's multipart upload (S3), or as
        a staged part put together once when the file is first read; never a whole-file rewrite
        per part."""
        reader = CountingReader(incoming_stream, size=size, progress_callback=progress_callback, chunk_size=chunk_size)
        seek = int(seek)
        if self._uses_multipart_parts():
            total = self._size
            if size is None or not total:
                raise _storage_error(ValueError("size unknown"), "Could not update file")
            if size < MIN_PART and seek + size != total:
                raise _storage_error(
                    ValueError(f"parts must be at least {MIN_PART} bytes, except the last"), "Could not update file"
                )
            upload_id = self._pending_upload(create=True)
            assert upload_id is not None
            part_number = seek * MAX_PARTS // total + 1
            self.backend.upload_part(self.name, upload_id, part_number, reader, size=size)  # type: ignore[arg-type]
        else:
            self.backend.store_file(self._part_name(seek), reader, size=size)  # type: ignore[arg-type]
        reader.drain()
        return reader.bytes_read, reader.checksum

    def _uses_multipart_parts(self) -> bool:
        return self.backend.supports(MULTIPART)

    def _part_name(self, seek: int) -> str:
        return f"{self.name}{PARTS_SUFFIX}/{seek:020d}"

    def _pending_upload(self, *, create: bool) -> str | None:
        """The upload id of this file's multipart upload started by initialize/update."""
        backend = self.backend
        for up in backend.list_multipart_uploads(prefix=self.name):
            if up["name"] == self.name:
                return str(up["upload_id"])
        if not create:
            return None
        return backend.create_multipart(self.name)

    def _finalize_pending(self) -> bool:
        """Put together the parts written by ``update`` (once); True if there were any."""
        backend = self.backend
        if self._uses_multipart_parts():
            upload_id = self._pending_upload(create=False)
            if upload_id is None:
                return False
            backend.complete_multipart(self.name, upload_id)
            return True
        try:
            staged = [i for i in backend.list(self.name + PARTS_SUFFIX) if not i.directory]
        except ObjectNotFound:
            return False
        segments = []
        end = 0
        for item in staged:
            offset = int(item.name)
            part = f"{self.name}{PARTS_SUFFIX}/{item.name}"
            segments.append((offset, item.size, _loader(backend, part)))
            end = max(end, offset + item.size)
        try:
            existing = backend.stat(self.name).size
            segments.insert(0, (0, existing, _loader(backend, self.name)))
        except ObjectNotFound:
            existing = 0
        total = max(self._size or 0, end, existing)
        # later segments (the parts) win over the existing content where they overlap
        reader = AssembledReader(total, _overlay(segments))
        with tempfile.SpooledTemporaryFile(max_size=16 * MiB) as tmp:
            while chunk := reader.read(MiB):
                tmp.write(chunk)
            tmp.seek(0)
            backend.store_file(self.name, tmp, size=total)  # type: ignore[arg-type]
        for item in staged:
            backend.delete(f"{self.name}{PARTS_SUFFIX}/{item.name}")
        try:
            backend.rmdir(self.name + PARTS_SUFFIX)
        except UnistoreError:
            pass
        return True

    # ------------------------------------------------------------------ delete, copy
    def delete(self) -> bool:
        """Delete the file, its staged parts and any unfinished multipart upload of it."""
        backend = self.backend
        try:
            backend.delete(self.name)
        except ObjectNotFound:
            pass
        if backend.supports(MULTIPART):
            for up in backend.list_multipart_uploads(prefix=self.name):
                if up["name"] == self.name:
                    try:
                        backend.abort_multipart(self.name, up["upload_id"])
                    except (ObjectNotFound, UploadNotFound):
                        pass
        if not self.flat:
            try:
                for item in backend.list(self.name + PARTS_SUFFIX):
                    backend.delete(f"{self.name}{PARTS_SUFFIX}/{item.name}")
                backend.rmdir(self.name + PARTS_SUFFIX)
            except ObjectNotFound:
                pass
            parent = self.name.rpartition("/")[0]
            if self.clean_dir and parent:
                try:
                    backend.rmdir(parent)
                except UnistoreError:  # not empty: another file lives there
                    pass
        return True

    def _delete_quietly(self) -> None:
        try:
            self.delete()
        except Exception as e:  # cleanup after a failed save must not hide the failure
            log.warning("cleanup of %s failed: %s", self.name, e)

    def copy(self, src: Any, chunk_size: int | None = None, progress_callback: Any = None) -> tuple[str, int, str]:
        """Copy ``src`` here: server-side within one backend, else streamed; returns size and checksum."""
        if (
            isinstance(src, UnistoreFileStorage)
            and src.backend is self.backend
            and self.backend.supports(SERVER_SIDE_COPY)
        ):
            checksum = src.checksum()
            self.backend.copy(src.name, self.name)
            size = self.backend.stat(self.name).size
            self._record_md5(checksum[len("md5:") :])
            self._size = size
            if progress_callback:
                progress_callback(size, size)
            return self.fileurl, size, checksum
        fp = src.open(mode="rb")
        try:
            uri, saved, md5 = self.save(fp, chunk_size=chunk_size, progress_callback=progress_callback)
        finally:
            fp.close()
        assert saved is not None and md5 is not None
        return uri, saved, md5


class _Writer:
    """``open("wb")``: spooled, stored when closed."""

    def __init__(self, storage: UnistoreFileStorage) -> None:
        self.storage = storage
        self.tmp = tempfile.SpooledTemporaryFile(max_size=16 * MiB)
        self.closed = False

    def write(self, data: bytes) -> int:
        return self.tmp.write(data)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.tmp.seek(0)
        self.storage.save(self.tmp)
        self.tmp.close()

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _loader(backend: Backend, name: str) -> Any:
    return lambda offset, n: backend.load(name, offset=offset, size=n)


def _overlay(segments: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """Cut earlier segments where later ones cover them, so the segments do not overlap."""
    out: list[tuple[int, int, Any]] = []
    for start, length, loader in segments:
        end = start + length
        kept: list[tuple[int, int, Any]] = []
        for s, n, ld in out:
            e = s + n
            if e <= start or s >= end:
                kept.append((s, n, ld))
                continue
            if s < start:
                kept.append((s, start - s, ld))
            if e > end:
                kept.append((end, e - end, _shifted(ld, end - s)))
        kept.append((start, length, loader))
        out = kept
    return out


def _shifted(loader: Any, delta: int) -> Any:
    return lambda offset, n: loader(offset + delta, n)


def download_headers(filename: str, mimetype: str | None, trusted: bool, as_attachment: bool) -> tuple[Any, str, str]:
    """invenio-files-rest's download headers: (headers, sanitised mimetype, Content-Disposition)."""
    from invenio_files_rest.helpers import sanitize_mimetype
    from werkzeug.datastructures import Headers

    if mimetype is None and filename:
        mimetype = mimetypes.guess_type(filename)[0]
    if mimetype is None:
        mimetype = "application/octet-stream"
    headers = Headers()
    if not trusted:
        mimetype = sanitize_mimetype(mimetype, filename=filename)
        headers["Content-Security-Policy"] = "default-src 'none';"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["X-Download-Options"] = "noopen"
        headers["X-Permitted-Cross-Domain-Policies"] = "none"
        headers["X-Frame-Options"] = "deny"
        headers["X-XSS-Protection"] = "1; mode=block"
    if as_attachment or mimetype == "application/octet-stream":
        try:
            filename.encode("ascii")
            names = {"filename": filename}
        except UnicodeEncodeError:
            simple = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
            names = {"filename": simple, "filename*": "UTF-8''" + quote(filename, safe="!#$&+-.^_`|~")}
        headers.add("Content-Disposition", "attachment", **names)
    else:
        headers.add("Content-Disposition", "inline")
    return headers, mimetype, str(headers.get("Content-Disposition"))
