"""``remote add|ls|rm`` (named remotes, see :mod:`unistore.cli.config`) and ``completion``."""

from __future__ import annotations

import argparse
import re
from typing import Any
from urllib.parse import unquote

from ..url import open_backend, redact, split_query, url_scheme
from .config import REMOTE_NAME, add_remote, config_path, credentials_path, is_secret, load_remotes, remove_remote
from .locations import parse_options
from .output import Output, UsageError

_S3_CRED = re.compile(r"^(?P<scheme>s3|b2):(?P<key>[^:@/]+):(?P<secret>.+)@(?P<rest>[a-z]+://.*)$", re.I | re.S)
_USERINFO = re.compile(r"^(?P<head>[a-z0-9+.-]+://)(?P<user>[^:@/]*):(?P<pw>.*)@(?P<rest>[^@]*)$", re.I | re.S)


def split_secrets(url: str) -> tuple[str, dict[str, str]]:
    """The URL without the secret it holds, and that secret as options (s3 keys, an sftp password)."""
    m = _S3_CRED.match(url)
    if m:
        return (f"{m.group('scheme')}:{m.group('rest')}",
                {"access_key": unquote(m.group("key")), "secret_key": unquote(m.group("secret"))})
    m = _USERINFO.match(url)
    if m and url_scheme(url) == "sftp":
        return f"{m.group('head')}{m.group('user')}@{m.group('rest')}", {"password": unquote(m.group("pw"))}
    return url, {}


def cmd_remote(args: argparse.Namespace, out: Output) -> int:
    if args.remote_command == "ls":
        remotes = load_remotes()
        rows: list[dict[str, Any]] = []
        for r in remotes.values():
            shown = {k: "***" if is_secret(k) else v for k, v in r.all_options().items()}
            rows.append({"name": r.name, "url": redact(r.url), "options": shown,
                         "secrets_from": dict(r.secret_sources)})
        lines = []
        for row in rows:
            opts = " ".join(f"{k}={v}" for k, v in sorted(row["options"].items()))
            lines.append(f"{row['name']:<16} {row['url']}" + (f"  {opts}" if opts else ""))
        out.result(rows, "\n".join(lines) if lines else f"no remotes in {config_path()}")
        return 0
    if args.remote_command == "rm":
        remove_remote(args.name)
        out.result({"removed": args.name}, f"removed remote {args.name}")
        return 0
    name = args.name
    if not REMOTE_NAME.match(name):
        raise UsageError(f"remote names are letters, digits, '-' and '_', starting with a letter: {name!r}")
    if url_scheme(name + ":") is not None:
        raise UsageError(f"{name!r} is a backend scheme: choose another remote name")
    if url_scheme(args.url) is None:
        raise UsageError(f"{args.url!r} is not a backend URL")
    base, query = split_query(args.url)
    plain, secrets = split_secrets(base)
    options = {**query, **parse_options(args.remote_option)}
    for key in [k for k in options if is_secret(k)]:
        secrets[key] = options.pop(key)
    open_backend(plain, **{**options, **secrets})  # validates the URL and every option now
    add_remote(name, plain, options, secrets)
    where = f" (secrets in {credentials_path()})" if secrets else ""
    out.result({"added": name, "url": redact(plain), "secret_options": sorted(secrets)},
               f"added remote {name}: {redact(plain)}{where}")
    return 0


def cmd_completion(args: argparse.Namespace, out: Output) -> int:
    import argcomplete

    print(argcomplete.shellcode(["unistore"], shell=args.shell))
    return 0


def remote_completer(prefix: str, **kwargs: Any) -> list[str]:
    """Named remotes (``NAME:``) for locations; argcomplete adds local files."""
    try:
        names = [f"{n}:" for n in load_remotes()]
    except Exception:
        names = []
    return [n for n in names if n.startswith(prefix)]


def register(sub: Any) -> None:
    r = sub.add_parser("remote", help="named remotes: add, ls, rm (~/.config/unistore/config.toml)")
    rsub = r.add_subparsers(dest="remote_command", metavar="REMOTE_COMMAND")
    rsub.required = True
    a = rsub.add_parser("add", help="add NAME for URL; secrets go to credentials.toml (0600)")
    a.add_argument("name")
    a.add_argument("url")
    a.add_argument("-o", "--option", dest="remote_option", action="append", metavar="KEY=VALUE",
                   help="a backend option to keep with the remote")
    rsub.add_parser("ls", help="list remotes (secrets shown as ***)")
    d = rsub.add_parser("rm", help="remove a remote and its secrets")
    d.add_argument("name").completer = remote_completer  # type: ignore[attr-defined]
    r.set_defaults(func=cmd_remote)
    c = sub.add_parser("completion", help="print the shell completion script (bash, zsh, fish)")
    c.add_argument("shell", choices=("bash", "zsh", "fish"))
    c.set_defaults(func=cmd_completion)
