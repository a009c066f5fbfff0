"""REST endpoints for direct multipart uploads, with oarepo-s3's request and response shapes.

Below ``UNISTORE_INVENIO_MULTIPART_URL_PREFIX`` (default ``/multipart``) and a bucket id:

=======================================================  =======  =================================
``/<bucket_id>/files/?multipart=True``                   POST     start: ``key``, ``size``,
                                                                  ``type`` (content type),
                                                                  ``partSize`` (optional) in the
                                                                  query, a form or JSON; answers
                                                                  ``key``, ``uploadId``, ``parts``,
                                                                  ``partSize``, ``expires``,
                                                                  ``links`` (201)
``/<bucket_id>/files/<key>/<upload_id>/<parts>/presigned``  GET   ``{"presignedUrls": {n: url}}``
                                                                  (``parts``: ``3`` or ``1,2,3``)
``/<bucket_id>/files/<key>/<upload_id>/parts``           GET      S3's parts (``PartNumber``,
                                                                  ``ETag``, ``Size``)
``/<bucket_id>/files/<key>/<upload_id>/complete``        POST     ``{"parts": [{"PartNumber",
                                                                  "ETag"}]}`` (optional: all
                                                                  uploaded parts); answers
                                                                  ``location``, ``checksum``
``/<bucket_id>/files/<key>/<upload_id>/abort``           DELETE   ``{}``
=======================================================  =======  =================================

Each checks invenio-files-rest's ``bucket-update`` permission on the bucket (through
``FILES_REST_PERMISSION_FACTORY``), as its own upload endpoints do.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, abort, jsonify, request, url_for

from . import locations, multipart


def _bucket(bucket_id: str, action: str = "bucket-update") -> Any:
    import uuid

    from invenio_files_rest.models import Bucket
    from invenio_files_rest.proxies import current_permission_factory
    from invenio_files_rest.views import check_permission

    try:
        bucket = Bucket.get(uuid.UUID(bucket_id))
    except ValueError:
        bucket = None
    if bucket is None:
        abort(404, "Bucket does not exist.")
    check_permission(current_permission_factory(bucket, action), hidden=False)
    return bucket


def _object(bucket: Any, key: str, upload_id: str) -> tuple[Any, dict[str, Any]]:
    from invenio_files_rest.models import ObjectVersion

    obj = ObjectVersion.get(bucket, key)
    state = multipart.state_of(obj) if obj is not None and obj.file is not None else None
    if obj is None or state is None:
        raise multipart.MultipartError("resource is not a multipart upload", status=404)
    multipart.check_upload_id(state, upload_id)
    return obj, state


def _args() -> dict[str, Any]:
    data: dict[str, Any] = dict(request.args.items())
    data.update(request.form.items())
    if request.is_json:
        data.update(request.get_json(silent=True) or {})
    return data


def _int(value: Any, what: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise multipart.MultipartError(f"{what}: a number is required") from None


def _links(bucket_id: str, key: str, upload_id: str) -> dict[str, str]:
    def link(endpoint: str) -> str:
        return url_for(
            f"unistore_invenio_multipart.{endpoint}",
            bucket_id=bucket_id,
            key=key,
            upload_id=upload_id,
            _external=True,
        )

    return {"parts": link("parts"), "complete": link("complete"), "abort": link("abort")}


def start_upload(bucket_id: str) -> Any:
    from invenio_db import db

    bucket = _bucket(bucket_id)
    data = _args()
    if str(data.get("multipart", "")).lower() not in ("true", "1", "yes"):
        raise multipart.MultipartError("only multipart=True uploads are served here")
    key = data.get("key")
    if not key:
        raise multipart.MultipartError("key: the file name is required")
    size = _int(data.get("size"), "size")
    if size is None:
        raise multipart.MultipartError("size: the file size is required")
    part_size = _int(data.get("partSize", data.get("part_size")), "partSize")
    obj = multipart.start(bucket, key, size, data.get("type") or data.get("content_type"), part_size)
    state = multipart.state_of(obj)
    assert state is not None
    db.session.commit()
    expires = multipart.expires_of(obj)
    body = {
        "key": key,
        "uploadId": state["upload_id"],
        "parts": state["parts"],
        "partSize": state["part_size"],
        "expires": expires.isoformat() if expires else None,
        "links": _links(bucket_id, key, state["upload_id"]),
    }
    return jsonify(body), 201


def presigned(bucket_id: str, key: str, upload_id: str, part_ids: str) -> Any:
    bucket = _bucket(bucket_id)
    obj, state = _object(bucket, key, upload_id)
    try:
        numbers = [int(p) for p in part_ids.split(",") if p.strip()]
    except ValueError:
        raise multipart.MultipartError("the part numbers must be numbers between 1 and 10000") from None
    if not numbers:
        raise multipart.MultipartError("no part numbers given")
    return jsonify({"presignedUrls": multipart.presign_parts(obj, state, numbers)})


def parts(bucket_id: str, key: str, upload_id: str) -> Any:
    bucket = _bucket(bucket_id)
    obj, state = _object(bucket, key, upload_id)
    return jsonify(multipart.uploaded_parts(obj, state))


def complete(bucket_id: str, key: str, upload_id: str) -> Any:
    from invenio_db import db

    bucket = _bucket(bucket_id)
    obj, state = _object(bucket, key, upload_id)
    body = request.get_json(silent=True) or {}
    given = body.get("parts")
    if given is not None and not isinstance(given, list):
        raise multipart.MultipartError('parts: a list of {"PartNumber": n, "ETag": "..."}')
    checksum = multipart.complete(obj, state, given)
    db.session.commit()
    location = url_for(
        "invenio_files_rest.object_api", bucket_id=bucket_id, key=key, versionId=str(obj.version_id), _external=True
    )
    return jsonify({"location": location, "checksum": checksum, "size": obj.file.size})


def abort_upload(bucket_id: str, key: str, upload_id: str) -> Any:
    from invenio_db import db

    bucket = _bucket(bucket_id)
    obj, state = _object(bucket, key, upload_id)
    multipart.abort(obj, state)
    db.session.commit()
    return jsonify({})


def _error(e: multipart.MultipartError) -> Any:
    return jsonify({"status": e.status, "message": e.message}), e.status


def create_blueprint(app: Flask) -> Blueprint:
    """The blueprint (registered by the ``invenio_base.api_blueprints`` entry point)."""
    prefix = locations.setting(app.config, "UNISTORE_INVENIO_MULTIPART_URL_PREFIX")
    bp = Blueprint("unistore_invenio_multipart", __name__, url_prefix=prefix)
    base = "/<string:bucket_id>/files"
    upload = base + "/<path:key>/<string:upload_id>"
    bp.add_url_rule(base + "/", "start", start_upload, methods=["POST"])
    bp.add_url_rule(upload + "/<string:part_ids>/presigned", "presigned", presigned, methods=["GET"])
    bp.add_url_rule(upload + "/parts", "parts", parts, methods=["GET"])
    bp.add_url_rule(upload + "/complete", "complete", complete, methods=["POST"])
    bp.add_url_rule(upload + "/abort", "abort", abort_upload, methods=["DELETE"])
    bp.register_error_handler(multipart.MultipartError, _error)
    _csrf_exempt(app, bp)
    return bp


def _csrf_exempt(app: Flask, bp: Blueprint) -> None:
    """Exempt from invenio-rest's CSRF check where that is installed, as oarepo-s3 did."""
    try:
        from invenio_rest.csrf import csrf
    except ImportError:
        return
    csrf.exempt(bp)
