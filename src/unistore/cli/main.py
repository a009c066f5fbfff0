"""The ``unistore`` parser, plugin command groups, and ``main()`` with its error contract.

Command groups of adapters and features come from the entry-point group ``unistore.cli``: each
value is a ``register(subparsers)`` callable that receives the argparse sub-parsers action and adds
its parsers (``unistore.adapters.zodb.cli:register`` is the model). Every parser added that way,
at any depth, also accepts the global options after its command (``--url``, ``--json``, ``-q``,
``-v``, ``-o``, ``--log-file``). Plugins load only when the command line asks for one of them, for
help, or for completion, so the built-in commands start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, NoReturn

from .. import __version__
from . import item_cmds, logs, object_cmds, remote_cmds, store_cmds, transfer_cmds
from .output import EXIT_INTERRUPTED, Interrupted, Output

ENTRY_POINT_GROUP = "unistore.cli"
#: used when the package metadata declares no such entry point (running from a source tree)
FALLBACK_PLUGINS = {"zodb": "unistore.adapters.zodb.cli:register"}
BUILTIN_COMMANDS = frozenset(
    {"cp", "sync", "check", "put", "get", "ls", "info", "rm", "mv", "undelete", "du", "stats", "presign", "tag",
     "multipart", "remote", "completion", "create", "destroy", "demo", "bench"}
)
_VALUE_OPTIONS = frozenset({"--url", "-o", "--option", "--log-file", "--encrypt-key-file", "--compress"})


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr (and a JSON object with --json), exit 2."""

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: error: {message} (see {self.prog} --help)"
        print(line, file=sys.stderr)
        if _JSON_REQUESTED[0]:
            print(json.dumps({"error": {"type": "UsageError", "message": message, "exit_code": 2}}))
        sys.exit(2)


_JSON_REQUESTED = [False]


def _common_options(parser: argparse.ArgumentParser, top: bool) -> argparse.ArgumentParser:
    # accepted before and after the command; the sub-parsers' copies only override when given
    def d(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    parser.add_argument("--url", default=d(None), metavar="URL|REMOTE[:PATH]",
                        help="backend URL or named remote ($UNISTORE_URL)").completer = remote_cmds.remote_completer  # type: ignore[attr-defined]
    parser.add_argument("-o", "--option", action="append", default=d(None), metavar="KEY=VALUE",
                        help="backend option, e.g. -o region=eu-west-1 (repeatable)")
    parser.add_argument("--json", action="store_true", default=d(False), help="machine-readable output")
    parser.add_argument("-q", "--quiet", action="store_true", default=d(False), help="no progress bars")
    parser.add_argument("-v", "--verbose", action="count", default=d(0),
                        help="-v: unistore's operations with time and volume; -vv: also the engines' logs")
    parser.add_argument("--log-file", default=d(None), metavar="FILE", help="also write the log to FILE")
    parser.add_argument("--encrypt-key-file", default=d(None), metavar="FILE",
                        help="encrypt values client-side with this 32-byte key ($UNISTORE_ENCRYPT_KEY_FILE)")
    parser.add_argument("--compress", default=d(None), metavar="zstd[:LEVEL]", help="compress values client-side")
    return parser


def _common() -> argparse.ArgumentParser:
    # a new one per sub-parser: "resolve" conflict handling edits the actions it shares with a parent
    return _common_options(Parser(add_help=False), False)


def _patch(sub: Any) -> Any:
    """Make ``sub.add_parser`` add the global options, at every depth (also for plugins)."""
    original: Callable[..., argparse.ArgumentParser] = sub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        kw["parents"] = [_common(), *kw.get("parents", [])]
        kw.setdefault("conflict_handler", "resolve")
        parser = original(name, **kw)
        original_add_subparsers = parser.add_subparsers

        def add_subparsers(**skw: Any) -> Any:
            return _patch(original_add_subparsers(**skw))

        parser.add_subparsers = add_subparsers  # type: ignore[method-assign]
        return parser

    sub.add_parser = add_parser
    return sub


def _plugins() -> dict[str, str]:
    table = dict(FALLBACK_PLUGINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        table[ep.name] = ep.value
    return table


def _load_plugins(sub: Any) -> None:
    import importlib

    for name, target in sorted(_plugins().items()):
        module_name, _, attr = target.partition(":")
        try:
            register = getattr(importlib.import_module(module_name), attr or "register")
        except ImportError as e:  # that adapter's extra is not installed
            logs.log.debug("command group %s not available: %s", name, e)
            continue
        register(sub)


def _first_command(argv: Sequence[str]) -> str | None:
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _VALUE_OPTIONS:
            skip = True
            continue
        if arg.startswith("-"):
            continue
        return arg
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The full parser; plugins are left out when ``argv`` runs a built-in command."""
    p = _common_options(
        Parser(
            prog="unistore",
            description="Copy, sync and manage data on any unistore backend (local, sftp, s3, rclone, ...).",
            epilog="See docs/cli.md. Exit codes: 0 ok, 1 failed, 2 bad input, 130 interrupted.",
        ),
        True,
    )
    p.add_argument("--version", action="version", version=f"unistore {__version__}")
    sub = _patch(p.add_subparsers(dest="command", metavar="COMMAND"))
    sub.required = True
    transfer_cmds.register(sub, remote_cmds.remote_completer)
    item_cmds.register(sub)
    object_cmds.register(sub)
    store_cmds.register(sub)
    remote_cmds.register(sub)
    completing = "_ARGCOMPLETE" in os.environ
    if completing or argv is None or _first_command(argv) not in BUILTIN_COMMANDS:
        _load_plugins(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _JSON_REQUESTED[0] = "--json" in argv
    parser = build_parser(argv)
    if "_ARGCOMPLETE" in os.environ:
        import argcomplete

        argcomplete.autocomplete(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error already printed on one line
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    out = Output(getattr(args, "json", False))
    try:
        logs.setup(args.verbose or 0, args.log_file)
    except OSError as e:
        return out.error(e)
    func = args.func
    try:
        try:
            if _takes_output(func):
                return int(func(args, out))
            return int(func(args))  # a plugin's command: func(args)
        except KeyboardInterrupt:
            raise Interrupted("interrupted") from None
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except Interrupted as e:
        code = out.error(e)
        _flush()
        os._exit(code if code else EXIT_INTERRUPTED)  # worker threads may still sit in a network call
    except Exception as e:
        logs.log.debug("command failed", exc_info=True)
        return out.error(e)


def _takes_output(func: Callable[..., Any]) -> bool:
    return getattr(func, "__module__", "").startswith("unistore.cli.")


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass
