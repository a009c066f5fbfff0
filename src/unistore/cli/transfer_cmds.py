"""``cp``, ``sync``, ``check``, ``put`` and ``get``: moving bytes between local files and backends.

A location is a local path, a backend URL or a named remote ``NAME:path``. ``cp -r SRC DST`` and
``sync SRC DST`` copy the *contents* of SRC into DST (as rclone does). Files already present at the
destination with the same size and not older than the source are skipped, so an interrupted ``cp``
resumes where it stopped (``--ignore-times`` copies everything). Without ``-r``, SRC names one item:
``remote:dir/item``, ``URL/item`` or a local file; a DST ending in ``/`` (or an existing directory)
receives it under its own name.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from ..errors import ObjectNotFound, ReadRangeError
from ..names import check_name, join
from .locations import Session, Target, check_user_name, parent_url
from .output import Output, UsageError
from .progress import Cancel, Progress, ProgressReader, ProgressWriter, human
from .transfer import Plan, Runner, copy_jobs, differs, plan, summary_data, summary_text
from .tree import Filters, Side, TempFiles, digest_algorithm, hidden_name, open_local_source

DEFAULT_TRANSFERS = 8


# ----------------------------------------------------------------- resolving locations
def _is_backend(spec: str) -> bool:
    """A ``:`` before the first ``/`` makes a remote or a URL, unless the path exists locally."""
    return not (os.path.exists(spec) or spec.startswith(("/", "./", "../", "~")) or ":" not in spec.split("/", 1)[0])


def tree_side(session: Session, spec: str, *, create: bool) -> Side:
    if not _is_backend(spec):
        return Side(local=os.path.expanduser(spec))
    url, options, path = session.resolve(spec)
    return Side(target=session.open(url, options, path, create=create))


def _dir_exists(target: Target) -> bool:
    try:
        info = target.backend.info(target.prefix) if target.prefix else None
        if info is not None:
            return bool(info.exists and info.directory)
        next(iter(target.backend.list("")), None)
        return True
    except ObjectNotFound:
        return False


def item_side(session: Session, spec: str) -> tuple[Side, str]:
    """A single source item: ``(side, relative name)``."""
    if not _is_backend(spec):
        path = os.path.expanduser(spec)
        if os.path.isdir(path):
            raise UsageError(f"{spec} is a directory: use cp -r to copy a tree")
        return Side(local=os.path.dirname(os.path.abspath(path))), os.path.basename(path)
    url, options, path = session.resolve(spec)
    if path:
        parent, _, base = path.rpartition("/")
        return Side(target=session.open(url, options, parent)), base
    split = parent_url(url)
    if split is None:
        raise UsageError(f"{spec} names a whole store: name an item in it, or use cp -r")
    return Side(target=session.open(split[0], options)), split[1]


def dest_side(session: Session, spec: str, src_base: str) -> tuple[Side, str]:
    """Where a single item goes: ``(side, relative name)``."""
    if not _is_backend(spec):
        path = os.path.expanduser(spec)
        if spec.endswith("/") or os.path.isdir(path):
            return Side(local=path), src_base
        return Side(local=os.path.dirname(os.path.abspath(path))), os.path.basename(path)
    url, options, path = session.resolve(spec)
    if session.is_named_remote(spec):
        target = session.open(url, options, "", create=True)
        if not path or spec.endswith("/"):
            return Side(target=target), join(path, src_base)
        if _dir_exists(Target(target.backend, path, target.label)):
            return Side(target=target), join(path, src_base)
        return Side(target=target), path
    if spec.endswith("/"):
        return Side(target=session.open(url, options, create=True)), src_base
    split = parent_url(url)
    if split is not None:
        try:
            root = session.open(url, options)
            if _dir_exists(root):
                return Side(target=root), src_base
        except Exception:  # not a store of its own: the last segment is the item's name
            pass
        return Side(target=session.open(split[0], options, create=True)), split[1]
    return Side(target=session.open(url, options, create=True)), src_base


def _refuser(dst: Side) -> Any:
    if dst.local is not None:
        return None

    def refuse(rel: str) -> bool:
        try:
            check_name(dst.where(rel))
        except Exception:
            return True
        return hidden_name(rel)

    return refuse


# ----------------------------------------------------------------- commands
def _filters(args: argparse.Namespace) -> Filters:
    return Filters(args.include, args.exclude)


def _report_failures(out: Output, failed: list[tuple[str, BaseException]]) -> None:
    for name, exc in failed[:50]:
        print(f"unistore: failed: {name}: {type(exc).__name__}: {' '.join(str(exc).split())}", file=sys.stderr)
    if len(failed) > 50:
        print(f"unistore: ... and {len(failed) - 50} more failures", file=sys.stderr)


def _run_tree(args: argparse.Namespace, out: Output, *, delete: bool, verb: str) -> int:
    with Session(args, out) as session:
        src = tree_side(session, args.src, create=False)
        if src.local is not None and not os.path.isdir(src.local):
            if os.path.exists(src.local):
                raise UsageError(f"{args.src} is a file: copy it without -r")
            raise FileNotFoundError(2, "no such file or directory", args.src)
        dst = tree_side(session, args.dst, create=not args.dry_run)
        cancel = Cancel()
        src_files = src.list_tree()
        if src.target is not None and not src_files:
            if not _dir_exists(src.target):
                raise ObjectNotFound(src.label)
        dst_files = dst.list_tree() if (delete or not args.ignore_times or args.no_clobber) else {}
        p = plan(
            src_files,
            dst_files,
            src,
            dst,
            filters=_filters(args),
            no_clobber=args.no_clobber,
            checksum=getattr(args, "checksum", False),
            ignore_existing_check=args.ignore_times,
            delete=delete,
            refuse=_refuser(dst),
            cancel=cancel,
        )
        if p.refused:
            shown = ", ".join(p.refused[:5]) + (f" and {len(p.refused) - 5} more" if len(p.refused) > 5 else "")
            raise UsageError(
                f"refusing {len(p.refused)} name(s) the destination would hide or reject: {shown} "
                "(skip them with --exclude)"
            )
        if args.dry_run:
            return _dry_run(out, p)
        progress = Progress(p.copy_bytes, len(p.copy), enabled=Progress.wanted(out.json, args.quiet), desc=verb)
        runner = Runner(args.transfers, progress, cancel)
        try:
            outcome = runner.run(copy_jobs(src, dst, [(rel, rel, e) for rel, e in p.copy], runner))
            deleted = 0
            if p.delete and not outcome.failed:
                deleted = _delete_extras(dst, p.delete, runner)
        finally:
            progress.close()
        _report_failures(out, outcome.failed)
        out.result(summary_data(outcome, p, deleted), summary_text(verb, outcome, p, deleted))
        return 1 if outcome.failed else 0


def _delete_extras(dst: Side, rels: list[str], runner: Runner) -> int:
    jobs: list[tuple[str, Callable[[], int]]] = []
    for rel in rels:

        def job(rel: str = rel) -> int:
            dst.delete(rel)
            return 0

        jobs.append((f"delete {rel}", job))
    done = runner.run(jobs)
    return done.files


def _dry_run(out: Output, p: Plan) -> int:
    lines = [f"would copy {rel} ({human(e.size)})" for rel, e in p.copy]
    lines += [f"would delete {rel}" for rel in p.delete]
    lines.append(f"{len(p.copy)} to copy ({human(p.copy_bytes)}), {len(p.delete)} to delete, {p.unchanged} unchanged")
    out.result(
        {"copy": [{"name": r, "size": e.size} for r, e in p.copy], "delete": p.delete, "unchanged": p.unchanged,
         "dry_run": True},
        "\n".join(lines),
    )
    return 0


def cmd_cp(args: argparse.Namespace, out: Output) -> int:
    if args.recursive:
        return _run_tree(args, out, delete=False, verb="copied")
    with Session(args, out) as session:
        src, src_rel = item_side(session, args.src)
        entry = src.entry(src_rel)
        if entry is None:
            if src.local is not None:
                raise FileNotFoundError(2, "no such file or directory", args.src)
            if _dir_exists(Target(src.backend, src.where(src_rel), src.label)):
                raise UsageError(f"{args.src} is a directory: use cp -r")
            raise ObjectNotFound(args.src)
        dst, dst_rel = dest_side(session, args.dst, src_rel)
        if dst.target is not None:
            check_user_name(dst.where(dst_rel), writing=True, what="destination")
        existing = dst.entry(dst_rel) if (args.no_clobber or not args.ignore_times) else None
        if existing is not None and args.no_clobber:
            out.result({"files": 0, "skipped": dst_rel, "reason": "exists"},
                       f"not copied: {args.dst} exists (--no-clobber)")
            return 0
        if args.dry_run:
            out.result({"copy": [{"name": dst_rel, "size": entry.size}], "dry_run": True},
                       f"would copy {args.src} -> {dst.label}/{dst_rel} ({human(entry.size)})")
            return 0
        cancel = Cancel()
        if existing is not None and not differs(src, dst, src_rel, entry, existing, checksum=False, size_only=False,
                                                 cancel=cancel):
            out.result({"files": 0, "unchanged": 1}, f"unchanged: {args.dst} (same size, not older)")
            return 0
        progress = Progress(entry.size, 1, enabled=Progress.wanted(out.json, args.quiet), desc=src_rel)
        runner = Runner(1, progress, cancel)
        try:
            outcome = runner.run(copy_jobs(src, dst, [(src_rel, dst_rel, entry)], runner))
        finally:
            progress.close()
        if outcome.failed:
            raise outcome.failed[0][1]
        out.result(summary_data(outcome), summary_text("copied", outcome))
        return 0


def cmd_sync(args: argparse.Namespace, out: Output) -> int:
    return _run_tree(args, out, delete=args.delete, verb="synced")


def cmd_check(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        src = tree_side(session, args.src, create=False)
        dst = tree_side(session, args.dst, create=False)
        filters = _filters(args)
        s_files = {k: v for k, v in src.list_tree().items() if filters(k)}
        d_files = {k: v for k, v in dst.list_tree().items() if filters(k)}
        cancel = Cancel()
        missing = sorted(set(s_files) - set(d_files))
        extra = sorted(set(d_files) - set(s_files))
        differ: list[str] = []
        common = sorted(set(s_files) & set(d_files))
        algorithm = digest_algorithm(src, dst)
        for rel in common:
            s, d = s_files[rel], d_files[rel]
            if s.size != d.size or (
                not args.size_only and src.digest(rel, cancel, algorithm) != dst.digest(rel, cancel, algorithm)
            ):
                differ.append(rel)
        lines = [f"missing on {dst.label}: {r}" for r in missing]
        lines += [f"only on {dst.label}: {r}" for r in extra]
        lines += [f"differs: {r}" for r in differ]
        same = len(common) - len(differ)
        lines.append(f"{same} identical, {len(differ)} differ, {len(missing)} missing, {len(extra)} extra")
        out.result({"identical": same, "differ": differ, "missing": missing, "extra": extra}, "\n".join(lines))
        return 1 if (missing or extra or differ) else 0


def cmd_put(args: argparse.Namespace, out: Output) -> int:
    with Session(args, out) as session:
        target = session.target()
        name = check_user_name(target.name(args.name), writing=True)
        to_stdin = args.file in (None, "-")
        src = sys.stdin.buffer if to_stdin else open_local_source(args.file)
        try:
            size = None if to_stdin else os.fstat(src.fileno()).st_size
            progress = Progress(size, 1, enabled=Progress.wanted(out.json, args.quiet), desc=args.name)
            runner = Runner(1, progress)

            def job() -> int:
                reader = ProgressReader(src, progress, runner.cancel, seekable=not to_stdin)
                target.backend.store_file(name, reader, size=size)  # type: ignore[arg-type]
                return reader._high

            try:
                outcome = runner.run([(name, job)])
            finally:
                progress.close()
        finally:
            if not to_stdin:
                src.close()
        if outcome.failed:
            raise outcome.failed[0][1]
        stored = outcome.bytes
        out.result(
            {"name": args.name, "size": stored, "seconds": round(outcome.seconds, 3)},
            f"stored {args.name}: {stored} bytes in {outcome.seconds:.2f}s",
        )
        return 0


def cmd_get(args: argparse.Namespace, out: Output) -> int:
    if args.size is not None and args.size < 0:
        raise UsageError(f"--size must be >= 0, not {args.size}")
    with Session(args, out) as session:
        target = session.target()
        name = check_user_name(target.name(args.name))
        info = target.backend.info(name)
        if not info.exists:
            raise ObjectNotFound(args.name)
        if info.directory:
            raise UsageError(f"{args.name} is a directory: use cp -r to fetch a tree")
        if args.offset < 0 and -args.offset > info.size:
            raise UsageError(f"--offset {args.offset} reaches before the start of {args.name} ({info.size} bytes)")
        if args.offset > info.size:
            raise UsageError(f"--offset {args.offset} is beyond the end of {args.name} ({info.size} bytes)")
        start = args.offset if args.offset >= 0 else info.size + args.offset
        length = info.size - start if args.size is None else min(args.size, info.size - start)
        to_stdout = args.file in (None, "-")
        progress = Progress(length, 1, enabled=Progress.wanted(out.json, args.quiet) and not to_stdout, desc=args.name)
        runner = Runner(1, progress)
        path = ""
        if not to_stdout:
            path = os.path.join(args.file, os.path.basename(name)) if os.path.isdir(args.file) else args.file

        def job() -> int:
            if to_stdout:
                writer = ProgressWriter(sys.stdout.buffer, progress, runner.cancel)
                n = target.backend.load_file(name, writer, offset=start, size=length)  # type: ignore[arg-type]
                sys.stdout.buffer.flush()
                return int(n)
            return _get_to_file(target, name, path, start, length, progress, runner.cancel, runner.temps)

        try:
            outcome = runner.run([(name, job)])
        finally:
            progress.close()
        if outcome.failed:
            raise outcome.failed[0][1]
        if not to_stdout:
            out.result({"name": args.name, "size": outcome.bytes, "file": path},
                       f"wrote {outcome.bytes} bytes to {path}")
        return 0


def _get_to_file(
    target: Target, name: str, path: str, start: int, length: int, progress: Progress, cancel: Cancel,
    temps: TempFiles,
) -> int:
    import secrets

    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.part")
    temps.add(tmp)
    try:
        with open(tmp, "xb") as f:
            writer = ProgressWriter(f, progress, cancel)
            n = target.backend.load_file(name, writer, offset=start, size=length)  # type: ignore[arg-type]
        if n != length:
            raise ReadRangeError(f"{name}: got {n} of {length} bytes")
        cancel.check()
        os.replace(tmp, path)
        return int(n)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    finally:
        temps.discard(tmp)


# ----------------------------------------------------------------- parsers
def _tree_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="only show what would be done")
    p.add_argument("--include", action="append", metavar="GLOB", help="only names matching GLOB (repeatable)")
    p.add_argument("--exclude", action="append", metavar="GLOB", help="skip names matching GLOB (repeatable)")
    p.add_argument("--no-clobber", action="store_true", help="never replace an existing destination file")
    p.add_argument("--ignore-times", action="store_true", help="copy even files that look unchanged")
    p.add_argument("--transfers", type=int, default=DEFAULT_TRANSFERS, metavar="N",
                   help=f"concurrent file transfers (default {DEFAULT_TRANSFERS})")


def register(sub: Any, location_completer: Any) -> None:
    p = sub.add_parser("cp", help="copy a file or (-r) a tree between local paths, URLs and remotes")
    p.add_argument("src", help="local path, URL or NAME:path").completer = location_completer
    p.add_argument("dst", help="local path, URL or NAME:path").completer = location_completer
    p.add_argument("-r", "--recursive", action="store_true", help="copy the contents of SRC into DST")
    _tree_options(p)
    p.set_defaults(func=cmd_cp)

    p = sub.add_parser("sync", help="make DST like SRC (size+mtime, or --checksum), --delete removes extras")
    p.add_argument("src").completer = location_completer
    p.add_argument("dst").completer = location_completer
    p.add_argument("--checksum", action="store_true", help="compare content, not size and mtime")
    p.add_argument("--delete", action="store_true", help="delete destination files missing from SRC")
    _tree_options(p)
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("check", help="report what differs between SRC and DST (exit 1 if anything does)")
    p.add_argument("src").completer = location_completer
    p.add_argument("dst").completer = location_completer
    p.add_argument("--size-only", action="store_true", help="compare sizes only, not content")
    p.add_argument("--include", action="append", metavar="GLOB")
    p.add_argument("--exclude", action="append", metavar="GLOB")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("put", help="store a file (or stdin) as NAME in --url")
    p.add_argument("name")
    p.add_argument("file", nargs="?", help="file to read, - or nothing for stdin")
    p.set_defaults(func=cmd_put)

    p = sub.add_parser("get", help="write item NAME of --url to a file (or stdout)")
    p.add_argument("name")
    p.add_argument("file", nargs="?", help="file to write, - or nothing for stdout")
    p.add_argument("--offset", type=int, default=0, help="start here (negative: from the end)")
    p.add_argument("--size", type=int, default=None, help="at most this many bytes")
    p.set_defaults(func=cmd_get)

