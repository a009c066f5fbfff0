"""``unistore synapse ...``: the ``s3_media_upload`` commands as a command group of ``unistore``."""

from __future__ import annotations

import argparse

from .upload import UsageError, add_arguments, run


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``unistore synapse update-db|check-deleted|update|write|upload`` to the ``unistore`` command."""
    parser = subparsers.add_parser(
        "synapse",
        help="Synapse media tools (the s3_media_upload commands: update-db, check-deleted, update, write, upload)",
        description="Offload a Synapse media store to a backend; the same commands as s3_media_upload.",
    )
    add_arguments(parser)

    def func(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as e:
            parser.error(str(e))
        return 0

    parser.set_defaults(func=func)
