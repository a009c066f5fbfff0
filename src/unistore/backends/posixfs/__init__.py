"""``file:///abs/path``: the local filesystem backend (see backend.py; directory descriptors in
dirs.py, quota accounting in quota.py, crash recovery in sessions.py)."""

from .backend import MAX_NAME_BYTES, PosixFS
from .quota import QUOTA_FILE

__all__ = ["MAX_NAME_BYTES", "QUOTA_FILE", "PosixFS"]
