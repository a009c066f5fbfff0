"""``unistore reencrypt``: rewrite the items of a store under a new encryption key (key rotation).

    unistore reencrypt --url URL --encrypt-key-file NEW.key --old-key-file OLD.key [PREFIX]

Every item below PREFIX (default: everything) whose header names another key than NEW is decrypted
with the old key and rewritten with the new one, streamed; items already under NEW are only
checked, so an interrupted run resumes where it stopped. Plugged into the ``unistore`` command
through the entry-point group ``unistore.cli``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import ConfigError
from ..url import open_backend
from .encrypt import EncryptLayer


def cmd_reencrypt(args: argparse.Namespace) -> int:
    url = getattr(args, "url", None) or os.environ.get("UNISTORE_URL")
    if not url:
        raise ConfigError("no backend URL: pass --url or set UNISTORE_URL")
    key_file = getattr(args, "encrypt_key_file", None) or os.environ.get("UNISTORE_ENCRYPT_KEY_FILE")
    if not key_file:
        raise ConfigError("reencrypt needs the new key: --encrypt-key-file FILE")
    if not args.old_key_file:
        raise ConfigError("reencrypt needs at least one --old-key-file FILE")
    backend = open_backend(url)
    layer = EncryptLayer(backend, key_file=key_file, old_keys=list(args.old_key_file))
    bar = None
    as_json = getattr(args, "json", False)
    if sys.stderr.isatty() and not as_json and not getattr(args, "quiet", False):
        from tqdm import tqdm

        bar = tqdm(unit="item", desc="reencrypt", file=sys.stderr)
    with layer:
        try:
            rewritten, kept = layer.reencrypt(args.prefix, progress=bar)
        finally:
            if bar is not None:
                bar.close()
    if as_json:
        print(json.dumps({"rewritten": rewritten, "kept": kept, "key_id": layer.key_id.hex()}))
    else:
        print(f"rewritten {rewritten}, already under key {layer.key_id.hex()}: {kept}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``unistore reencrypt`` to the ``unistore`` command."""
    p = subparsers.add_parser("reencrypt", help="rewrite items under a new encryption key (resumable)")
    p.add_argument("prefix", nargs="?", default="", help="only items below this prefix")
    # the new key is the global --encrypt-key-file ($UNISTORE_ENCRYPT_KEY_FILE)
    p.add_argument("--old-key-file", action="append", default=[], help="a key items may still be under (repeatable)")
    p.set_defaults(func=cmd_reencrypt)
