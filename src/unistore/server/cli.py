"""``unistore serve``: borgstore-server-rest's flags, so a unit file switches by its command name.

    unistore serve --backend file:///srv/repo --host 127.0.0.1 --port 5618 --username borg --password ...
    unistore serve --stdio --backend FILE:relative/path        # what rest:// URLs run over ssh

Also runnable as ``python -m unistore.server``. The password may come from ``$UNISTORE_SERVE_PASSWORD``
instead of the command line (where other users can read it in the process list).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .app import Limits
from .runner import build_server, resolve_permissions, serve_stdio, serve_tcp


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", required=True, help="backend URL to serve (FILE:path: relative to the cwd)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5618, help="port to listen on (default 5618)")
    p.add_argument("--username", help="basic auth user name")
    p.add_argument("--password", help="basic auth password ($UNISTORE_SERVE_PASSWORD)")
    p.add_argument("--permissions", help="a shortcut (borgbackup-all, -no-delete, -write-only, -read-only) or JSON")
    p.add_argument("--quota", type=int, default=None, help="quota in bytes (file: backends)")
    p.add_argument("--socket-activation", action="store_true", help="use the socket systemd passes (LISTEN_FDS)")
    p.add_argument("--stdio", action="store_true", help="serve one client on stdin/stdout")
    p.add_argument("--tls-cert", help="serve https with this certificate (PEM, chain)")
    p.add_argument("--tls-key", help="the certificate's private key (PEM)")
    p.add_argument("--max-body", type=int, default=Limits.max_body, help="largest upload in bytes")
    p.add_argument("--body-timeout", type=float, default=Limits.body_timeout, help="seconds a body may stall")
    p.add_argument("--threads", type=int, default=Limits.threads, help="backend calls at once")


def cmd_serve(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("unistore.server").setLevel(logging.INFO)
    password = args.password or os.environ.get("UNISTORE_SERVE_PASSWORD")
    limits = Limits(max_body=args.max_body, body_timeout=args.body_timeout, threads=max(1, args.threads))
    server = build_server(
        args.backend,
        username=args.username,
        password=password,
        permissions=resolve_permissions(args.permissions),
        quota=args.quota,
        limits=limits,
    )
    if args.stdio:
        serve_stdio(server)
    else:
        serve_tcp(
            server,
            args.host,
            args.port,
            socket_activation=args.socket_activation,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``unistore serve`` to the ``unistore`` command."""
    p = subparsers.add_parser("serve", help="serve a backend over borgstore's REST protocol")
    add_arguments(p)
    p.set_defaults(func=cmd_serve)


def main(argv: Sequence[str] | None = None) -> int:
    from ..errors import UnistoreError

    parser = argparse.ArgumentParser(prog="unistore serve", description="unistore REST server")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except UnistoreError as e:
        print(f"unistore serve: error: {e}", file=sys.stderr)
        return 2
