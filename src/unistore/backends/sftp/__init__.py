"""``sftp://[user@]host[:port]/relative/path`` and ``sftp://[user@]host[:port]//absolute/path``.

An SFTP backend over paramiko, in five parts:

* ``config``: the URL, keyword options (unknown ones are a ConfigError), ``~/.ssh/config``
  (HostName, User, Port, IdentityFile, UserKnownHostsFile, ConnectTimeout, ServerAliveInterval,
  ProxyCommand, StrictHostKeyChecking), passwords kept in a :class:`~.config.Secret`, and the
  host-key policies: an unknown key is refused unless the caller passes it (``host_key``), opts in
  (``accept_unknown_host_key=True``: accepted, logged, not saved) or the ssh config says
  ``StrictHostKeyChecking accept-new`` (trust on first use: the key is written to known_hosts); a
  key that does not match a known one is always refused.
* ``pool``: ``channels`` SFTP channels over ``connections`` SSH connections; each call borrows one.
  A lost connection is dropped and the next call makes a new one; nothing here retries (wrap the
  backend in :class:`~unistore.layers.retry.RetryLayer` for that).
* ``protocol``: the wire protocol on one channel, the only place that calls paramiko's private API.
  Replies are collected by request id, so servers may answer pipelined requests in any order.
* ``batch``: pipelined batches for ``load_many``/``store_many``, and removing a tree.
* ``backend``: :class:`SFTPBackend` itself. Writes go to a temporary name in the target directory
  and are renamed into place with ``posix-rename@openssh.com`` (atomic replace). Every socket read
  has a timeout, connection set-up has its own, and keepalives are sent, so no call blocks forever.
"""

from .backend import SFTPBackend

__all__ = ["SFTPBackend"]
