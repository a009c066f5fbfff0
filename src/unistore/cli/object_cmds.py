"""``presign``, ``tag get|set|rm|find`` and ``multipart ls|cleanup``: the optional capabilities.

A backend without the capability answers with a one-line error naming it (exit 2).
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime
from typing import Any

from ..errors import ObjectNotFound
from .locations import Session, check_user_name
from .output import Output, UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``24h``, ``7d``, ``2w`` -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 30m, 24h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def cmd_presign(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        name = check_user_name(target.name(args.name), writing=args.method == "PUT")
        if args.expires <= 0:
            raise UsageError(f"--expires must be > 0 seconds, not {args.expires}")
        if args.method == "GET":
            info = target.backend.info(name)
            if not info.exists or info.directory:
                raise ObjectNotFound(args.name)
        kwargs: dict[str, Any] = {"method": args.method, "expires": args.expires}
        if args.content_type:
            kwargs["content_type"] = args.content_type
        if args.content_disposition:
            kwargs["content_disposition"] = args.content_disposition
        url = target.backend.presign(name, **kwargs)
        out.result({"name": args.name, "url": url, "method": args.method, "expires": args.expires}, url)
    return 0


def _pairs(items: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"tags are key=value, not {item!r}")
        tags[key] = value
    return tags


def cmd_tag(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        be = target.backend
        if args.tag_command == "find":
            key, eq, value = args.tag.partition("=")
            if not key:
                raise UsageError("tag find takes KEY or KEY=VALUE")
            prefix = target.name(args.prefix)
            found = [target.rel(n) for n in be.find_by_tag(key, value if eq else None, prefix=prefix)]
            out.result(found, "\n".join(found) if found else None)
            return 0
        name = check_user_name(target.name(args.name))
        info = be.info(name)
        if not info.exists or info.directory:
            raise ObjectNotFound(args.name)
        if args.tag_command == "get":
            tags = be.get_tags(name)
        elif args.tag_command == "set":
            tags = be.update_tags(name, _pairs(args.tags))
        else:
            tags = be.update_tags(name, dict.fromkeys(args.keys))
        out.result(tags, "\n".join(f"{k}={v}" for k, v in sorted(tags.items())))
    return 0


def _age(initiated: Any) -> float:
    if not isinstance(initiated, datetime):
        return 0.0
    if initiated.tzinfo is None:
        initiated = initiated.replace(tzinfo=UTC)
    return (datetime.now(UTC) - initiated).total_seconds()


def cmd_multipart(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        be = target.backend
        prefix = target.name(args.prefix)
        if args.multipart_command == "ls" or args.dry_run:
            uploads = be.list_multipart_uploads(prefix)
            older = getattr(args, "older_than", 0.0) or 0.0
            rows = [
                {"name": u.get("name") or u.get("key"), "upload_id": u.get("upload_id"),
                 "initiated": str(u.get("initiated")), "age_seconds": round(_age(u.get("initiated")))}
                for u in uploads
                if _age(u.get("initiated")) >= older
            ]
            verb = "would abort " if args.multipart_command == "cleanup" else ""
            lines = [f"{verb}{r['name']} {r['upload_id']} started {r['initiated']}" for r in rows]
            if args.multipart_command == "cleanup":
                lines.append(f"would abort {len(rows)} upload(s)")
            out.result(rows, "\n".join(lines) if lines else None)
            return 0
        count = be.abort_stale_multipart(args.older_than, prefix)
        out.result({"aborted": count, "older_than": args.older_than},
                   f"aborted {count} multipart upload(s) older than {args.older_than:g} s")
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("presign", help="print a presigned URL for NAME (GET, or PUT to upload)")
    s.add_argument("name")
    s.add_argument("--method", choices=("GET", "PUT"), default="GET", type=str.upper)
    s.add_argument("--expires", type=int, default=3600, metavar="SECONDS", help="validity (default 3600)")
    s.add_argument("--content-type", help="Content-Type the URL answers with (GET) or requires (PUT)")
    s.add_argument("--content-disposition", help="Content-Disposition the URL answers with")
    s.set_defaults(func=cmd_presign)

    t = sub.add_parser("tag", help="object tags: get, set, rm, find")
    tsub = t.add_subparsers(dest="tag_command", metavar="TAG_COMMAND")
    tsub.required = True
    g = tsub.add_parser("get", help="show the tags of NAME")
    g.add_argument("name")
    g = tsub.add_parser("set", help="merge KEY=VALUE tags into NAME's tags")
    g.add_argument("name")
    g.add_argument("tags", nargs="+", metavar="KEY=VALUE")
    g = tsub.add_parser("rm", help="remove tags KEY from NAME")
    g.add_argument("name")
    g.add_argument("keys", nargs="+", metavar="KEY")
    g = tsub.add_parser("find", help="names below PREFIX with tag KEY (=VALUE)")
    g.add_argument("tag", metavar="KEY[=VALUE]")
    g.add_argument("prefix", nargs="?", default="")
    t.set_defaults(func=cmd_tag)

    m = sub.add_parser("multipart", help="unfinished multipart uploads: ls, cleanup --older-than")
    msub = m.add_subparsers(dest="multipart_command", metavar="MULTIPART_COMMAND")
    msub.required = True
    g = msub.add_parser("ls", help="list unfinished uploads")
    g.add_argument("--prefix", default="")
    g.set_defaults(dry_run=False)
    g = msub.add_parser("cleanup", help="abort uploads started more than --older-than ago")
    g.add_argument("--older-than", type=parse_duration, required=True, metavar="AGE", help="e.g. 3600, 30m, 24h, 7d")
    g.add_argument("--prefix", default="")
    g.add_argument("--dry-run", action="store_true", help="only list what would be aborted")
    m.set_defaults(func=cmd_multipart)
