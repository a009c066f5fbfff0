"""unistore: one key/value storage API over many backends."""

from .backends.base import Backend, ItemInfo
from .store import Store
from .url import open_backend

__version__ = "0.1.0"

__all__ = ["Backend", "ItemInfo", "Store", "open_backend", "__version__"]
