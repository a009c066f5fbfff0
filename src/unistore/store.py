"""Store: borgstore 0.7's key/value API (namespaces, nesting, soft delete) over any Backend.

The Store is only about names: it validates keys, maps them to nested backend names and back, and
implements soft delete as a rename to ``<name>.del``. Timing and volume statistics come from a
:class:`~unistore.layers.stats.StatsLayer` it puts around the backend, latency/bandwidth emulation
from an :class:`~unistore.layers.emulate.EmulateLayer` when ``UNISTORE_LATENCY`` /
``UNISTORE_BANDWIDTH`` (or the ``BORGSTORE_*`` names) are set.

Unlike borgstore, the Store holds no lock around backend calls: backends are thread-safe, so many
threads use one Store concurrently. The namespace configuration is replaced atomically.

The stack it builds, top down: StatsLayer (the Store's stats) -> CacheLayer (when a namespace has
``cache``) -> StatsLayer (``backend_*`` stats: what reaches the primary backend) -> EmulateLayer
(from the environment) -> the ``layers`` given -> the backend.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

from .backends.base import Backend, ItemInfo, Value, validate_sources
from .backends.foreign import ForeignBackend, looks_like_backend
from .errors import ConfigError, InvalidName, NoBackendGiven, UnknownNamespace
from .layers.cache import CacheLayer, CacheMode, CachePolicy
from .layers.emulate import EmulateLayer
from .layers.stats import StatsLayer
from .names import DEL_SUFFIX, check_key, nest, unnest
from .url import open_backend

logger = logging.getLogger("unistore.store")

Levels = list[tuple[str, list[int]]]
_NO_CACHE_STATS: dict[str, Any] = {
    "cache_disabled": False, "cache_hits": 0, "cache_misses": 0, "cache_hit_ratio": 0, "cache_errors": 0,
    "cache_load_calls": 0, "cache_store_calls": 0, "cache_delete_calls": 0, "cache_load_volume": 0,
    "cache_store_volume": 0,
}  # fmt: skip


def _parse_config(config: object) -> tuple[dict[str, list[int]], dict[str, CachePolicy]]:
    if not config or not isinstance(config, Mapping):
        raise ConfigError('a config is required, e.g. {"": {"levels": [0]}, "data/": {"levels": [2]}}')
    levels: dict[str, list[int]] = {}
    policies: dict[str, CachePolicy] = {}
    for namespace, ns_config in config.items():
        if not isinstance(namespace, str):
            raise ConfigError(f"namespace must be a str, not {namespace!r}")
        if not isinstance(ns_config, Mapping):
            raise ConfigError(f"config of namespace {namespace!r} must be a dict, not {ns_config!r}")
        unknown = set(ns_config) - {"levels", "cache", "max_age", "size"}
        if unknown:
            raise ConfigError(f"unknown keys in the config of namespace {namespace!r}: {sorted(unknown)}")
        lv = ns_config.get("levels")
        if not lv or not isinstance(lv, list) or not all(isinstance(x, int) and 0 <= x <= 8 for x in lv):
            raise ConfigError(f"'levels' of namespace {namespace!r} must be a non-empty list of ints 0..8, not {lv!r}")
        levels[namespace] = list(lv)
        policies[namespace] = CachePolicy.from_config(namespace, ns_config)
    return levels, policies


class Store:
    """Key/value store with namespaces, nesting levels and soft delete (borgstore-compatible).

    ``layers`` wraps the backend in layers, listed as data flows (outermost first), each a callable
    taking a Backend and returning one: ``layers=[CompressLayer, partial(EncryptLayer, key=k)]``
    compresses, then encrypts. ``backend_options`` go to the backend built from ``url``.
    """

    def __init__(
        self,
        url: str | None = None,
        backend: Backend | None = None,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        permissions: Mapping[str, str] | None = None,
        *,
        cache_url: str | None = None,
        cache_backend: Backend | None = None,
        layers: Sequence[Callable[[Backend], Backend]] | None = None,
        **backend_options: Any,
    ) -> None:
        if backend is None:
            if not url:
                raise NoBackendGiven("give a backend instance or a backend URL")
            if permissions is not None:
                if not url.startswith("file:"):
                    raise ConfigError("permissions are only supported by the file: backend")
                backend_options["permissions"] = permissions
            if url.split(":", 1)[0].lower() in ("s3", "b2"):
                # the Store's key rules already rule out an item where a directory is (and back): skip
                # the S3 backend's per-store LIST that checks for it (half a PUT's time on SeaweedFS)
                backend_options.setdefault("name_checks", False)
            backend = open_backend(url, **backend_options)
        elif permissions is not None:
            raise ConfigError("give permissions to the backend itself when passing a backend instance")
        elif backend_options:
            raise ConfigError(
                f"backend options {sorted(backend_options)} are only used with a url; "
                "give them to the backend itself when passing a backend instance"
            )
        if not isinstance(backend, Backend):
            if not looks_like_backend(backend):
                raise ConfigError(f"{type(backend).__name__} is not a backend")
            backend = ForeignBackend(backend)
        # layers are listed as data flows, outermost first: [CompressLayer, EncryptLayer] compresses then encrypts
        for make_layer in reversed(list(layers or ())):
            backend = make_layer(backend)
            if not isinstance(backend, Backend):
                raise ConfigError(f"a layer factory returned {type(backend).__name__}, not a Backend")
        self.url = url
        self.backend = backend
        self.levels: Levels = []
        levels, policies = _parse_config(config)
        self.set_levels(levels)
        if cache_url is not None and cache_backend is not None:
            raise ConfigError("give cache_url or cache_backend, not both")
        cached = [(ns, p) for ns, p in policies.items() if p.mode != CacheMode.OFF]
        if cached and cache_url is None and cache_backend is None:
            names = sorted(ns for ns, _ in cached)
            raise ConfigError(f"namespaces {names} have a cache: give cache_url or cache_backend")
        if cache_backend is None and cache_url is not None:
            cache_backend = open_backend(cache_url)
        elif cache_backend is not None and not isinstance(cache_backend, Backend):
            cache_backend = ForeignBackend(cache_backend)
        self.cache_backend = cache_backend
        self._probe = EmulateLayer.wrap_from_env(backend)  # level probes: emulated, not counted
        self._backend_io = StatsLayer(self._probe, prefix="backend_")
        self._cache: CacheLayer | None = None
        below: Backend = self._backend_io
        if cache_backend is not None:
            self._cache = CacheLayer(self._backend_io, cache_backend, cached)
            below = self._cache
        self._io = StatsLayer(below)

    def __repr__(self) -> str:
        if self.cache_backend is not None:
            return f"<Store backend={self.backend!r} cache_backend={self.cache_backend!r}>"
        return f"<Store backend={self.backend!r}>"

    # ----------------------------------------------------------------- configuration
    def set_levels(self, levels: Mapping[str, list[int]], create: bool = False) -> None:
        """Replace the namespace -> nesting levels mapping (longest namespace prefix wins)."""
        if not levels or not isinstance(levels, Mapping):
            raise ConfigError("no or invalid levels configuration given")
        self.levels = sorted(((ns, list(lv)) for ns, lv in levels.items()), key=lambda e: len(e[0]), reverse=True)
        if create:
            self.create_levels()

    def create_levels(self) -> None:
        """Create every namespace directory and, for nested namespaces, the deepest nesting directories."""
        with self:
            for namespace, levels in self.levels:
                namespace = namespace.rstrip("/")
                level = max(levels)
                if level == 0:
                    if namespace:
                        self.backend.mkdir(namespace)
                    continue
                for i in range(256**level):
                    key = i.to_bytes(level, "big").hex()
                    nested = nest(f"{namespace}/{key}" if namespace else key, level)
                    self.backend.mkdir(nested.rpartition("/")[0])

    def _get_levels(self, name: str) -> list[int]:
        for namespace, levels in self.levels:
            if name.startswith(namespace):
                return levels
        raise UnknownNamespace(f"no configured namespace matches {name!r}")

    # ----------------------------------------------------------------- lifecycle
    def create(self) -> None:
        """Create the storage and its namespace directories (all nesting directories too on backends
        that ask for them), so listing an empty namespace yields nothing instead of ObjectNotFound."""
        self.backend.create()
        if self.backend.precreate_dirs:
            self.create_levels()
            return
        with self:
            for namespace, _ in self.levels:
                if namespace.strip("/"):
                    self.backend.mkdir(namespace.strip("/"))

    def destroy(self) -> None:
        self.backend.destroy()

    def open(self) -> None:
        if self._cache is not None:
            self._cache.open()  # opens the backend, then the cache (a cache that fails is disabled)
        else:
            self.backend.open()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
        else:
            self.backend.close()

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- names
    def find(self, name: str, *, deleted: bool = False) -> str:
        """The backend name of ``name``: where it is, or (if nowhere) where it goes (the last level)."""
        check_key(name)
        suffix = DEL_SUFFIX if deleted else ""
        levels = self._get_levels(name)
        if len(levels) == 1:
            return nest(name, levels[0], suffix=suffix)
        nested = ""
        for level in levels:
            nested = nest(name, level, suffix=suffix)
            if self._probe.info(nested).exists:
                break
        return nested

    # ----------------------------------------------------------------- operations
    def info(self, name: str, *, deleted: bool = False) -> ItemInfo:
        return self._io.info(self.find(name, deleted=deleted))

    def load(self, name: str, *, size: int | None = None, offset: int = 0, deleted: bool = False) -> bytes:
        return self._io.load(self.find(name, deleted=deleted), size=size, offset=offset)

    def store(self, name: str, value: Value) -> None:
        self._io.store(self.find(name), value)

    def delete(self, name: str, *, deleted: bool = False) -> None:
        """Delete an item for good (see ``move(name, delete=True)`` for soft delete)."""
        self._io.delete(self.find(name, deleted=deleted))

    def move(
        self,
        name: str,
        new_name: str | None = None,
        *,
        delete: bool = False,
        undelete: bool = False,
        change_level: bool = False,
        deleted: bool = False,
    ) -> None:
        """Soft delete (``delete=True``), undelete, move to the configured last level, or rename."""
        if delete:
            src = self.find(name)
            dst = src + DEL_SUFFIX
        elif undelete:
            src = self.find(name, deleted=True)
            dst = src.removesuffix(DEL_SUFFIX)
        elif change_level:
            src = self.find(name, deleted=deleted)
            dst = nest(name, self._get_levels(name)[-1], suffix=DEL_SUFFIX if deleted else "")
        else:
            if not new_name:
                raise ConfigError("a plain move needs new_name")
            src = self.find(name, deleted=deleted)
            dst = self.find(new_name, deleted=deleted)
        self._io.move(src, dst)

    def list(self, name: str, deleted: bool = False) -> Iterator[ItemInfo]:
        """Yield the items of namespace ``name`` (all nesting levels), names without nesting.

        ``deleted=True`` yields only soft-deleted items (names without the ``.del`` suffix).
        Sorted by name when all items are on one level.
        """
        for info in self._io.list_recursive(name):
            key = info.name.rpartition("/")[2]
            is_deleted = key.endswith(DEL_SUFFIX)
            if is_deleted == deleted:
                yield info._replace(name=key.removesuffix(DEL_SUFFIX) if deleted else key)

    def hash(self, name: str, algorithm: str = "sha256", *, deleted: bool = False) -> str:
        return self._io.hash(self.find(name, deleted=deleted), algorithm)

    def quota(self) -> dict[str, int]:
        return self.backend.quota()

    @property
    def stats(self) -> dict[str, Any]:
        """borgstore's stats: ``<op>_calls``, ``<op>_time`` [s], ``<op>_volume`` [B], ``<op>_throughput`` [B/s],
        ``backend_<op>_calls``/``_volume`` (what reached the primary backend) and ``cache_*``."""
        st = self._io.stats
        st.update(self._backend_io.stats)
        if self._cache is not None:
            st.update(self._cache.stats)
        else:
            st.update(_NO_CACHE_STATS)
        return st

    # ----------------------------------------------------------------- borgstore 0.7: gather, defrag, cache
    def _find_sources(
        self, sources: Iterable[tuple[str, int, int]], namespace: str | None, deleted: bool
    ) -> builtins.list[tuple[str, int, int]]:
        prefix = f"{namespace.rstrip('/')}/" if namespace else ""
        found: dict[str, str] = {}
        mapped = []
        for name, offset, size in validate_sources(sources):
            if name not in found:
                if "/" in name:
                    raise InvalidName(f"item name must not contain '/' (the namespace is given apart): {name!r}")
                found[name] = self.find(prefix + name, deleted=deleted)
            mapped.append((found[name], offset, size))
        return mapped

    def gather(
        self, sources: Iterable[tuple[str, int, int]], *, namespace: str | None = None, deleted: bool = False
    ) -> bytes:
        """The byte ranges ``(name, offset, size)`` of items in ``namespace``, concatenated in order.

        borgstore's semantics (names without namespace, exact sizes, ReadRangeError on a short read);
        the ranges are read concurrently where the backend gains from it.
        """
        return self._io.gather(self._find_sources(sources, namespace, deleted))

    def defrag(
        self,
        sources: Iterable[tuple[str, int, int]],
        *,
        target: str | None = None,
        algorithm: str | None = None,
        namespace: str | None = None,
        deleted: bool = False,
    ) -> str:
        """Create a new item from byte ranges of items in ``namespace``; return its name (no namespace).

        Without ``target`` the name is the ``algorithm`` hex digest of the new content. The sources
        stay; deleting them afterwards is the caller's job (borg compact does).
        """
        prefix = f"{namespace.rstrip('/')}/" if namespace else ""
        mapped = self._find_sources(sources, namespace, deleted)
        nested_target = None
        if target is not None:
            if "/" in target:
                raise InvalidName(f"target must not contain '/' (the namespace is given apart): {target!r}")
            nested_target = self.find(prefix + target, deleted=deleted)
        levels = self._get_levels(prefix)[-1] if prefix else 0
        made = self._io.defrag(
            mapped, target=nested_target, algorithm=algorithm, namespace=prefix.rstrip("/"), levels=levels
        )
        return unnest(made, prefix.rstrip("/")).removeprefix(prefix)

    def cache_invalidate(self, name: str, *, deleted: bool = False) -> None:
        """Drop cached items: all (``""``), a whole namespace, or one item (borgstore's semantics)."""
        if self._cache is None:
            return
        if name == "":
            self._cache.invalidate()
            return
        for namespace, _ in self._cache.policies:
            if namespace.rstrip("/") == name.rstrip("/"):
                self._cache.invalidate(namespace=namespace)
                return
        self._cache.invalidate([self.find(name, deleted=deleted)])

    # ----------------------------------------------------------------- streaming and bulk
    def store_file(self, name: str, file: IO[bytes], *, size: int | None = None) -> None:
        """Store a (large) value from a binary file object without reading it into memory."""
        self._io.store_file(self.find(name), file, size=size)

    def load_file(
        self, name: str, file: IO[bytes], *, offset: int = 0, size: int | None = None, deleted: bool = False
    ) -> int:
        """Write a (large) value to a binary file object; return the number of bytes written."""
        return self._io.load_file(self.find(name, deleted=deleted), file, offset=offset, size=size)

    def store_many(self, items: Iterable[tuple[str, Value]] | Mapping[str, Value]) -> None:
        """Store many values; backends that gain from concurrency store them in parallel."""
        pairs = items.items() if isinstance(items, Mapping) else items
        self._io.store_many((self.find(k), v) for k, v in pairs)

    def load_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, value)`` in the given order; loaded in parallel where the backend can."""
        keys = list(names)
        found = [self.find(k) for k in keys]
        for key, (_, data) in zip(keys, self._io.load_many(found), strict=True):
            yield key, data

    def delete_many(self, names: Iterable[str], *, missing_ok: bool = False) -> int:
        """Delete many items for good; return how many were deleted."""
        return self._io.delete_many((self.find(k) for k in names), missing_ok=missing_ok)
