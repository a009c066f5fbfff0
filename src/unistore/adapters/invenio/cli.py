"""``unistore invenio cors`` and ``unistore invenio abort-stale``.

``cors`` sets the bucket CORS rules that browsers need to upload parts straight to S3 through
presigned URLs: PUT (and GET/HEAD) from the site's origins, any request header, and ``ETag``
exposed, since the uploader must read each part's ETag to complete the upload.
``abort-stale`` aborts multipart uploads older than a given age (orphaned parts cost money).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

from ...url import open_backend

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def cors_rules(origins: list[str], max_age: int = 3600) -> list[dict[str, Any]]:
    """S3 CORS rules for direct uploads from ``origins``."""
    return [
        {
            "AllowedOrigins": origins,
            "AllowedMethods": ["GET", "HEAD", "PUT", "POST"],
            "AllowedHeaders": ["*"],
            "ExposeHeaders": ["ETag"],
            "MaxAgeSeconds": int(max_age),
        }
    ]


def parse_age(text: str) -> float:
    m = _AGE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (e.g. 3600, 90m, 12h, 7d)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _url(args: argparse.Namespace) -> str:
    url = getattr(args, "url", None) or os.environ.get("UNISTORE_URL")
    if not url:
        raise SystemExit("no backend URL: pass --url or set UNISTORE_URL")
    return str(url)


def cmd_cors(args: argparse.Namespace) -> int:
    rules = cors_rules(args.origin, args.max_age)
    backend = open_backend(_url(args))
    backend.open()
    try:
        set_cors = getattr(backend, "set_cors", None)
        if set_cors is None:
            print(f"{backend!r} has no bucket CORS rules (only S3 has)", file=sys.stderr)
            return 1
        set_cors(rules)
    finally:
        backend.close()
    if getattr(args, "json", False):
        print(json.dumps({"CORSRules": rules}))
    else:
        print(f"CORS set for {', '.join(args.origin)} (PUT/GET/HEAD/POST, ETag exposed)")
    return 0


def cmd_abort_stale(args: argparse.Namespace) -> int:
    backend = open_backend(_url(args))
    backend.open()
    try:
        count = backend.abort_stale_multipart(args.older_than, prefix=args.prefix)
    finally:
        backend.close()
    if getattr(args, "json", False):
        print(json.dumps({"aborted": count}))
    else:
        print(f"aborted {count} multipart upload(s) older than {args.older_than:.0f}s")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``unistore invenio cors|abort-stale`` to the ``unistore`` command."""
    inv = subparsers.add_parser("invenio", help="Invenio storage tools (bucket CORS, stale uploads)")
    sub = inv.add_subparsers(dest="invenio_command", metavar="INVENIO_COMMAND")
    sub.required = True
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="the bucket's backend URL ($UNISTORE_URL)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    c = sub.add_parser("cors", help="let browsers upload parts from ORIGIN (ETag exposed)", parents=[common])
    c.add_argument("--origin", action="append", required=True, help="allowed origin (repeatable), or '*'")
    c.add_argument("--max-age", type=int, default=3600, help="seconds browsers may cache the preflight")
    c.set_defaults(func=cmd_cors)
    a = sub.add_parser("abort-stale", help="abort multipart uploads older than AGE", parents=[common])
    a.add_argument("--older-than", type=parse_age, required=True, help="age: seconds, or 90m, 12h, 7d")
    a.add_argument("--prefix", default="", help="only uploads below this prefix")
    a.set_defaults(func=cmd_abort_stale)
