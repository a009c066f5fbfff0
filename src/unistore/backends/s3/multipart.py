"""Multipart-upload primitives of S3Backend (for clients that upload parts themselves, e.g. a
browser through presigned part URLs) and the clean-up of uploads left by killed processes."""

from __future__ import annotations

import builtins
from typing import IO, TYPE_CHECKING, Any

from ...errors import ConfigError
from ..capabilities import MULTIPART, StoreMeta
from .capabilities import aware, store_args, unquote
from .errors import translate

if TYPE_CHECKING:
    from .boto3_engine import Boto3Engine


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


class S3Multipart:
    """Mixed into S3Backend."""

    if TYPE_CHECKING:
        bucket: str
        _root: str
        _client: Any
        _boto: Boto3Engine | None

        def _check_open(self) -> None: ...
        def _key(self, name: str) -> str: ...
        def _call(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any: ...
        def require(self, capability: str) -> None: ...

    def _mp_sse(self) -> dict[str, Any]:
        return self._boto.sse if self._boto is not None else {}

    def create_multipart(self, name: str, *, meta: StoreMeta | None = None) -> str:
        self.require(MULTIPART)
        self._check_open()
        assert self._boto is not None
        extra = {**self._boto.put_extra, **store_args(meta)}
        resp = self._call(
            f"create multipart {name}",
            self._client.create_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(name),
            **extra,
        )
        return str(resp["UploadId"])

    def upload_part(self, name: str, upload_id: str, part_number: int, data: Any, *, size: int | None = None) -> str:
        """Upload part ``part_number`` (1..10000) from bytes or a binary file; return its ETag, unquoted."""
        self._check_open()
        _check_part_number(part_number)
        if not isinstance(data, bytes | bytearray | memoryview):
            file: IO[bytes] = data
            data = file.read() if size is None else file.read(size)
        resp = self._call(
            f"upload part {part_number} of {name}",
            self._client.upload_part,
            Bucket=self.bucket,
            Key=self._key(name),
            UploadId=upload_id,
            PartNumber=part_number,
            Body=bytes(data),
            **self._mp_sse(),
        )
        return unquote(resp["ETag"]) or ""

    def presign_part(self, name: str, upload_id: str, part_number: int, *, expires: int = 3600) -> str:
        self._check_open()
        _check_part_number(part_number)
        return self._call(  # type: ignore[no-any-return]
            f"presign part {name}",
            self._client.generate_presigned_url,
            "upload_part",
            Params={"Bucket": self.bucket, "Key": self._key(name), "UploadId": upload_id, "PartNumber": part_number},
            ExpiresIn=int(expires),
        )

    def list_parts(self, name: str, upload_id: str) -> builtins.list[dict[str, Any]]:
        self._check_open()
        parts: builtins.list[dict[str, Any]] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(name), "UploadId": upload_id}
        while True:
            resp = self._call(f"list parts {name}", self._client.list_parts, **args)
            for p in resp.get("Parts", []):
                parts.append({"part_number": p["PartNumber"], "etag": unquote(p["ETag"]), "size": p["Size"]})
            if not resp.get("IsTruncated"):
                return parts
            args["PartNumberMarker"] = resp["NextPartNumberMarker"]

    def complete_multipart(self, name: str, upload_id: str, parts: builtins.list[dict[str, Any]] | None = None) -> str:
        """Assemble the parts; return the item's ETag, unquoted (``<md5 of the part md5s>-<n>``)."""
        self._check_open()
        if parts is None:
            parts = self.list_parts(name, upload_id)
        if not parts:
            raise ConfigError(f"no parts to complete for {name}")
        mp = {
            "Parts": [
                {"PartNumber": int(p["part_number"]), "ETag": _quoted(str(p["etag"]))}
                for p in sorted(parts, key=lambda p: int(p["part_number"]))
            ]
        }
        resp = self._call(
            f"complete multipart {name}",
            self._client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(name),
            UploadId=upload_id,
            MultipartUpload=mp,
            **self._mp_sse(),
        )
        return unquote(resp.get("ETag")) or ""

    def abort_multipart(self, name: str, upload_id: str) -> None:
        """Abort an upload and free its parts; UploadNotFound for an unknown id."""
        self._check_open()
        self._call(
            f"abort multipart {name}",
            self._client.abort_multipart_upload,
            Bucket=self.bucket,
            Key=self._key(name),
            UploadId=upload_id,
        )

    def list_multipart_uploads(self, prefix: str = "") -> builtins.list[dict[str, Any]]:
        """Pending uploads below ``prefix``: ``[{"name", "upload_id", "initiated"}]`` (aware datetimes)."""
        self._check_open()
        out: builtins.list[dict[str, Any]] = []
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._root + prefix}
        while True:
            try:
                resp = self._client.list_multipart_uploads(**args)
            except Exception as e:
                raise translate(e, "list multipart uploads") from None
            for up in resp.get("Uploads", []):
                out.append(
                    {
                        "name": up["Key"][len(self._root) :],
                        "upload_id": up["UploadId"],
                        "initiated": aware(up.get("Initiated")),
                    }
                )
            if not resp.get("IsTruncated"):
                return out
            args["KeyMarker"] = resp.get("NextKeyMarker", "")
            args["UploadIdMarker"] = resp.get("NextUploadIdMarker", "")


def _check_part_number(n: int) -> None:
    if not 1 <= n <= 10000:
        raise ConfigError(f"part_number must be 1..10000, not {n}")
