"""``ls``, ``info``, ``rm``, ``mv``, ``undelete``, ``du`` and ``stats``: items of the ``--url`` store.

Soft delete follows the Store's convention: ``rm --soft`` renames an item to ``<name>.del``,
``undelete`` renames it back, ``ls --deleted`` shows such items.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ..backends.base import Backend, ItemInfo
from ..errors import DirectoryNotEmpty, ObjectNotFound
from ..names import DEL_SUFFIX, join
from . import logs
from .locations import Session, Target, check_user_name
from .output import Output, UsageError
from .progress import human


def _kind(be: Backend, name: str) -> ItemInfo:
    info = be.info(name) if name else ItemInfo("", True, directory=True)
    if not info.exists:
        raise ObjectNotFound(name)
    return info


def _stamp(mtime: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime)) if mtime else "-"


def cmd_ls(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        name = target.name(args.name)
        if args.name:
            check_user_name(name)
        info = _kind(target.backend, name)
        if not info.directory:
            raise UsageError(f"{args.name!r} is an item, not a directory (unistore info {args.name} shows it)")
        with logs.timed("list", name) as rec:
            items = target.backend.list_recursive(name) if args.recursive else target.backend.list(name)
            rows: list[dict[str, Any]] = []
            for i in items:
                if i.name.endswith(DEL_SUFFIX) != args.deleted:
                    continue
                shown = i.name.removesuffix(DEL_SUFFIX) if args.deleted else i.name
                rows.append({"name": shown, "size": i.size, "directory": i.directory, "mtime": i.mtime})
            rec["bytes"] = len(rows)
    if out.json:
        out.result(rows, None)
        return 0
    for r in rows:
        shown = r["name"] + ("/" if r["directory"] else "")
        if args.long:
            size = human(r["size"]) if args.human else str(r["size"])
            kind = "d" if r["directory"] else "-"
            print(f"{kind} {size:>12} {_stamp(r['mtime']):>19} {shown}")
        else:
            print(shown)
    return 0


def cmd_info(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        name = check_user_name(target.name(args.name))
        info = target.backend.info(name)
        if not info.exists:
            raise ObjectNotFound(args.name)
        data: dict[str, Any] = {"name": args.name, "size": info.size, "directory": info.directory,
                                "mtime": info.mtime}
        if not info.directory:
            meta = target.backend.stat(name)
            for key in ("etag", "checksums", "content_type", "content_disposition", "metadata", "storage_class"):
                value = getattr(meta, key, None)
                if value:
                    data[key] = dict(value) if isinstance(value, Mapping) else value
            if args.hash:
                data["sha256"] = target.backend.hash(name)
        text = "\n".join(f"{k}: {v}" for k, v in data.items())
        out.result(data, text)
    return 0


def _walk_dirs(be: Backend, name: str) -> Iterator[str]:
    """Directories below ``name``, deepest first."""
    try:
        entries = list(be.list(name))
    except ObjectNotFound:
        return
    for i in entries:
        if i.directory:
            yield from _walk_dirs(be, join(name, i.name))
            yield join(name, i.name)


def _remove_tree(target: Target, name: str, dry_run: bool) -> list[str]:
    """Delete every item below ``name``, then its directories; return the item names."""
    be = target.backend
    names = [join(name, i.name) for i in be.list_recursive(name) if not i.directory]
    if dry_run:
        return names
    be.delete_many(names, missing_ok=True)
    for d in list(_walk_dirs(be, name)) + ([name] if name else []):
        try:
            be.rmdir(d)
        except (ObjectNotFound, DirectoryNotEmpty):
            pass
    return names


def cmd_rm(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        removed: list[str] = []
        for arg in args.names:
            name = check_user_name(target.name(arg), writing=args.soft)
            info = target.backend.info(name)
            if not info.exists:
                raise ObjectNotFound(arg)
            if info.directory:
                if not args.recursive:
                    raise UsageError(f"{arg!r} is a directory: use rm -r {arg} to delete it and all it holds")
                if args.soft:
                    raise UsageError("rm --soft works on items, not directories")
                names = _remove_tree(target, name, args.dry_run)
                removed.extend(target.rel(n) for n in names)
                continue
            if args.dry_run:
                removed.append(arg)
            elif args.soft:
                target.backend.move(name, name + DEL_SUFFIX)
                removed.append(arg)
            else:
                with logs.timed("delete", name):
                    target.backend.delete(name)
                removed.append(arg)
        verb = "would remove" if args.dry_run else "removed"
        lines = [f"{verb} {n}" for n in removed] if args.dry_run else []
        lines.append(f"{verb} {len(removed)} item(s)" + (" (soft)" if args.soft else ""))
        out.result({"removed": removed, "soft": args.soft, "dry_run": args.dry_run}, "\n".join(lines))
    return 0


def cmd_mv(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        src = check_user_name(target.name(args.src))
        dst = check_user_name(target.name(args.dst), writing=True, what="destination")
        info = target.backend.info(src)
        if not info.exists:
            raise ObjectNotFound(args.src)
        existing = target.backend.info(dst)
        if existing.exists and existing.directory:
            dst = join(dst, src.rsplit("/", 1)[-1])
            existing = target.backend.info(dst)
        if existing.exists and args.no_clobber:
            out.result({"moved": False, "reason": "exists", "to": args.dst},
                       f"not moved: {target.rel(dst)} exists (--no-clobber)")
            return 1
        target.backend.move(src, dst)
        note = " (replaced the existing item)" if existing.exists else ""
        out.result({"moved": args.src, "to": target.rel(dst), "replaced": existing.exists},
                   f"moved {args.src} -> {target.rel(dst)}{note}")
    return 0


def cmd_undelete(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        for arg in args.names:
            name = check_user_name(target.name(arg), writing=True)
            if not target.backend.info(name + DEL_SUFFIX).exists:
                raise ObjectNotFound(f"{arg} (no soft-deleted item of that name)")
            target.backend.move(name + DEL_SUFFIX, name)
        out.result({"undeleted": args.names}, f"undeleted {len(args.names)} item(s)")
    return 0


def _usage(target: Target, name: str) -> dict[str, dict[str, int]]:
    per: dict[str, dict[str, int]] = {}
    for i in target.backend.list_recursive(name):
        top = i.name.split("/", 1)[0] + "/" if "/" in i.name else "."
        row = per.setdefault(top, {"items": 0, "bytes": 0, "deleted_items": 0, "deleted_bytes": 0})
        if i.name.endswith(DEL_SUFFIX):
            row["deleted_items"] += 1
            row["deleted_bytes"] += i.size
        else:
            row["items"] += 1
            row["bytes"] += i.size
    return per


def _total(per: dict[str, dict[str, int]]) -> dict[str, int]:
    return {k: sum(r[k] for r in per.values()) for k in ("items", "bytes", "deleted_items", "deleted_bytes")}


def cmd_du(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        name = target.name(args.name)
        info = _kind(target.backend, name)
        if not info.directory:
            out.result({"total": {"items": 1, "bytes": info.size}}, f"{_size(info.size, args.human):>12}  {args.name}")
            return 0
        per = _usage(target, name)
        total = _total(per)
        lines = []
        if not args.summarize:
            for key, row in sorted(per.items()):
                label = join(args.name, key) if key != "." else (args.name or ".") + " (items)"
                lines.append(f"{_size(row['bytes'], args.human):>12}  {row['items']:>8} items  {label}")
        lines.append(f"{_size(total['bytes'], args.human):>12}  {total['items']:>8} items  {args.name or '.'} total")
        out.result({"entries": per, "total": total}, "\n".join(lines))
    return 0


def _size(n: int, h: bool) -> str:
    return human(n) if h else str(n)


def cmd_stats(args: argparse.Namespace, out: Output) -> int:
    """Count items and bytes below a name, per top-level directory, soft-deleted ones apart."""
    with Session(args, out) as session:
        target = session.target()
        t = time.perf_counter()
        per = {k.rstrip("/"): v for k, v in _usage(target, target.name(args.name)).items()}
        total = _total(per)
        data = {"namespaces": per, "total": total, "quota": target.backend.quota(),
                "seconds": round(time.perf_counter() - t, 3)}
        lines = [f"{'namespace':<24}{'items':>10}{'bytes':>16}{'deleted':>10}{'deleted bytes':>16}"]
        for ns, r in sorted(per.items()) + [("TOTAL", total)]:
            lines.append(f"{ns:<24}{r['items']:>10}{r['bytes']:>16}{r['deleted_items']:>10}{r['deleted_bytes']:>16}")
        out.result(data, "\n".join(lines))
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("ls", help="list a directory of --url", conflict_handler="resolve")
    s.add_argument("name", nargs="?", default="")
    s.add_argument("-l", "--long", action="store_true", help="type, size, mtime and name")
    s.add_argument("-H", "--human", "-h", dest="human", action="store_true", help="human-readable sizes (with -l)")
    s.add_argument("-r", "-R", "--recursive", dest="recursive", action="store_true", help="every item below")
    s.add_argument("--deleted", action="store_true", help="only soft-deleted items")
    s.set_defaults(func=cmd_ls)
    s = sub.add_parser("info", help="size, type, times (and ETag, checksums, metadata) of NAME")
    s.add_argument("name")
    s.add_argument("--hash", action="store_true", help="also compute the sha256 of the content")
    s.set_defaults(func=cmd_info)
    s = sub.add_parser("rm", help="delete items; -r a directory and all below; --soft renames to NAME.del")
    s.add_argument("names", nargs="+")
    s.add_argument("-r", "--recursive", action="store_true", help="delete directories and everything in them")
    s.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    s.add_argument("--soft", action="store_true", help="soft delete (undelete brings it back)")
    s.set_defaults(func=cmd_rm)
    s = sub.add_parser("mv", help="rename an item (replaces an existing DST unless --no-clobber)")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("-n", "--no-clobber", action="store_true", help="do not replace an existing DST (exit 1)")
    s.set_defaults(func=cmd_mv)
    s = sub.add_parser("undelete", help="restore soft-deleted items")
    s.add_argument("names", nargs="+")
    s.set_defaults(func=cmd_undelete)
    s = sub.add_parser("du", help="bytes and items below NAME, per entry and in total", conflict_handler="resolve")
    s.add_argument("name", nargs="?", default="")
    s.add_argument("-H", "--human", "-h", dest="human", action="store_true", help="human-readable sizes")
    s.add_argument("-s", "--summarize", action="store_true", help="only the total")
    s.set_defaults(func=cmd_du)
    s = sub.add_parser("stats", help="count items and bytes per namespace")
    s.add_argument("name", nargs="?", default="")
    s.set_defaults(func=cmd_stats)
