"""InvenioRDM's multipart transfer on unistore: invenio-s3's multipart methods, with its signatures.

invenio-records-resources' ``MultipartTransfer`` looks these up with ``hasattr``, keeps the dict
``multipart_initialize_upload`` returns (plus ``parts``, ``part_size``, ``size``) as JSON in the file
record, hands out ``multipart_links`` to the client, and after ``multipart_commit_upload`` records
``multipart:<etag>-<part_size>`` for its checksum task, which splits it on ``-``: the ETag returned
is S3's ``<md5 of the part md5s>-<parts>``. The factory returns this class only where the backend
has multipart uploads; elsewhere InvenioRDM preallocates with ``initialize`` and writes the parts
with ``update``, which :class:`~.storage.UnistoreFileStorage` serves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from math import ceil
from typing import Any

from ...backends.base import PRESIGN
from ...errors import ObjectNotFound, UploadNotFound
from .storage import UnistoreFileStorage
from .streams import CountingReader


class UnistoreMultipartFileStorage(UnistoreFileStorage):
    """The storage where the backend has multipart uploads: invenio-s3's multipart methods, which
    InvenioRDM's multipart transfer calls (it keeps their metadata as JSON in the file record)."""

    def multipart_initialize_upload(self, parts: int, size: int, part_size: int | None) -> dict[str, Any]:
        parts = int(parts)
        if not 1 <= parts <= int(self._config("S3_MAXIMUM_NUMBER_OF_PARTS")):
            raise ValueError(f"{parts} parts: between 1 and {self._config('S3_MAXIMUM_NUMBER_OF_PARTS')} allowed")
        if part_size and parts != ceil(int(size) / int(part_size)):
            raise ValueError(f"{parts} parts of {part_size} bytes cannot hold {size} bytes")
        self._size = int(size)
        return {"uploadId": self.backend.create_multipart(self.name)}

    def multipart_links(self, **multipart_metadata: Any) -> dict[str, Any]:
        """Presigned part URLs; without presign none, so InvenioRDM uploads through the app."""
        if not self.backend.supports(PRESIGN):
            return {}
        expires = int(self._config("S3_UPLOAD_URL_EXPIRATION"))
        at = datetime.now(UTC) + timedelta(seconds=expires)
        expiration = at.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
        upload_id = multipart_metadata["uploadId"]
        return {
            "parts": [
                {
                    "part": n,
                    "url": self.backend.presign_part(self.name, upload_id, n, expires=expires),
                    "expiration": expiration,
                }
                for n in range(1, int(multipart_metadata["parts"]) + 1)
            ]
        }

    def multipart_set_content(self, part: int, stream: Any, content_length: int, **multipart_metadata: Any) -> None:
        """Upload one part through the app (invenio-s3 raises NotImplementedError here)."""
        part, parts = int(part), int(multipart_metadata["parts"])
        part_size = multipart_metadata.get("part_size")
        if not 1 <= part <= parts:
            raise ValueError(f"part {part} is not between 1 and {parts}")
        if part_size and part < parts and int(content_length) != int(part_size):
            raise ValueError(f"part {part} has {content_length} bytes, not {part_size}")
        reader = CountingReader(stream, size=int(content_length))
        self.backend.upload_part(
            self.name,
            multipart_metadata["uploadId"],
            part,
            reader,  # type: ignore[arg-type]
            size=int(content_length),
        )
        reader.drain()

    def multipart_commit_upload(self, **multipart_metadata: Any) -> str:
        """Complete the upload once every part is there; returns the ETag (``<md5 of md5s>-<n>``)."""
        upload_id = multipart_metadata["uploadId"]
        expected = int(multipart_metadata["parts"])
        parts = self.backend.list_parts(self.name, upload_id)
        if len(parts) != expected:
            raise ValueError(f"Not all parts were uploaded, got {len(parts)} out of {expected} parts.")
        size = multipart_metadata.get("size")
        if size is not None and sum(int(p["size"]) for p in parts) != int(size):
            raise ValueError(f"the parts hold {sum(int(p['size']) for p in parts)} bytes, not {size}")
        return self.backend.complete_multipart(self.name, upload_id, parts).strip('"')

    def multipart_abort_upload(self, **multipart_metadata: Any) -> None:
        try:
            self.backend.abort_multipart(self.name, multipart_metadata["uploadId"])
        except (ObjectNotFound, UploadNotFound):
            pass  # gone already (expired, aborted or completed): the caller cleans up its records
