"""``s3:`` and ``b2:``: Amazon S3 and S3-compatible services (SeaweedFS, MinIO, Ceph RGW, B2, Hetzner).

URL (borgstore's syntax, key and secret URL-unquoted)::

    (s3|b2):[profile|(access_key:secret)@][scheme://host[:port]]/bucket[/prefix]

Without credentials in the URL, boto3's own chain applies (environment, profile, IAM role).

Where to find what (read in this order):

* :mod:`.config` - the URL and every option, checked once (``S3Config``);
* :mod:`.backend` - ``S3Backend``: lifecycle, directories, items, move, streaming, bulk;
* :mod:`.boto3_engine` and :mod:`.obstore_engine` - the two client engines of the data path
  (obstore, Rust ``object_store``, about a tenth of boto3's CPU per request, when installed;
  boto3 always serves the control path);
* :mod:`.transfer` - parallel multipart upload (aborting only its own upload), ranged parallel
  download, multipart copy;
* :mod:`.listing` - paginated listings and batch deletes;
* :mod:`.capabilities` and :mod:`.multipart` - the optional capabilities, decided per instance;
* :mod:`.errors` - botocore/obstore exceptions -> :mod:`unistore.errors`;
* :mod:`.redact` - secrets out of reprs and every log record;
* :mod:`.streams` - stream adaptors.

Directories are zero-byte ``dir/`` markers written by ``mkdir`` (like borgstore), so an empty
directory can be told from a missing one; items imply their parent directories.
"""

from .backend import S3Backend

__all__ = ["S3Backend"]
