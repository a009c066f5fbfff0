"""The ``unistore`` command: one module per command group, plugins through the ``unistore.cli`` entry points.

=================  ==================================================================
module             commands
=================  ==================================================================
transfer_cmds      cp, sync, check, put, get
item_cmds          ls, info, rm, mv, undelete, du, stats
object_cmds        presign, tag get|set|rm|find, multipart ls|cleanup
store_cmds         create, destroy, demo, bench
remote_cmds        remote add|ls|rm, completion
=================  ==================================================================

The parts behind them: :mod:`.main` (parser, plugins, error contract), :mod:`.output` (exit codes,
one-line errors, ``--json``), :mod:`.locations` (URLs, remotes, ``-o``), :mod:`.config` (the
remotes file and credentials), :mod:`.tree` and :mod:`.transfer` (copy planning and running),
:mod:`.progress` (progress and Ctrl-C), :mod:`.logs` (``-v``, ``--log-file``, secret scrubbing).
"""

from .main import build_parser, main
from .output import UsageError

__all__ = ["UsageError", "build_parser", "main"]
