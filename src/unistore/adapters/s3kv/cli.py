"""``unistore kv``: the s3kv store of any backend URL from the command line.

::

    unistore kv --url URL get KEY
    unistore kv --url URL set KEY VALUE|-|@FILE [--string | --bytes]
    unistore kv --url URL rm KEY...
    unistore kv --url URL ls [PREFIX]
    unistore kv --url URL tag KEY k=v...        (merges; "k=" sets an empty value; --remove K)
    unistore kv --url URL find k=v | k          (keys with that tag value, or with the tag)
    unistore kv --url URL hold KEY on|off
    unistore kv --url URL retain KEY DAYS|off

VALUE is JSON (``set cfg '{"a": 1}'``); ``--string`` stores it as a JSON string as given,
``--bytes`` stores the raw bytes (of ``-`` = stdin, or ``@FILE``). ``--url`` is a backend URL or a
named remote (``-o`` options, ``--encrypt-key-file`` and ``--compress`` apply as for every
``unistore`` command). ``--json`` prints machine-readable output. The command uses no local cache
unless ``--cache-ttl`` is given. Exit codes: 0 done, 1 failed (missing key, connection), 2 bad
input (one line on stderr).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

from ...errors import ConfigError
from .s3kv import S3KV, KeyNotFound


@contextlib.contextmanager
def _kv(args: argparse.Namespace) -> Iterator[S3KV]:
    """The S3KV on ``--url`` (a URL or named remote, with ``-o`` options and the encryption and
    compression options of the unistore command), closed afterwards."""
    from ...cli.locations import Session
    from ...cli.output import Output

    with Session(args, Output(bool(getattr(args, "json", False)))) as session:
        target = session.target()
        if target.prefix:
            raise ConfigError("unistore kv works on a whole store: give its URL, not a path inside it")
        ttl = getattr(args, "cache_ttl", None)
        with S3KV(backend=target.backend, enable_local_cache=ttl is not None, cache_ttl=ttl) as kv:
            yield kv


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True) if getattr(args, "json", False) else text)


def _jsonable(value: Any) -> Any:
    return {"base64": base64.b64encode(value).decode("ascii")} if isinstance(value, bytes) else value


def _read_source(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    if source.startswith("@"):
        path = source[1:]
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    return source.encode("utf-8")


def _value(args: argparse.Namespace) -> Any:
    raw = _read_source(args.value)
    if args.bytes:
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("the value is not UTF-8 text: use --bytes to store it as bytes") from None
    if args.string:
        return text
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"the value is not JSON (use --string to store text): {text[:60]!r}") from None


def _pairs(items: list[str]) -> dict[str, str]:
    tags = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ConfigError(f"a tag must be given as key=value, not {item!r}")
        tags[k] = v
    return tags


def cmd_get(args: argparse.Namespace) -> int:
    with _kv(args) as kv:
        value = kv[args.key]
    if getattr(args, "json", False):
        _print(args, {"key": args.key, "value": _jsonable(value)}, "")
    elif isinstance(value, bytes):
        sys.stdout.buffer.write(value)
        sys.stdout.flush()
    else:
        print(json.dumps(value, indent=2, ensure_ascii=False))
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    value = _value(args)
    with _kv(args) as kv:
        kv.add(args.key, value)
    _print(args, {"key": args.key, "stored": True}, f"stored {args.key}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    with _kv(args) as kv:
        missing = [key for key in args.keys if not kv.delete(key)]
    if missing:
        raise KeyNotFound(missing[0])
    _print(args, {"deleted": args.keys}, f"deleted {len(args.keys)} key(s)")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    with _kv(args) as kv:
        keys = kv.list_keys_with_prefix(args.prefix)
    _print(args, keys, "\n".join(keys))
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    changes: dict[str, str | None] = dict(_pairs(args.tags))
    changes.update({k: None for k in args.remove})
    if not changes:
        raise ConfigError("give at least one tag (key=value) or --remove KEY")
    with _kv(args) as kv:
        tags = kv.tag_key(args.key, changes)
    _print(args, {"key": args.key, "tags": tags}, "\n".join(f"{k}={v}" for k, v in sorted(tags.items())))
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    tag, sep, value = args.tag.partition("=")
    if not tag:
        raise ConfigError(f"give the tag as key=value or key, not {args.tag!r}")
    with _kv(args) as kv:
        keys = kv.find_keys_by_tag_value(tag, value if sep else None)
    _print(args, keys, "\n".join(keys))
    return 0


def cmd_hold(args: argparse.Namespace) -> int:
    with _kv(args) as kv:
        if args.state == "on":
            kv.apply_legal_hold(args.key)
        else:
            kv.release_legal_hold(args.key)
    _print(args, {"key": args.key, "legal_hold": args.state == "on"}, f"legal hold {args.state}: {args.key}")
    return 0


def cmd_retain(args: argparse.Namespace) -> int:
    off = args.days.lower() in ("off", "0")
    if not off:
        try:
            days = float(args.days)
        except ValueError:
            raise ConfigError(f"DAYS must be a number of days or 'off', not {args.days!r}") from None
        if days <= 0:
            raise ConfigError(f"DAYS must be > 0 (or 'off'), not {args.days!r}")
    with _kv(args) as kv:
        if off:
            kv.remove_retention_lock(args.key)
            _print(args, {"key": args.key, "retain_until": None}, f"retention removed: {args.key}")
        else:
            until = kv.place_retention_lock(args.key, days)
            _print(args, {"key": args.key, "retain_until": until.isoformat()}, f"retained until {until.isoformat()}")
    return 0


def _common() -> argparse.ArgumentParser:
    return _add_common(argparse.ArgumentParser(add_help=False))


def _add_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--url", default=argparse.SUPPRESS, help="backend URL ($UNISTORE_URL)")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    p.add_argument(
        "--cache-ttl",
        type=float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="use the local cache, revalidating entries older than this (default: no cache)",
    )
    return p


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``unistore kv get|set|rm|ls|tag|find|hold|retain`` to the ``unistore`` command."""
    common = _common()
    # "resolve": the unistore command may already give every command group --url and --json
    kv = subparsers.add_parser(
        "kv", help="s3kv-compatible JSON key/value store (s3kv/<key>.json)", conflict_handler="resolve"
    )
    _add_common(kv)
    sub = kv.add_subparsers(dest="kv_command", metavar="KV_COMMAND")
    sub.required = True

    def add(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, parents=[common])
        p.set_defaults(func=func)
        return p

    add("get", cmd_get, "print the value of KEY (JSON; bytes raw)").add_argument("key")
    s = add("set", cmd_set, "store VALUE (JSON, - for stdin, @FILE) as KEY")
    s.add_argument("key")
    s.add_argument("value", help="JSON text, - (stdin) or @FILE")
    kind = s.add_mutually_exclusive_group()
    kind.add_argument("--string", action="store_true", help="store the text as a JSON string")
    kind.add_argument("--bytes", action="store_true", help="store the raw bytes")
    add("rm", cmd_rm, "delete keys").add_argument("keys", nargs="+", metavar="KEY")
    add("ls", cmd_ls, "list keys (starting with PREFIX)").add_argument("prefix", nargs="?", default="")
    t = add("tag", cmd_tag, "merge tags into KEY")
    t.add_argument("key")
    t.add_argument("tags", nargs="*", metavar="K=V")
    t.add_argument("--remove", action="append", default=[], metavar="K", help="remove tag K")
    add("find", cmd_find, "keys with tag K=V (or with tag K)").add_argument("tag", metavar="K=V|K")
    h = add("hold", cmd_hold, "put KEY under legal hold, or release it")
    h.add_argument("key")
    h.add_argument("state", choices=["on", "off"])
    r = add("retain", cmd_retain, "lock KEY for DAYS days (GOVERNANCE), or remove the lock (off)")
    r.add_argument("key")
    r.add_argument("days", metavar="DAYS|off")
