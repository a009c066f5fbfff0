"""s3kv adapter: s3kv 0.1.5's dict-style JSON key/value API on any unistore backend.

Migrating from s3kv is a change of import: ``from unistore.adapters.s3kv import S3KV``.
"""

from .capabilities import KeyNotFound
from .codec import check_key
from .s3kv import S3KV

__all__ = ["S3KV", "KeyNotFound", "check_key"]
